"""The local stack: DynamoDB Local, cognito-local and our Lambda Invoke endpoint.

`up` starts whatever is not running, creates the table, the user pool (with an immutable
`custom:role`) and its app client, and wires both triggers into cognito-local's config; it is
idempotent. `down` stops every process `up` started. Everything lives in one folder
(`.local-stack/` by default): process ids, logs, emulator data and the invocation record.

Clients reach the emulators only through the standard `AWS_ENDPOINT_URL_<SERVICE>` variables
(`environment()`), so the code that runs here is the code that runs against AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from livekart_users import aws
from livekart_users.exceptions import LocalStackError
from livekart_users.local import emulators, loopback, processes
from livekart_users.table import DEFAULT_TABLE, UsersTable

DEFAULT_FUNCTION = "livekart-post-confirmation-trigger"
POOL_NAME = "livekart-users-local"
CLIENT_NAME = "livekart-web"
SERVICES = ("dynamodb", "endpoint", "cognito")
# Cognito's limit is 5 s for the whole invocation; the function's own timeout sits below it.
FUNCTION_TIMEOUT = 4.0
CONFIRMATION_CODE = "123456"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
SELF_SERVICE_ATTRIBUTES = [
    "email",
    "name",
    "given_name",
    "family_name",
    "phone_number",
    "custom:role",
]


def _env_port(service: str, default: int) -> int:
    variable = f"LIVEKART_LOCAL_{service}_PORT"
    text = os.environ.get(variable, str(default))
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise LocalStackError(f"{variable}={text!r} is not a port number (1-65535)")
    return int(text)


@dataclass
class Settings:
    """Where the stack lives and which ports it takes. Each is a flag or variable of `local up`."""

    directory: Path = field(
        default_factory=lambda: Path(os.environ.get("LIVEKART_LOCAL_DIR", ".local-stack"))
    )
    dynamodb_port: int = field(default_factory=lambda: _env_port("DYNAMODB", 8000))
    cognito_port: int = field(default_factory=lambda: _env_port("COGNITO", 9229))
    endpoint_port: int = field(default_factory=lambda: _env_port("LAMBDA", 9001))
    table: str = field(default_factory=lambda: os.environ.get("USERS_TABLE") or DEFAULT_TABLE)
    function: str = DEFAULT_FUNCTION
    function_timeout: float = FUNCTION_TIMEOUT
    extra_fields: str | None = field(default_factory=lambda: os.environ.get("USERS_EXTRA_FIELDS"))
    region: str = aws.DEFAULT_REGION
    node_modules: Path | None = None

    def ports(self) -> dict[str, int]:
        return {
            "dynamodb": self.dynamodb_port,
            "endpoint": self.endpoint_port,
            "cognito": self.cognito_port,
        }


@dataclass
class Status:
    """What `status` reports, and what `up` returns."""

    directory: str
    running: dict[str, bool]
    endpoints: dict[str, str]
    user_pool_id: str | None = None
    client_id: str | None = None
    table: str | None = None
    started: list[str] = field(default_factory=list)

    @property
    def all_running(self) -> bool:
        return all(self.running.values())


class LocalStack:
    """One local stack, in one folder."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.dir = self.settings.directory.resolve()
        self.state_file = self.dir / "state.json"
        self.record_file = self.dir / "invocations.jsonl"

    # --- state -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True))

    def _ports(self) -> dict[str, int]:
        """The ports of the running stack, else those of the settings."""
        saved = self._state().get("ports") or {}
        return {**self.settings.ports(), **saved}

    def endpoints(self) -> dict[str, str]:
        ports = self._ports()
        return {
            "dynamodb": f"http://127.0.0.1:{ports['dynamodb']}",
            "cognito-idp": f"http://127.0.0.1:{ports['cognito']}",
            "lambda": f"http://127.0.0.1:{ports['endpoint']}",
        }

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (ours, or anyone's) at this stack."""
        endpoints = self.endpoints()
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": endpoints["dynamodb"],
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": endpoints["cognito-idp"],
            "AWS_ENDPOINT_URL_LAMBDA": endpoints["lambda"],
            "AWS_DEFAULT_REGION": self.settings.region,
            "USERS_TABLE": self.settings.table,
            **LOCAL_CREDENTIALS,
        }

    def use(self) -> None:
        """Point this process's AWS clients at the stack."""
        os.environ.update(self.environment())
        os.environ.pop("AWS_REGION", None)
        os.environ.pop("AWS_PROFILE", None)

    def status(self) -> Status:
        state = self._state()
        pids = state.get("pids") or {}
        return Status(
            directory=str(self.dir),
            running={s: processes.is_alive(pids.get(s)) for s in SERVICES},
            endpoints=self.endpoints(),
            user_pool_id=state.get("user_pool_id"),
            client_id=state.get("client_id"),
            table=state.get("table"),
        )

    def invocations(self) -> list[dict[str, Any]]:
        """The endpoint's record: one entry per trigger invocation, oldest first."""
        try:
            lines = self.record_file.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # --- up / down ---------------------------------------------------------------------

    def up(self) -> Status:
        """Start what is not running and provision the pool, client and table. Idempotent."""
        from livekart_users import schema

        schema.parse_extra_fields(self.settings.extra_fields)  # refuse bad config up front
        state = self._state()
        pids: dict[str, int] = dict(state.get("pids") or {})
        running = {s: processes.is_alive(pids.get(s)) for s in SERVICES}
        if not any(running.values()):
            state = {"ports": self.settings.ports()}
        ports: dict[str, int] = {**self.settings.ports(), **(state.get("ports") or {})}
        self._check_ports(ports, running)
        self.dir.mkdir(parents=True, exist_ok=True)
        state["ports"] = ports
        started: list[str] = []
        for service in SERVICES:
            if not running[service]:
                pids[service] = self._start(service, ports)
                started.append(service)
                state["pids"] = pids
                self._save(state)
        self.use()
        state.update(self._provision())
        self._save(state)
        result = self.status()
        result.started = started
        return result

    def down(self, *, wipe: bool = False) -> list[str]:
        """Stop every process `up` started; with `wipe`, delete the stack's data too."""
        state = self._state()
        stopped = [s for s, pid in (state.get("pids") or {}).items() if processes.stop(pid)]
        if state:
            state.pop("pids", None)
            self._save(state)
        if wipe and self.dir.exists():
            shutil.rmtree(self.dir)
        return stopped

    def stop_service(self, service: str) -> None:
        """Stop one emulator (tests use it to take DynamoDB away mid-flow)."""
        state = self._state()
        processes.stop((state.get("pids") or {}).get(service))

    def start_service(self, service: str) -> None:
        state = self._state()
        ports = {**self.settings.ports(), **(state.get("ports") or {})}
        state.setdefault("pids", {})[service] = self._start(service, ports)
        self._save(state)

    def _check_ports(self, ports: dict[str, int], running: dict[str, bool]) -> None:
        flags = {
            "dynamodb": ("--dynamodb-port", "LIVEKART_LOCAL_DYNAMODB_PORT"),
            "endpoint": ("--lambda-port", "LIVEKART_LOCAL_LAMBDA_PORT"),
            "cognito": ("--cognito-port", "LIVEKART_LOCAL_COGNITO_PORT"),
        }
        if len(set(ports.values())) != len(ports):
            raise LocalStackError(f"two services were given the same port: {ports}")
        for service, port in ports.items():
            if not running[service] and not processes.port_is_free(port):
                flag, variable = flags[service]
                raise LocalStackError(
                    f"port {port} (for {service}) is already in use: stop what holds it, or "
                    f"pick another port with {flag} or {variable}"
                )

    # --- the three processes -----------------------------------------------------------

    def _start(self, service: str, ports: dict[str, int]) -> int:
        log = self.dir / f"{service}.log"
        port = ports[service]
        if service == "dynamodb":
            # -sharedDb -dbPath: the table survives a restart, like Cognito's pool data does.
            return emulators.start_dynamodb(
                port, log=log, data_dir=self.dir / "dynamodb", node_modules=self._node_modules()
            )
        if service == "endpoint":
            env = {
                **self.environment(),
                "USERS_TABLE": self.settings.table,
                "POWERTOOLS_SERVICE_NAME": "livekart-users",
            }
            env.pop("AWS_ENDPOINT_URL_LAMBDA")
            if self.settings.extra_fields:
                env["USERS_EXTRA_FIELDS"] = self.settings.extra_fields
            command = [
                sys.executable,
                "-m",
                "livekart_users.local.endpoint",
                "--port",
                str(port),
                "--function",
                self.settings.function,
                "--timeout",
                str(self.settings.function_timeout),
                "--record",
                str(self.record_file),
            ]
            pid = processes.start("the Lambda endpoint", command, cwd=self.dir, log=log, env=env)
            processes.wait_until(
                "the Lambda endpoint", lambda: processes.is_listening(port), pid=pid, log=log
            )
            return pid
        cognito_dir = self.dir / "cognito"
        self._write_cognito_config(cognito_dir, ports)
        node = shutil.which("node") or "node"
        start_js = self._node_modules() / "cognito-local" / "lib" / "bin" / "start.js"
        env = {"PORT": str(port), "HOST": "127.0.0.1", "CODE": CONFIRMATION_CODE}
        pid = processes.start(
            "cognito-local",
            loopback.cognito_local_command(node, start_js),
            cwd=cognito_dir,
            log=log,
            env=env,
        )
        processes.wait_until(
            "cognito-local", lambda: processes.is_listening(port), pid=pid, log=log
        )
        return pid

    def _write_cognito_config(self, cognito_dir: Path, ports: dict[str, int]) -> None:
        config_dir = cognito_dir / ".cognito"
        config_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "LambdaClient": {
                "endpoint": f"http://127.0.0.1:{ports['endpoint']}",
                "region": "local",
                "credentials": {"accessKeyId": "local", "secretAccessKey": "local"},
            },
            "TriggerFunctions": {
                "PostConfirmation": self.settings.function,
                "PostAuthentication": self.settings.function,
            },
        }
        (config_dir / "config.json").write_text(json.dumps(config, indent=2))

    def _node_modules(self) -> Path:
        return emulators.node_modules(self.settings.node_modules)

    # --- what lives inside the emulators -----------------------------------------------

    def _provision(self) -> dict[str, Any]:
        UsersTable(aws.client("dynamodb"), self.settings.table).create_table()
        cognito = aws.client("cognito-idp")
        pool_id = (
            _find_pool(cognito, POOL_NAME)
            or cognito.create_user_pool(
                PoolName=POOL_NAME,
                AutoVerifiedAttributes=["email"],
                UsernameAttributes=["email"],
                Schema=[
                    {
                        "Name": "role",
                        "AttributeDataType": "String",
                        "Mutable": False,
                        "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "32"},
                    }
                ],
                Policies={"PasswordPolicy": {"MinimumLength": 8}},
            )["UserPool"]["Id"]
        )
        client_id = (
            _find_client(cognito, pool_id, CLIENT_NAME)
            or cognito.create_user_pool_client(
                UserPoolId=pool_id,
                ClientName=CLIENT_NAME,
                ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
                WriteAttributes=SELF_SERVICE_ATTRIBUTES,
                ReadAttributes=[*SELF_SERVICE_ATTRIBUTES, "email_verified"],
            )["UserPoolClient"]["ClientId"]
        )
        return {
            "user_pool_id": pool_id,
            "client_id": client_id,
            "table": self.settings.table,
            "function": self.settings.function,
        }


def _find_pool(cognito: Any, name: str) -> str | None:
    for pool in cognito.list_user_pools(MaxResults=60).get("UserPools", []):
        if pool.get("Name") == name:
            return str(pool["Id"])
    return None


def _find_client(cognito: Any, pool_id: str, name: str) -> str | None:
    answer = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)
    for client in answer.get("UserPoolClients", []):
        if client.get("ClientName") == name:
            return str(client["ClientId"])
    return None
