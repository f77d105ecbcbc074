"""The local stack: DynamoDB Local, cognito-local behind its proxy, and our Lambda endpoint.

`up` starts whatever is not running, creates the table, the user pool (with an immutable
`custom:role`) and its app client, and wires both triggers into cognito-local's config; it is
idempotent, and a failed `up` stops what it started (and removes the folder if it made it).
`down` stops every process `up` started, recognised by pid, start time and command line.
Everything lives in one folder (`.local-stack/` by default), marked as a stack by `up`: the
processes, logs, emulator data, the last good copy of cognito-local's files and the
invocation record. `down --wipe` deletes only the stack's own entries in a marked folder.

Clients reach the emulators only through the standard `AWS_ENDPOINT_URL_<SERVICE>` variables
(`environment()`), so the code that runs here is the code that runs against AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import aws
from livekart_users.exceptions import LocalStackError
from livekart_users.local import emulators, loopback, pools, private, processes, runtimes
from livekart_users.table import DEFAULT_TABLE, UsersTable

DEFAULT_FUNCTION = "livekart-post-confirmation-trigger"
# The change handler's function (deletions, attribute edits, enable/disable; see changes.py).
CHANGES_FUNCTION = "livekart-users-changes"
POOL_NAME = "livekart-users-local"
CLIENT_NAME = "livekart-web"
# What a real app's client allows: SRP (Amplify's and amazon-cognito-identity-js's default
# sign-in), the plain password flow (the AWS CLI, boto3, the demo) and refreshing tokens.
APP_AUTH_FLOWS = ["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
# In starting order. "cognito" is the stack's Cognito endpoint: the proxy that lets one
# write at a time through to cognito-local (see cognito_proxy), which listens on a port of
# its own that only the proxy and the Lambda endpoint use.
SERVICES = ("dynamodb", "endpoint", "cognito-local", "cognito")
MARKER = ".livekart-local-stack"
# Everything `up` may put in the stack's folder; `down --wipe` deletes these and nothing else.
OWN_ENTRIES = frozenset(
    {
        MARKER,
        "state.json",
        "invocations.jsonl",
        "dynamodb",
        "cognito",
        "backups",
        *(f"{service}.log" for service in SERVICES),
    }
)
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
    changes_function: str = CHANGES_FUNCTION
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
    repairs: list[str] = field(default_factory=list)  # what was restored before starting

    @property
    def all_running(self) -> bool:
        return all(self.running.values())


@dataclass
class Stopped:
    """What `down` did."""

    stopped: list[str]
    wiped: bool = False
    kept: list[str] = field(default_factory=list)  # entries of the folder that were not ours


class LocalStack:
    """One local stack, in one folder."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.dir = self.settings.directory.resolve()
        self.state_file = self.dir / "state.json"
        self.record_file = self.dir / "invocations.jsonl"
        self.cognito_db = self.dir / "cognito" / ".cognito" / "db"
        self.cognito_backup = self.dir / "backups" / "cognito-db"

    # --- state -------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        if not self.is_marked():
            return {}
        try:
            return dict(json.loads(private.read_text(self.state_file)))
        except LocalStackError:
            raise  # a link, or another user's file: said in one line, never used
        except (OSError, ValueError):
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        try:
            private.write_text(self.state_file, json.dumps(state, indent=2, sort_keys=True))
        except LocalStackError:
            raise
        except OSError as exc:
            raise LocalStackError(
                f"cannot write the stack's state in {self.dir}: {exc.strerror or exc}"
            ) from None

    def is_marked(self) -> bool:
        """The folder was made (or adopted) by `local up` as a stack (a marker that is a
        symbolic link does not count)."""
        try:
            return stat.S_ISREG((self.dir / MARKER).lstat().st_mode)
        except OSError:
            return False

    def _process(self, state: dict[str, Any], service: str) -> processes.Started | None:
        return processes.Started.from_json((state.get("processes") or {}).get(service))

    def _ports(self) -> dict[str, int]:
        """The ports of the running stack, else those of the settings."""
        saved = self._state().get("ports") or {}
        return {**self.settings.ports(), **saved}

    def endpoints(self) -> dict[str, str]:
        """Where each service answers (cognito-local's own port only while it is known)."""
        ports = self._ports()
        found = {
            "dynamodb": f"http://127.0.0.1:{ports['dynamodb']}",
            "cognito-idp": f"http://127.0.0.1:{ports['cognito']}",
            "lambda": f"http://127.0.0.1:{ports['endpoint']}",
        }
        if "cognito-local" in ports:
            found["cognito-local"] = f"http://127.0.0.1:{ports['cognito-local']}"
        return found

    def environment(self) -> dict[str, str]:
        """The variables that point boto3 (ours, or anyone's) at this stack."""
        endpoints = self.endpoints()
        return {
            "AWS_ENDPOINT_URL_DYNAMODB": endpoints["dynamodb"],
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": endpoints["cognito-idp"],
            "AWS_ENDPOINT_URL_LAMBDA": endpoints["lambda"],
            # botocore and the AWS CLI read AWS_DEFAULT_REGION; the SDK for JavaScript v3
            # reads only AWS_REGION ("Region is missing"); both win over any profile's.
            "AWS_REGION": self.settings.region,
            "AWS_DEFAULT_REGION": self.settings.region,
            "USERS_TABLE": self.settings.table,
            **LOCAL_CREDENTIALS,
        }

    def use(self) -> None:
        """Point this process's AWS clients at the stack."""
        os.environ.update(self.environment())
        # The caller's session token would be sent beside the key `local`, to the emulators.
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)

    def status(self) -> Status:
        state = self._state()
        return Status(
            directory=str(self.dir),
            running={s: processes.is_running(self._process(state, s)) for s in SERVICES},
            endpoints=self.endpoints(),
            user_pool_id=state.get("user_pool_id"),
            client_id=state.get("client_id"),
            table=state.get("table"),
        )

    def changes_invoke_url(self) -> str:
        """Where the change function is invoked (the stack's Cognito endpoint sends there)."""
        return (
            f"{self.endpoints()['lambda']}/2015-03-31/functions/"
            f"{self.settings.changes_function}/invocations"
        )

    def invocations(self) -> list[dict[str, Any]]:
        """The endpoint's record: one entry per trigger invocation, oldest first."""
        try:
            lines = self.record_file.read_text().splitlines()
        except OSError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # --- up / down ---------------------------------------------------------------------

    def up(self, say: Callable[[str], None] = lambda _: None) -> Status:
        """Start what is not running and provision the pool, client and table. Idempotent.

        Everything that can be checked is checked before anything is written or started; a
        failure afterwards stops what this call started and removes the folder if it made it.
        """
        from livekart_users import schema

        schema.parse_extra_fields(self.settings.extra_fields)  # refuse bad config up front
        self._check_folder()
        state = self._state()
        running = {s: processes.is_running(self._process(state, s)) for s in SERVICES}
        if not any(running.values()):
            state = {}
        if running["cognito"] and not running["cognito-local"]:
            # The proxy knows cognito-local's port, which a new cognito-local will not reuse.
            processes.stop(self._process(state, "cognito"))
            running["cognito"] = False
        modules = None
        if not all(running.values()):
            runtimes.require(runtimes.NODE, runtimes.JAVA)
            modules = emulators.node_modules(self.settings.node_modules, say=say)
        ports: dict[str, int] = {**self.settings.ports(), **(state.get("ports") or {})}
        if not running["cognito-local"]:
            ports["cognito-local"] = processes.free_port()
        self._check_ports(ports, running)
        created = self._make_folder()
        state["ports"] = ports
        started: list[str] = []
        repairs: list[str] = []
        try:
            for service in SERVICES:
                if not running[service]:
                    if service == "cognito-local":
                        repairs = [
                            str(r)
                            for r in pools.check_and_keep(self.cognito_db, self.cognito_backup)
                        ]
                        for line in repairs:
                            say(line)
                    process = self._start(service, ports, modules)
                    started.append(service)
                    state.setdefault("processes", {})[service] = process.to_json()
                    self._save(state)
            self.use()
            state.update(self._provision())
            self._save(state)
        except BaseException:
            for service in reversed(started):
                processes.stop(self._process(state, service))
            if created:
                with contextlib.suppress(LocalStackError):  # the first error is the one to tell
                    self._remove_own_entries()
            elif started and self.dir.is_dir():
                for service in started:
                    state.get("processes", {}).pop(service, None)
                with contextlib.suppress(LocalStackError):
                    self._save(state)
            raise
        result = self.status()
        result.started = started
        result.repairs = repairs
        return result

    def down(self, *, wipe: bool = False) -> Stopped:
        """Stop every process `up` started; with `wipe`, delete the stack's own files too."""
        self.refuse_a_file()
        private.check_folder(self.dir)  # a state.json of someone else's names no process of ours
        if wipe and self.dir.exists() and not self.is_marked():
            raise LocalStackError(
                f"refusing to wipe {self.dir}: it is not a folder `livekart-users local up` "
                f"made (no {MARKER} in it); nothing was deleted"
            )
        state = self._state()
        stopped = []
        for service in reversed(SERVICES):  # the proxy first: no new write reaches cognito-local
            if service == "cognito-local":
                # A write the proxy let through may still be on its way to disk.
                pools.wait_until_whole(self.cognito_db)
            if processes.stop(self._process(state, service)):
                stopped.append(service)
            if service == "cognito-local":
                pools.keep(self.cognito_db, self.cognito_backup)
        if state and not wipe:
            state.pop("processes", None)
            self._save(state)
        result = Stopped(list(reversed(stopped)))
        if wipe and self.dir.exists():
            result.kept = self._remove_own_entries()
            result.wiped = True
        return result

    def stop_service(self, service: str) -> None:
        """Stop one emulator (tests use it to take DynamoDB away mid-flow)."""
        processes.stop(self._process(self._state(), service))

    def start_service(self, service: str) -> None:
        state = self._state()
        ports = {**self.settings.ports(), **(state.get("ports") or {})}
        process = self._start(service, ports, None)
        state.setdefault("processes", {})[service] = process.to_json()
        self._save(state)
        if service == "dynamodb":  # as `up` does after starting it: see _warm_writes
            endpoint = self.endpoints()["dynamodb"]
            client = aws.client("dynamodb", region_name=self.settings.region, endpoint_url=endpoint)
            _warm_writes(client, self.settings.table)

    # --- the folder --------------------------------------------------------------------

    def refuse_a_file(self) -> None:
        """Every command refuses a stack folder that is a file, as `up` does."""
        if self.dir.exists() and not self.dir.is_dir():
            raise LocalStackError(
                f"{self.dir} is a file, not a folder: give --dir a folder (made if missing)"
            )

    def _check_folder(self) -> None:
        """Refuse a folder that is a file, or holds anything but a stack; writes nothing."""
        self.refuse_a_file()
        private.check_folder(self.dir)
        if not self.dir.is_dir() or self.is_marked():
            return
        try:
            foreign = sorted(p.name for p in self.dir.iterdir() if p.name not in OWN_ENTRIES)
        except OSError as exc:
            raise LocalStackError(f"cannot read {self.dir}: {exc.strerror or exc}") from None
        if foreign:
            raise LocalStackError(
                f"{self.dir} already holds files that are not a local stack's "
                f"({', '.join(foreign[:3])}{', …' if len(foreign) > 3 else ''}): "
                "give --dir an empty or new folder"
            )

    def _make_folder(self) -> bool:
        """Create and mark the folder; True when this call created it."""
        created = not self.dir.exists()
        try:
            private.make_folder(self.dir)
            if self.is_marked():
                private.tighten(self.dir)  # made before the stack's files were private
            else:
                marker = {
                    "made_by": "livekart-users local up",
                    "made_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "own_entries": sorted(OWN_ENTRIES),
                }
                private.write_text(self.dir / MARKER, json.dumps(marker, indent=2))
        except (OSError, LocalStackError) as exc:
            if created:
                with contextlib.suppress(OSError):
                    self.dir.rmdir()
            if isinstance(exc, LocalStackError):
                raise
            raise LocalStackError(
                f"cannot make the local stack's folder {self.dir}: {exc.strerror or exc}: "
                "give --dir a folder you can write to"
            ) from None
        return created

    def _remove_own_entries(self) -> list[str]:
        """Delete the stack's own entries (never anything else); what was left, by name."""
        try:
            for entry in self.dir.iterdir():
                if entry.name not in OWN_ENTRIES or entry.name == MARKER:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            left = sorted(p.name for p in self.dir.iterdir() if p.name != MARKER)
            if not left:
                (self.dir / MARKER).unlink(missing_ok=True)
                self.dir.rmdir()
        except OSError as exc:
            raise LocalStackError(
                f"cannot delete the stack's files in {self.dir}: {exc.strerror or exc}"
            ) from None
        return left

    def _check_ports(self, ports: dict[str, int], running: dict[str, bool]) -> None:
        flags = {
            "dynamodb": ("--dynamodb-port", "LIVEKART_LOCAL_DYNAMODB_PORT"),
            "endpoint": ("--lambda-port", "LIVEKART_LOCAL_LAMBDA_PORT"),
            "cognito": ("--cognito-port", "LIVEKART_LOCAL_COGNITO_PORT"),
        }
        if len(set(ports.values())) != len(ports):
            raise LocalStackError(f"two services were given the same port: {ports}")
        for service, (flag, variable) in flags.items():
            port = ports[service]
            if not running[service] and not processes.port_is_free(port):
                raise LocalStackError(
                    f"port {port} (for {service}) is already in use: stop what holds it, or "
                    f"pick another port with {flag} or {variable}"
                )

    # --- the processes -----------------------------------------------------------------

    def _start(
        self, service: str, ports: dict[str, int], modules: Path | None
    ) -> processes.Started:
        modules = modules or emulators.node_modules(self.settings.node_modules)
        log = self.dir / f"{service}.log"
        port = ports[service]
        if service == "dynamodb":
            # -sharedDb -dbPath: the table survives a restart, like Cognito's pool data does.
            return emulators.start_dynamodb(
                port, log=log, data_dir=self.dir / "dynamodb", node_modules=modules
            )
        if service == "endpoint":
            env = {
                **self.environment(),
                # Straight to cognito-local: a trigger runs while its write holds the proxy.
                "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": (
                    f"http://127.0.0.1:{ports['cognito-local']}"
                ),
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
                "--changes-function",
                self.settings.changes_function,
                "--changes-pool-name",
                POOL_NAME,
            ]
            return self._start_listening("the Lambda endpoint", command, port, log, env)
        if service == "cognito-local":
            cognito_dir = self.dir / "cognito"
            self._write_cognito_config(cognito_dir, ports)
            node = runtimes.require(runtimes.NODE)["node"]
            script = emulators.cognito_local_script(modules)
            env = {"PORT": str(port), "HOST": "127.0.0.1", "CODE": CONFIRMATION_CODE}
            return self._start_listening(
                "cognito-local",
                loopback.cognito_local_command(node, script),
                port,
                log,
                env,
                cwd=cognito_dir,
            )
        command = [
            sys.executable,
            "-m",
            "livekart_users.local.cognito_proxy",
            "--port",
            str(port),
            "--upstream-port",
            str(ports["cognito-local"]),
            "--cognito-db",
            str(self.cognito_db),
            "--page-list-users",  # as Cognito: at most 60 a page (cognito-local answers all)
            "--changes-invoke-url",
            f"http://127.0.0.1:{ports['endpoint']}/2015-03-31/functions/"
            f"{self.settings.changes_function}/invocations",
            "--changes-table",
            self.settings.table,
            "--changes-region",
            self.settings.region,
        ]
        # The change events' hook reads rows from DynamoDB Local: the stack's endpoints.
        return self._start_listening("the Cognito proxy", command, port, log, self.environment())

    def _start_listening(
        self,
        name: str,
        command: list[str],
        port: int,
        log: Path,
        env: dict[str, str],
        cwd: Path | None = None,
    ) -> processes.Started:
        process = processes.start(name, command, cwd=cwd or self.dir, log=log, env=env)
        processes.wait_until(name, lambda: processes.is_listening(port), process=process, log=log)
        return process

    def _write_cognito_config(self, cognito_dir: Path, ports: dict[str, int]) -> None:
        config_dir = cognito_dir / ".cognito"
        private.make_folder(cognito_dir)
        private.make_folder(config_dir)
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
        private.write_text(config_dir / "config.json", json.dumps(config, indent=2))

    # --- what lives inside the emulators -----------------------------------------------

    def _provision(self) -> dict[str, Any]:
        dynamodb = aws.client("dynamodb")
        UsersTable(dynamodb, self.settings.table).create_table()
        _warm_writes(dynamodb, self.settings.table)
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
        client_id = _find_client(cognito, pool_id, CLIENT_NAME)
        if client_id:
            _allow_app_flows(cognito, pool_id, client_id)
        client_id = (
            client_id
            or cognito.create_user_pool_client(
                UserPoolId=pool_id,
                ClientName=CLIENT_NAME,
                ExplicitAuthFlows=APP_AUTH_FLOWS,
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


def _warm_writes(dynamodb: Any, table: str) -> None:
    """A conditional write whose condition can never hold (so it never writes): DynamoDB
    Local's first write is slow (its JVM is cold), and should not be the first sign-up's,
    inside the trigger's deadline."""
    try:
        dynamodb.put_item(
            TableName=table,
            Item={"user_id": {"S": "livekart-local-warm-up"}},
            ConditionExpression="attribute_exists(user_id) AND attribute_not_exists(user_id)",
        )
    except ClientError as exc:
        if aws.error_code(exc) != "ConditionalCheckFailedException":
            raise


def _find_pool(cognito: Any, name: str) -> str | None:
    for pool in cognito.list_user_pools(MaxResults=60).get("UserPools", []):
        if pool.get("Name") == name:
            return str(pool["Id"])
    return None


def _allow_app_flows(cognito: Any, pool_id: str, client_id: str) -> None:
    """A stack made before SRP was allowed gets the flows a real app's client has."""
    client = cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=client_id)
    flows = client["UserPoolClient"].get("ExplicitAuthFlows") or []
    if not set(APP_AUTH_FLOWS) <= set(flows):
        cognito.update_user_pool_client(
            UserPoolId=pool_id,
            ClientId=client_id,
            ClientName=CLIENT_NAME,
            ExplicitAuthFlows=sorted(set(flows) | set(APP_AUTH_FLOWS)),
            WriteAttributes=SELF_SERVICE_ATTRIBUTES,
            ReadAttributes=[*SELF_SERVICE_ATTRIBUTES, "email_verified"],
        )


def _find_client(cognito: Any, pool_id: str, name: str) -> str | None:
    answer = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)
    for client in answer.get("UserPoolClients", []):
        if client.get("ClientName") == name:
            return str(client["ClientId"])
    return None
