"""The local stack keeps to this machine: loopback listeners, no telemetry, no other origins.

Asserted on a running stack, from the outside (the operating system's socket table and the
processes' command lines), so a change to how an emulator is started cannot quietly undo it.
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from rich.console import Console

from livekart_users.cli import main, render
from livekart_users.exceptions import LocalStackError
from livekart_users.local import loopback
from livekart_users.local.stack import LocalStack
from tests.conftest import start_stack

ALLOWED = "http://localhost:3000"
STRANGER = "http://evil.example"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack whose users develop a web app on http://localhost:3000."""
    saved = dict(os.environ)
    os.environ[loopback.ALLOWED_ORIGINS] = ALLOWED
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.down()
    os.environ.clear()
    os.environ.update(saved)


def port_of(url: str) -> int:
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    return port


def listeners(port: int) -> list[psutil._common.sconn]:
    return [
        c
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
    ]


def request(
    url: str, method: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}


def preflight(url: str, origin: str, headers: str) -> tuple[int, dict[str, str]]:
    return request(
        url,
        "OPTIONS",
        {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": headers,
        },
    )


# --- on the running stack ------------------------------------------------------------------


@pytest.mark.parametrize("service", ["dynamodb", "cognito-idp", "lambda"])
def test_each_emulator_listens_on_the_loopback_interface_only(
    stack: LocalStack, service: str
) -> None:
    found = listeners(port_of(stack.endpoints()[service]))

    assert found, f"nothing listens for {service}"
    for connection in found:
        ip = ipaddress.ip_address(connection.laddr.ip)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped  # Java's sockets show 127.0.0.1 as ::ffff:127.0.0.1
        assert ip == ipaddress.ip_address("127.0.0.1"), f"{service} listens on {ip}"


def test_the_stack_reports_no_listener_beyond_loopback(stack: LocalStack) -> None:
    listening = loopback.listening(stack.endpoints())

    assert set(listening) >= {"dynamodb", "cognito-idp", "lambda"}
    assert all(listening.values())
    assert loopback.exposed(listening) == {}


def test_dynamodb_local_runs_with_telemetry_disabled(stack: LocalStack) -> None:
    (connection,) = listeners(port_of(stack.endpoints()["dynamodb"]))
    command = psutil.Process(connection.pid).cmdline()

    assert "-disableTelemetry" in command
    assert loopback.DYNAMODB_LAUNCHER in command  # not ServerRunner.main, which sets it up


def test_dynamodb_local_answers_cors_for_the_allowed_origin_only(stack: LocalStack) -> None:
    url = stack.endpoints()["dynamodb"]

    _, allowed = preflight(url, ALLOWED, "x-amz-target,content-type")
    _, stranger = preflight(url, STRANGER, "x-amz-target,content-type")

    assert allowed.get("access-control-allow-origin") == ALLOWED
    assert "access-control-allow-origin" not in stranger


def test_cognito_local_refuses_other_origins(stack: LocalStack) -> None:
    url = stack.endpoints()["cognito-idp"]
    call = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.ListUserPools",
    }

    allowed_status, allowed = preflight(url, ALLOWED, "x-amz-target,content-type")
    stranger_status, stranger = preflight(url, STRANGER, "x-amz-target,content-type")
    posted, _ = request(url, "POST", {**call, "Origin": STRANGER}, b'{"MaxResults": 1}')
    from_sdk, _ = request(url, "POST", call, b'{"MaxResults": 1}')

    assert allowed_status == 204 and allowed.get("access-control-allow-origin") == ALLOWED
    assert stranger_status == 403 and "access-control-allow-origin" not in stranger
    assert posted == 403
    assert from_sdk == 200


def test_the_lambda_endpoint_refuses_web_pages(stack: LocalStack) -> None:
    # A form POST needs no preflight: the endpoint itself must refuse a browser's request.
    url = stack.endpoints()["lambda"] + "/2015-03-31/functions/any/invocations"
    body = json.dumps({"triggerSource": "PostConfirmation_ConfirmSignUp"}).encode()

    status, _ = request(url, "POST", {"Origin": STRANGER, "Content-Type": "text/plain"}, body)
    options, headers = preflight(url, STRANGER, "content-type")

    assert status == 403
    assert "access-control-allow-origin" not in headers and options >= 400
    assert not any(line.strip() for line in _lines(stack.record_file))


