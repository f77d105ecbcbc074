"""Fixtures: real emulators on free ports (so tests run beside a demo stack), never AWS."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from livekart_users import aws, triggers
from livekart_users.local import emulators, processes
from livekart_users.local.stack import LocalStack, Settings
from livekart_users.table import UsersTable

# Real Cognito event JSON, kept inside the repository so a clone stands alone.
EVENTS = Path(__file__).resolve().parent / "events"

# No test may reach AWS: dummy credentials, and no profile to fall back on.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
for variable in (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "USERS_EXTRA_FIELDS",
    "POWERTOOLS_LOG_LEVEL",
    "COLUMNS",  # rich reads it once when a console is made: tests set it per command
    "LINES",
):
    os.environ.pop(variable, None)


class TriggerOutput:
    """Everything the trigger writes: its log lines (JSON) and its EMF metric lines."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._logs = io.StringIO()
        logger = logging.getLogger(triggers.SERVICE)
        self._handler = logging.StreamHandler(self._logs)
        self._handler.setFormatter(logger.handlers[0].formatter)
        logger.addHandler(self._handler)

    def _take_logs(self) -> str:
        logs = self._logs.getvalue()
        self._logs.seek(0)
        self._logs.truncate()
        return logs

    def text(self) -> str:
        """All output since the last read (log lines and metrics), and forget it."""
        return self._take_logs() + self._capsys.readouterr().out

    def logs(self) -> list[dict[str, Any]]:
        """The log lines since the last read, parsed; forgets all output."""
        self._capsys.readouterr()
        return [json.loads(line) for line in self._take_logs().splitlines() if line.strip()]

    def close(self) -> None:
        logging.getLogger(triggers.SERVICE).removeHandler(self._handler)


@pytest.fixture
def trigger_output(capsys: pytest.CaptureFixture[str]) -> Iterator[TriggerOutput]:
    output = TriggerOutput(capsys)
    yield output
    output.close()


def load_event(event_name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{event_name}.json").read_text())
    event["request"]["userAttributes"].update(changes)
    return event


@pytest.fixture(autouse=True)
def private_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconcile's checkpoints (platformdirs' user state directory) go to the test's own
    directory, never the user's."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


@pytest.fixture(scope="session")
def dynamodb_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One in-memory DynamoDB Local per test process."""
    port = processes.free_port()
    log = tmp_path_factory.mktemp("dynamodb") / "dynamodb.log"
    pid = emulators.start_dynamodb(port, log=log)
    yield f"http://127.0.0.1:{port}"
    processes.stop(pid)


@pytest.fixture
def users_table(dynamodb_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> UsersTable:
    """A fresh table of its own for each test, and the handler pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    name = f"users-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("USERS_TABLE", name)
    table = UsersTable(aws.client("dynamodb"), name)
    table.create_table()
    return table


def start_stack(directory: Path) -> LocalStack:
    settings = Settings(
        directory=directory,
        dynamodb_port=processes.free_port(),
        cognito_port=processes.free_port(),
        endpoint_port=processes.free_port(),
        table="livekart-users",
    )
    stack = LocalStack(settings)
    try:
        stack.up()
    except Exception:
        stack.down()
        raise
    return stack


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole local stack (DynamoDB Local, cognito-local, endpoint) for one test module."""
    saved = dict(os.environ)
    stack = start_stack(tmp_path_factory.mktemp("stack"))
    yield stack
    stack.down()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def stack_env(local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> LocalStack:
    """Point this test's clients at the module's stack."""
    for key, value in local_stack.environment().items():
        monkeypatch.setenv(key, value)
    return local_stack


def raw_http(port: int, request: bytes) -> tuple[bytes, bytes]:
    """Send `request` as it is (header names as written) to 127.0.0.1:`port`; read the
    answer until the server closes: (status line and headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body
