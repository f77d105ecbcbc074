"""The local stack never corrupts its own Cognito data.

- the proxy lets one state-changing request through to cognito-local at a time (checked
  against a stand-in upstream that counts overlapping requests), and calls its hooks after
  each successful request, in order;
- damaged pool files are put aside and the last good copy restored, said in one line;
- end to end: concurrent sign-ups, a restart, a damaged file repaired, every user still there,
  and a burst of invocations just after start all inside the function's timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from livekart_users import aws
from livekart_users.local import cognito_proxy, pools, processes
from livekart_users.local.cognito_proxy import CognitoProxy, Exchange
from livekart_users.local.demo import DemoUser, sign_up

from .conftest import load_event, raw_http, start_stack


class Upstream(ThreadingHTTPServer):
    """Stands in for cognito-local: answers after a pause, counting overlapping requests."""

    daemon_threads = True

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = {"write": 0, "read": 0}
        self.most = {"write": 0, "read": 0}
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)


class _UpstreamHandler(BaseHTTPRequestHandler):
    server: Upstream

    def do_POST(self) -> None:
        name = cognito_proxy.operation(self.headers) or ""
        kind = "write" if cognito_proxy.may_write("POST", name) else "read"
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.in_flight[kind] += 1
            self.server.most[kind] = max(self.server.most[kind], self.server.in_flight[kind])
        time.sleep(0.02)
        with self.server.lock:
            self.server.in_flight[kind] -= 1
        answer = json.dumps({"echo": json.loads(body), "operation": name}).encode()
        self.send_response(400 if name == "Fail" else 200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[tuple[CognitoProxy, Upstream]]:
    upstream = Upstream()
    server = CognitoProxy(processes.free_port(), upstream.server_address[1])
    for each in (upstream, server):
        threading.Thread(target=each.serve_forever, daemon=True).start()
    yield server, upstream
    for each in (server, upstream):
        each.shutdown()
        each.server_close()


def call(
    server: CognitoProxy, operation: str, body: dict[str, Any], target: str = "X-Amz-Target"
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.server_address[1]}/",
        data=json.dumps(body).encode(),
        headers={
            target: f"AWSCognitoIdentityProviderService.{operation}",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_proxy_lets_one_write_through_at_a_time(
    proxy: tuple[CognitoProxy, Upstream],
) -> None:
    server, upstream = proxy
    calls = [("SignUp", {"n": i}) for i in range(12)] + [("ListUsers", {"n": i}) for i in range(12)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        answers = list(pool.map(lambda c: call(server, *c), calls))
    assert upstream.most["write"] == 1
    assert answers == [(200, {"echo": body, "operation": operation}) for operation, body in calls]


def test_header_names_are_matched_whatever_their_case(
    proxy: tuple[CognitoProxy, Upstream],
) -> None:
    # Amplify and the SDK for JavaScript v3 send `x-amz-target` in lower case.
    server, upstream = proxy
    seen: list[Exchange] = []
    server.after.append(seen.append)
    reads = [("ListUsers", {"n": i}) for i in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda c: call(server, *c, target="x-amz-target"), reads))
    assert answers == [(200, {"echo": body, "operation": op}) for op, body in reads]
    assert upstream.most["read"] > 1  # reads were not taken for writes and serialised
    assert call(server, "AdminDeleteUser", {"n": 7}, target="x-amz-target")[0] == 200
    server.drain()
    assert seen[-1].operation == "AdminDeleteUser"
    assert {e.operation for e in seen} == {"ListUsers", "AdminDeleteUser"}
    assert cognito_proxy.header({"X-AMZ-TARGET": "a.B"}, "x-amz-target") == "a.B"
    assert cognito_proxy.operation(
        {"x-amz-target": "AWSCognitoIdentityProviderService.SignUp"}
    ) == ("SignUp")


class _KeepAliveHandler(_UpstreamHandler):
    protocol_version = "HTTP/1.1"  # as cognito-local (Node's HTTP server) answers

    def do_POST(self) -> None:
        self.server.ports.add(self.client_address[1])  # type: ignore[attr-defined]
        super().do_POST()


def test_a_request_with_every_header_name_in_lower_case_is_served(
    proxy: tuple[CognitoProxy, Upstream],
) -> None:
    server, _ = proxy
    port = server.server_address[1]
    body = b'{"n": 1}'
    request = (
        f"POST / HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        "x-amz-target: AWSCognitoIdentityProviderService.ListUsers\r\n"
        f"content-type: application/x-amz-json-1.1\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body
    head, payload = raw_http(port, request)
    assert b" 200 " in head.split(b"\r\n")[0]
    assert json.loads(payload) == {"echo": {"n": 1}, "operation": "ListUsers"}


def test_a_failure_in_the_stacks_own_answers_is_an_answer_not_a_hang(
    proxy: tuple[CognitoProxy, Upstream],
) -> None:
    server, _ = proxy

    class Broken:
        def answer(self, name: str | None, body: bytes) -> None:
            raise RuntimeError("a bug")

    server.sign_in = Broken()  # type: ignore[assignment]
    status, answer = call(server, "InitiateAuth", {"AuthFlow": "USER_SRP_AUTH"})
    assert (status, answer["__type"]) == (500, "InternalErrorException")


def test_the_stacks_own_answers_carry_cors_for_an_allowed_web_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A web app's SRP sign-in is answered by the stack, not cognito-local: the browser
    # reads that answer only with the CORS header cognito-local would have sent.
    monkeypatch.setenv("LIVEKART_LOCAL_ALLOWED_ORIGINS", "http://localhost:3000")
    upstream = Upstream()
    server = CognitoProxy(processes.free_port(), upstream.server_address[1])

    class Answers:
        def answer(self, name: str | None, body: bytes) -> tuple[int, dict[str, str], bytes]:
            return 200, {"Content-Type": "application/x-amz-json-1.1"}, b"{}"

    server.sign_in = Answers()  # type: ignore[assignment]
    for each in (upstream, server):
        threading.Thread(target=each.serve_forever, daemon=True).start()
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{server.server_address[1]}/",
            data=b"{}",
            headers={
                "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
                "Origin": "http://localhost:3000",
            },
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        del request.headers["Origin"]
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.headers["Access-Control-Allow-Origin"] is None
    finally:
        for each in (server, upstream):
            each.shutdown()
            each.server_close()


def test_the_proxy_keeps_its_connection_to_cognito_local_alive() -> None:
    # A connection per request cost a connect and a close on every call.
    upstream = Upstream()
    upstream.RequestHandlerClass = _KeepAliveHandler
    upstream.ports = set()  # type: ignore[attr-defined]
    server = CognitoProxy(processes.free_port(), upstream.server_address[1])
    for each in (upstream, server):
        threading.Thread(target=each.serve_forever, daemon=True).start()
    try:
        answers = [call(server, "ListUsers", {"n": i}) for i in range(5)]
        answers += [call(server, "SignUp", {"n": i}) for i in range(5)]
        assert [status for status, _ in answers] == [200] * 10
        assert len(upstream.ports) == 1  # type: ignore[attr-defined]
    finally:
        for each in (server, upstream):
            each.shutdown()
            each.server_close()


@pytest.mark.parametrize(
    ("operation", "writes"),
    [
        ("SignUp", True),
        ("ConfirmSignUp", True),
        ("InitiateAuth", True),  # cognito-local stores the refresh token on the user
        ("AdminUpdateUserAttributes", True),
        ("AdminGetUser", False),
        ("ListUsers", False),
        ("DescribeUserPool", False),
        ("GetUser", False),
        ("AdminListGroupsForUser", False),
    ],
)
def test_what_counts_as_a_write(operation: str, writes: bool) -> None:
    assert cognito_proxy.may_write("POST", operation) is writes


def test_hooks_see_each_successful_request_in_order_and_cannot_break_one(
    proxy: tuple[CognitoProxy, Upstream],
) -> None:
    server, _ = proxy
    seen: list[Exchange] = []

    def failing(_: Exchange) -> None:
        raise RuntimeError("a broken hook")

    server.after.extend([seen.append, failing])
    assert call(server, "SignUp", {"n": 1})[0] == 200
    assert call(server, "Fail", {"n": 2})[0] == 400
    assert call(server, "AdminDeleteUser", {"n": 3})[0] == 200
    server.drain()  # the answer goes out before the hooks run
    assert [(e.operation, json.loads(e.request_body)) for e in seen] == [
        ("SignUp", {"n": 1}),
        ("AdminDeleteUser", {"n": 3}),
    ]
    assert json.loads(seen[0].response_body)["operation"] == "SignUp"


# --- the pool files -------------------------------------------------------------------------

POOL = {"Options": {"Id": "local_x"}, "Users": {"a": {"Username": "a"}}}


def test_a_damaged_pool_file_is_restored_from_the_last_good_copy(tmp_path: Path) -> None:
    db, backup = tmp_path / "db", tmp_path / "backup"
    db.mkdir()
    good = json.dumps(POOL, indent=2)
    (db / "local_x.json").write_text(good)
    (db / "clients.json").write_text("{}")
    assert pools.check_and_keep(db, backup) == []
    assert (backup / "local_x.json").read_text() == good
    # WHEN two overlapping writes leave trailing garbage
    (db / "local_x.json").write_text(good + '\n  }\n}"}')
    [repair] = pools.check_and_keep(db, backup)
    # THEN the last good copy is back, the damaged file kept aside, and one line says so
    assert (db / "local_x.json").read_text() == good
    assert (db / repair.set_aside).read_text().endswith('"}')
    line = str(repair)
    assert line.startswith("cognito-local's local_x.json was damaged (not valid JSON at byte ")
    assert "restored the last good copy, taken " in line and "\n" not in line


def test_an_empty_pool_file_counts_as_damaged(tmp_path: Path) -> None:
    # cognito-local would read an empty file as an empty pool: every user gone, silently.
    db, backup = tmp_path / "db", tmp_path / "backup"
    db.mkdir()
    (db / "local_x.json").write_text(json.dumps(POOL))
    pools.keep(db, backup)
    (db / "local_x.json").write_text("")
    [repair] = pools.check_and_keep(db, backup)
    assert repair.problem == "empty"
    assert json.loads((db / "local_x.json").read_text()) == POOL


def test_without_a_good_copy_the_damaged_file_is_set_aside(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / "local_x.json").write_text('{"Users": ')
    [repair] = pools.check_and_keep(db, tmp_path / "backup")
    assert not (db / "local_x.json").exists()
    assert (db / repair.set_aside).read_text() == '{"Users": '
    assert str(repair).endswith("that pool starts empty")


def test_a_deleted_pool_is_not_brought_back(tmp_path: Path) -> None:
    db, backup = tmp_path / "db", tmp_path / "backup"
    db.mkdir()
    (db / "local_x.json").write_text(json.dumps(POOL))
    pools.keep(db, backup)
    (db / "local_x.json").unlink()  # DeleteUserPool removes the file
    assert pools.check_and_keep(db, backup) == []
    assert list(db.iterdir()) == [] and list(backup.iterdir()) == []


def test_down_waits_only_while_a_file_is_caught_mid_write(tmp_path: Path) -> None:
    db = tmp_path / "db"
    db.mkdir()
    (db / "local_x.json").write_text(json.dumps(POOL))
    assert pools.wait_until_whole(db, timeout=0.2)
    (db / "local_x.json").write_text('{"Users": {')  # a write on its way to disk
    assert not pools.wait_until_whole(db, timeout=0.2)


# --- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_concurrent_sign_ups_a_restart_and_a_damaged_file_lose_no_user(tmp_path: Path) -> None:
    saved = dict(os.environ)
    stack = start_stack(tmp_path / "stack")
    try:
        # A burst of direct invocations right after start: all inside the function's timeout.
        lambda_client = aws.client("lambda")

        def invoke(_: int) -> str | None:
            event = load_event("post-confirmation-signup-customer", sub=str(uuid.uuid4()))
            answer = lambda_client.invoke(
                FunctionName=stack.settings.function, Payload=json.dumps(event).encode()
            )
            return answer.get("FunctionError")

        with ThreadPoolExecutor(max_workers=16) as pool:
            assert list(pool.map(invoke, range(16))) == [None] * 16
        assert [i["outcome"] for i in stack.invocations()] == ["created"] * 16

        # GIVEN users signing up at once through the stack's Cognito endpoint
        status = stack.status()
        users = [
            DemoUser(f"burst-{uuid.uuid4().hex[:8]}@example.com", "customer") for _ in range(12)
        ]
        with ThreadPoolExecutor(max_workers=12) as pool:
            done = list(
                pool.map(
                    lambda u: sign_up(aws.client("cognito-idp"), str(status.client_id), u), users
                )
            )
        assert done == [True] * len(users)
        pool_file = stack.cognito_db / f"{status.user_pool_id}.json"
        assert pools.problem(pool_file) is None

        # WHEN the stack stops, the pool file is damaged anyway, and the stack starts again
        stack.down()
        with pool_file.open("a") as damaged:
            damaged.write('\n  }\n}"}')
        again = stack.up()

        # THEN it says what it restored, and every user is still there
        [line] = again.repairs
        assert line.startswith(f"cognito-local's {pool_file.name} was damaged (not valid JSON")
        listed = aws.client("cognito-idp").list_users(UserPoolId=status.user_pool_id)["Users"]
        names = {a["Value"] for u in listed for a in u["Attributes"] if a["Name"] == "email"}
        assert {u.email for u in users} <= names
    finally:
        stack.down()
        os.environ.clear()
        os.environ.update(saved)