def test_local_up_json_says_where_each_service_listens(stack: LocalStack) -> None:
    settings = stack.settings
    result = CliRunner().invoke(
        main,
        [
            "local",
            "up",
            "--json",
            "--dir",
            str(stack.dir),
            "--dynamodb-port",
            str(settings.dynamodb_port),
            "--cognito-port",
            str(settings.cognito_port),
            "--lambda-port",
            str(settings.endpoint_port),
        ],
    )

    assert result.exit_code == 0, result.output
    up = json.loads(result.stdout)
    assert {"directory", "running", "endpoints", "started", "all_running"} <= set(up)
    assert {"user_pool_id", "client_id", "table", "listening", "exposed"} <= set(up)
    assert (up["started"], up["all_running"], up["exposed"]) == ([], True, {})
    assert set(up["listening"]) == set(up["endpoints"]) >= {"dynamodb", "cognito-idp", "lambda"}
    assert all(loopback.is_loopback(a) for found in up["listening"].values() for a in found)


def test_a_wide_listener_is_one_warning_line_with_what_to_do() -> None:
    console = Console(width=80, file=io.StringIO())

    render.print_exposed(console, {"dynamodb": ["0.0.0.0"]}, {"dynamodb": "http://127.0.0.1:8000"})

    (line,) = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert "dynamodb listens on 0.0.0.0 port 8000" in line
    assert "block inbound TCP port 8000 in your firewall" in line


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- the parts, without a stack ------------------------------------------------------------


def test_a_listener_on_every_interface_is_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as wide:
        wide.bind(("0.0.0.0", 0))
        wide.listen()
        port = wide.getsockname()[1]
        listening = loopback.listening({"dynamodb": f"http://127.0.0.1:{port}"})

    assert listening == {"dynamodb": ["0.0.0.0"]}
    assert loopback.exposed(listening) == {"dynamodb": ["0.0.0.0"]}


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("fe80::1%eth0", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_loopback_addresses_are_told_from_the_rest(address: str, expected: bool) -> None:
    assert loopback.is_loopback(address) is expected


def test_allowed_origins_are_exact_web_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loopback.ALLOWED_ORIGINS, raising=False)
    assert loopback.allowed_origins() == []

    monkeypatch.setenv(loopback.ALLOWED_ORIGINS, " http://localhost:3000, https://app.test ")
    assert loopback.allowed_origins() == ["http://localhost:3000", "https://app.test"]

    for bad in ("*", "localhost:3000", "http://localhost:3000/app"):
        monkeypatch.setenv(loopback.ALLOWED_ORIGINS, bad)
        with pytest.raises(LocalStackError, match="not a web origin"):
            loopback.allowed_origins()


def test_dynamodb_local_gets_no_cors_origin_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loopback.ALLOWED_ORIGINS, raising=False)
    command = loopback.dynamodb_command("java", Path("DynamoDBLocal.jar"))

    assert command[command.index("-cors") + 1] == ""  # DynamoDB Local's default is "*"


@pytest.mark.skipif(shutil.which("javac") is None, reason="needs a JDK (javac) to recompile")
def test_the_shipped_launcher_is_compiled_from_its_source(tmp_path: Path) -> None:
    source = loopback.GUARDS / f"{loopback.DYNAMODB_LAUNCHER}.java"
    subprocess.run(
        ["javac", "--release", "17", "-d", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )

    def code(folder: Path) -> list[str]:
        shown = subprocess.run(
            ["javap", "-c", "-p", "-v", "-cp", str(folder), loopback.DYNAMODB_LAUNCHER],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # Past the header (path, date, checksum): the constants and the code.
        lines = shown.splitlines()
        return next((lines[i + 1 :] for i, s in enumerate(lines) if "Compiled from" in s), [])

    fresh, shipped = code(tmp_path), code(loopback.GUARDS)
    assert fresh and fresh == shipped, "recompile: javac --release 17 LoopbackDynamoDB.java"
