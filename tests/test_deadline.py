"""The trigger returns inside its deadline whatever DynamoDB does: a correctness property.

cognito-local would not notice a slow trigger, so these tests time the handler directly.
The budget is 2.5 s; the design's worst case is about 2.0 s, which is the margin.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from livekart_users import aws, triggers
from livekart_users.local import processes

from .conftest import TriggerOutput, load_event

BUDGET = triggers.BUDGET_SECONDS


@contextlib.contextmanager
def fake_dynamodb(
    monkeypatch: pytest.MonkeyPatch, answer: Callable[[socket.socket, threading.Event], None]
) -> Iterator[None]:
    """A local endpoint that accepts every connection and hands it to `answer` on a thread
    of its own; the handler is pointed at it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection = server.accept()[0]
            except OSError:
                continue
            threading.Thread(target=answer, args=(connection, stop), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("USERS_TABLE", "unreachable")
    try:
        yield
    finally:
        stop.set()
        thread.join()
        server.close()


def never_answer(connection: socket.socket, stop: threading.Event) -> None:
    with connection:
        stop.wait()


def trickle(connection: socket.socket, stop: threading.Event) -> None:
    """One byte every 0.3 s: each read is well inside botocore's read timeout, so only the
    trigger's own deadline can stop it."""
    with connection:
        body = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000
        for byte in body:
            if stop.wait(0.3):
                return
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                return


@pytest.fixture
def silent_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An endpoint that accepts connections and never answers."""
    with fake_dynamodb(monkeypatch, never_answer):
        yield


@pytest.fixture
def trickling_dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An endpoint that answers a byte at a time."""
    with fake_dynamodb(monkeypatch, trickle):
        yield


def test_an_endpoint_that_trickles_its_answer_cannot_hold_the_trigger(
    trickling_dynamodb: None, trigger_output: TriggerOutput
) -> None:
    elapsed = timed(load_event("post-confirmation-signup-customer"))
    assert elapsed < BUDGET, f"returned after {elapsed:.2f} s"
    [line] = trigger_output.logs()
    assert line["outcome"] == "unknown"  # the request was sent: it may have landed
    assert line["last_error_code"] == "AttemptTimedOut"


@pytest.fixture
def refused_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint where nothing listens."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{processes.free_port()}")
    monkeypatch.setenv("USERS_TABLE", "refused")


def timed(event: dict[str, Any], context: Any = None) -> float:
    started = time.monotonic()
    assert triggers.handler(event, context) is event
    return time.monotonic() - started


@pytest.mark.parametrize("event_name", ["post-confirmation-signup-customer", "post-authentication"])
def test_silent_dynamodb_returns_the_event_within_the_deadline(
    silent_dynamodb: None, trigger_output: TriggerOutput, event_name: str
) -> None:
    elapsed = timed(load_event(event_name))
    assert elapsed < BUDGET, f"returned after {elapsed:.2f} s"
    [line] = trigger_output.logs()
    assert line["outcome"] == "unknown"  # sent, never answered: not counted as failed
    assert line["level"] == "WARNING"
    assert line["error_code"] == "DeadlineExceeded"
    assert line["last_error_code"] == "ReadTimeoutError"


def test_refused_connections_return_the_event_quickly(
    refused_dynamodb: None, trigger_output: TriggerOutput
) -> None:
    elapsed = timed(load_event("post-confirmation-signup-customer"))
    assert elapsed < BUDGET
    [line] = trigger_output.logs()
    assert line["outcome"] == "failed"  # never sent: certainly not written
    assert line["level"] == "ERROR"
    assert line["last_error_code"] == "EndpointConnectionError"


class ShortContext:
    aws_request_id = "test-request"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_no_attempt_starts_that_could_outlive_the_function(
    silent_dynamodb: None, trigger_output: TriggerOutput
) -> None:
    # With 1 s left, an attempt (up to 1.5 s) could be killed mid-way by Lambda's timeout,
    # which Cognito would see as a failed sign-up: better not to start it.
    elapsed = timed(load_event("post-confirmation-signup-customer"), ShortContext(1000))
    assert elapsed < 0.5
    [line] = trigger_output.logs()
    assert line["outcome"] == "failed"  # nothing was sent
    assert line["error_code"] == "DeadlineExceeded"
    assert line["request_id"] == "test-request"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "PutItem"
    )


def test_call_within_retries_transient_errors_while_time_allows() -> None:
    clock = FakeClock()
    deadline = aws.Deadline(2.5, clock)
    calls: list[float] = []

    def flaky() -> str:
        calls.append(clock.now)
        clock.now += 0.01
        if len(calls) < 3:
            raise throttled()
        return "ok"

    assert aws.call_within(deadline, flaky, sleep=clock.sleep) == "ok"
    assert len(calls) == 3


def test_call_within_raises_a_non_transient_error_at_once() -> None:
    clock = FakeClock()
    calls = 0

    def refused() -> None:
        nonlocal calls
        calls += 1
        raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "PutItem")

    with pytest.raises(ClientError):
        aws.call_within(aws.Deadline(2.5, clock), refused, sleep=clock.sleep)
    assert calls == 1


def test_call_within_never_starts_an_attempt_that_could_pass_the_deadline() -> None:
    clock = FakeClock()
    deadline = aws.Deadline(2.5, clock)
    started: list[float] = []

    def hangs() -> None:
        started.append(clock.now)
        clock.now += aws.ATTEMPT_WORST_CASE  # the worst an attempt can take
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    with pytest.raises(aws.DeadlineExceeded) as raised:
        aws.call_within(deadline, hangs, sleep=clock.sleep)
    assert all(t + aws.ATTEMPT_WORST_CASE <= 2.5 for t in started)
    assert clock.now <= 2.5
    assert raised.value.last_error is not None
