"""The local Lambda Invoke endpoint answers as Lambda does, and enforces the function's timeout.

Driven through boto3's Lambda client, so the wire format is the real Invoke API's.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from livekart_users import aws
from livekart_users.local.endpoint import InvokeServer
from livekart_users.local.processes import free_port
from livekart_users.table import UsersTable

from .conftest import raw_http

FUNCTION = "livekart-post-confirmation-trigger"
EVENT = {
    "triggerSource": "PostAuthentication_Authentication",
    "userPoolId": "local_x",
    "request": {"userAttributes": {"sub": "abc-123"}},
    "response": {},
}


@pytest.fixture
def serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Callable[[Any, Any], Any]], InvokeServer]]:
    servers: list[InvokeServer] = []

    def start(handler: Callable[[Any, Any], Any]) -> InvokeServer:
        port = free_port()
        server = InvokeServer(port, FUNCTION, 0.5, tmp_path / "record.jsonl", handler=handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{port}")
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def invoke(name: str = FUNCTION) -> dict[str, Any]:
    answer = aws.client("lambda").invoke(FunctionName=name, Payload=json.dumps(EVENT).encode())
    answer["Body"] = json.loads(answer["Payload"].read())
    return dict(answer)


def record(server: InvokeServer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.record.read_text().splitlines()]


def test_a_handler_result_is_returned_and_recorded(serve: Any) -> None:
    server = serve(lambda event, context: event)
    answer = invoke()
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["Body"] == EVENT
    [entry] = record(server)
    assert entry["function"] == FUNCTION
    assert entry["trigger_source"] == "PostAuthentication_Authentication"
    assert entry["user_id"] == "abc-123"
    assert entry["function_error"] is None


def test_header_names_in_lower_case_are_read(serve: Any) -> None:
    # HTTP header names are case-insensitive (SDK v3 sends them in lower case).
    serve(lambda event, context: event)
    port = int(os.environ["AWS_ENDPOINT_URL_LAMBDA"].rsplit(":", 1)[1])
    body = json.dumps(EVENT).encode()
    request = (
        f"POST /2015-03-31/functions/{FUNCTION}/invocations HTTP/1.1\r\n"
        f"host: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body
    head, payload = raw_http(port, request)
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
    assert json.loads(payload) == EVENT


def test_the_function_timeout_is_enforced(serve: Any) -> None:
    server = serve(lambda event, context: time.sleep(3))
    started = time.monotonic()
    answer = invoke()
    assert time.monotonic() - started < 2
    assert answer["FunctionError"] == "Unhandled"
    assert answer["Body"]["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 0.50 seconds" in answer["Body"]["errorMessage"]
    [entry] = record(server)
    assert entry["function_error"] == "Unhandled"
    assert entry["error_type"] == "Sandbox.Timedout"


def test_an_exception_is_answered_as_an_unhandled_function_error(serve: Any) -> None:
    def broken(event: Any, context: Any) -> Any:
        raise ValueError("boom")

    serve(broken)
    answer = invoke()
    assert answer["FunctionError"] == "Unhandled"
    assert answer["Body"]["errorType"] == "ValueError"
    assert answer["Body"]["errorMessage"] == "boom"


def test_the_handler_gets_a_lambda_like_context(serve: Any) -> None:
    seen: dict[str, Any] = {}

    def handler(event: Any, context: Any) -> Any:
        seen["name"] = context.function_name
        seen["remaining"] = context.get_remaining_time_in_millis()
        return event

    serve(handler)
    invoke(f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION}")
    assert seen["name"] == FUNCTION
    assert 0 < seen["remaining"] <= 500


def test_an_unknown_function_is_not_found(serve: Any) -> None:
    serve(lambda event, context: event)
    with pytest.raises(ClientError) as raised:
        invoke("some-other-function")
    assert aws.error_code(raised.value) == "ResourceNotFoundException"


def test_sixteen_concurrent_first_sign_ups_all_answer_in_time(
    users_table: UsersTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the real trigger behind the endpoint, with no DynamoDB client built yet for its
    # environment (a new spelling of the endpoint), and Lambda's 4 s function timeout
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", os.environ["AWS_ENDPOINT_URL_DYNAMODB"] + "/")
    port = free_port()
    server = InvokeServer(port, FUNCTION, 4.0, tmp_path / "record.jsonl")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{port}")
    events = [
        {
            "triggerSource": "PostConfirmation_ConfirmSignUp",
            "userPoolId": "local_x",
            "userName": f"user{i}",
            # email_verified sent: the endpoint has no Cognito to ask whether it auto-verifies
            "request": {
                "userAttributes": {
                    "sub": str(uuid.uuid4()),
                    "email": f"u{i}@x.test",
                    "email_verified": "true",
                }
            },
            "response": {},
        }
        for i in range(16)
    ]
    lambda_ = aws.client("lambda")
    try:
        # WHEN 16 sign-ups are confirmed at once (16 first invocations)
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(
                pool.map(
                    lambda e: lambda_.invoke(FunctionName=FUNCTION, Payload=json.dumps(e)),
                    events,
                )
            )
    finally:
        server.shutdown()
        server.server_close()
    # THEN none hit the function's timeout (each waits for one shared client build, within
    # its own deadline), and every row the handler reports written is there (on a machine
    # loaded enough, a write may be reported failed or unknown: healing's business)
    entries = record(server)
    assert [a.get("FunctionError") for a in answers] == [None] * 16, entries
    assert len(entries) == 16
    for entry in entries:
        assert entry["outcome"] in ("created", "already_exists", "failed", "unknown"), entry
        if entry["outcome"] in ("created", "already_exists"):
            assert users_table.get(entry["user_id"]) is not None
