"""The local stack keeps to this machine: loopback listeners, no telemetry, no other origins.

Asserted on a running stack, from the outside (the operating system's socket table and the
processes' command lines), so a change to how an emulator is started cannot quietly undo it.
"""

from __future__ import annotations

import http.client
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
from livekart_users.local import emulators, loopback
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
@pytest.mark.parametrize("name", [loopback.DYNAMODB_LAUNCHER, "HostGuard"])
def test_the_shipped_guards_are_compiled_from_their_source(tmp_path: Path, name: str) -> None:
    sources = [loopback.GUARDS / f"{n}.java" for n in (loopback.DYNAMODB_LAUNCHER, "HostGuard")]
    jetty = emulators.dynamodb_jar().parent / "DynamoDBLocal_lib" / "*"
    subprocess.run(
        ["javac", "--release", "17", "-cp", str(jetty), "-d", str(tmp_path), *map(str, sources)],
        check=True,
        capture_output=True,
    )

    def code(folder: Path) -> list[str]:
        shown = subprocess.run(
            ["javap", "-c", "-p", "-v", "-cp", str(folder), name],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        # Past the header (path, date, checksum): the constants and the code.
        lines = shown.splitlines()
        return next((lines[i + 1 :] for i, s in enumerate(lines) if "Compiled from" in s), [])

    fresh, shipped = code(tmp_path), code(loopback.GUARDS)
    assert fresh and fresh == shipped, "recompile: see the command in HostGuard.java"


# --- DNS rebinding: every listener answers loopback names only --------------------------

REBIND = "rebind.attacker.example"
SCAN = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.Scan",
    "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/"
    "aws4_request, SignedHeaders=host, Signature=0",
}


def every_port(stack: LocalStack) -> dict[str, tuple[str, dict[str, str], bytes]]:
    """Each listener of the stack, with a request it would serve: (path, headers, body)."""
    endpoints = stack.endpoints()
    list_pools = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AWSCognitoIdentityProviderService.ListUserPools",
    }
    scan = json.dumps({"TableName": stack.settings.table}).encode()
    return {
        endpoints["dynamodb"]: ("/", SCAN, scan),
        endpoints["cognito-idp"]: ("/", list_pools, b'{"MaxResults": 1}'),
        endpoints["cognito-local"]: ("/", list_pools, b'{"MaxResults": 1}'),
        endpoints["lambda"]: ("/", {}, b""),  # GET: the endpoint's readiness answer
    }


def raw(url: str, path: str, headers: dict[str, str], body: bytes) -> int:
    """The status of one request sent with exactly these headers (Host included)."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=10)
    try:
        connection.putrequest("POST" if body else "GET", path, skip_host=True)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(key, value)
        connection.endheaders(body)
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_rebinding_request_to_every_port_is_refused(stack: LocalStack) -> None:
    ports = every_port(stack)
    assert len(ports) == 4  # DynamoDB Local, the Cognito proxy, cognito-local, the endpoint

    for url, (path, headers, body) in ports.items():
        host = f"{REBIND}:{port_of(url)}"
        rebinding = {**headers, "Host": host, "Origin": f"http://{host}"}
        without_origin = {**headers, "Host": host}

        assert raw(url, path, rebinding, body) == 403, url
        assert raw(url, path, without_origin, body) == 403, url


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
def test_every_port_serves_loopback_host_names(stack: LocalStack, name: str) -> None:
    for url, (path, headers, body) in every_port(stack).items():
        with_port = {**headers, "Host": f"{name}:{port_of(url)}"}

        assert raw(url, path, with_port, body) == 200, url
        assert raw(url, path, {**headers, "Host": name}, body) == 200, url


def test_dynamodb_local_refuses_a_page_of_another_origin(stack: LocalStack) -> None:
    url = stack.endpoints()["dynamodb"]
    body = json.dumps({"TableName": stack.settings.table}).encode()
    host = {"Host": f"127.0.0.1:{port_of(url)}"}

    assert raw(url, "/", {**SCAN, **host, "Origin": STRANGER}, body) == 403
    assert raw(url, "/", {**SCAN, **host, "Origin": ALLOWED}, body) == 200


@pytest.mark.parametrize(
    ("host", "served"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("[::1]:9229", True),
        ("LOCALHOST:1", True),
        (None, False),
        ("", False),
        ("rebind.attacker.example:8000", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.:8000", False),
        ("127.0.0.2:8000", False),
        ("localhost:80a", False),
        ("localhost:8000:8000", False),
        ("[::1", False),
    ],
)
def test_loopback_host_names(host: str | None, served: bool) -> None:
    assert (loopback.refusal(host, None) is None) is served


def test_an_origin_is_served_only_when_allowed() -> None:
    assert loopback.refusal("localhost:9229", ALLOWED, [ALLOWED]) is None
    assert loopback.refusal("localhost:9229", STRANGER, [ALLOWED]) is not None
    assert loopback.refusal("localhost:9229", "null", []) is not None


@pytest.mark.parametrize(
    ("header", "length"),
    [
        (None, 0),
        ("0", 0),
        ("12", 12),
        (" 12 ", 12),
        ("-1", None),
        ("1_0", None),
        ("+5", None),
        ("١٢", None),
        ("abc", None),
        (str(loopback.MAX_BODY + 1), None),
    ],
)
def test_body_lengths(header: str | None, length: int | None) -> None:
    assert loopback.body_length(header) == length


@pytest.mark.parametrize("header", ["-1", "abc", str(10**12)])
@pytest.mark.parametrize("service", ["lambda", "cognito-idp"])
def test_a_bad_content_length_is_400_and_frees_the_thread(
    stack: LocalStack, service: str, header: str
) -> None:
    url = stack.endpoints()[service]
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=5) as sock:
        sock.sendall(
            f"POST /2015-03-31/functions/{stack.settings.function}/invocations HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port_of(url)}\r\nContent-Length: {header}\r\n\r\n".encode()
        )
        answer = sock.recv(4096)
        # The connection is closed, not left waiting for a body.
        while more := sock.recv(4096):
            answer += more

    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
