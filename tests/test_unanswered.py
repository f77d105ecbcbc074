"""An AWS endpoint that accepts connections and never answers: every command ends within its
budget with one line naming the endpoint, and shows that it is waiting.

The budget is a setting (LIVEKART_AWS_TIMEOUT), so these tests use a small one; the default's
bound is computed from the config the commands build, not measured.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from rich.console import Console

from livekart_users import aws
from livekart_users.cli import main
from livekart_users.cli.common import WaitingForAws

BUDGET = 2.0
POOL = "us-east-1_Silent1"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """http://127.0.0.1:PORT: accepts every connection, reads nothing, answers nothing."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.1)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


@pytest.fixture
def everything_silent(silent_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # Every service (a service's own variable would make doctor look for a local stack).
    monkeypatch.setenv("AWS_ENDPOINT_URL", silent_endpoint)
    for variable in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(aws.CLI_BUDGET_ENV, str(BUDGET))
    return silent_endpoint


COMMANDS = {
    "users get": ["users", "get", "0b6f7a3e-0000-4000-8000-000000000001"],
    "deploy --dry-run": ["deploy", "--user-pool-id", POOL, "--dry-run"],
    "doctor": ["doctor", "--user-pool-id", POOL],
    "reconcile": ["reconcile", "--user-pool-id", POOL],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_command_ends_with_one_line_naming_an_endpoint_that_never_answers(
    name: str, everything_silent: str
) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(main, COMMANDS[name])
    elapsed = time.monotonic() - started
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2), result.output  # doctor: 2, it could not look
    assert lines[-1] == (
        f"error: no answer from {everything_silent} within {BUDGET:g} s: check the network "
        f"and AWS_ENDPOINT_URL_*, or set {aws.CLI_BUDGET_ENV} to wait longer"
    )
    assert "Traceback" not in result.output
    # The property itself (as the trigger's deadline is one): it ends, within a few budgets
    # (doctor's checks wait side by side), not after botocore's 60 s reads.
    assert elapsed < 4 * BUDGET + 2, f"{name} took {elapsed:.1f} s"


def test_the_default_budget_bounds_a_call_well_under_30_seconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(aws.CLI_BUDGET_ENV, raising=False)
    config = aws.client("dynamodb", region_name="us-east-1").meta.config
    assert config.retries["total_max_attempts"] == aws.CLI_ATTEMPTS
    # Interpreter start and the error line take the rest of the 30 s.
    assert aws.worst_case_seconds(config) <= 25
    assert config.read_timeout >= 5, "too impatient for a real AWS answer"


def test_the_bound_follows_botocores_own_retry_arithmetic() -> None:
    from botocore.config import Config

    # 3 attempts of 1 + 2 s, and sleeps of at most 1 s and 2 s between them.
    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard"})
    assert aws.worst_case_seconds(config) == 3 * 3 + 1 + 2


@pytest.mark.parametrize("value", ["soon", "0", "-5", "1e9"])
def test_a_bad_budget_setting_is_one_line(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(aws.CLI_BUDGET_ENV, value)
    result = CliRunner().invoke(main, ["users", "get", "x"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: {aws.CLI_BUDGET_ENV}={value!r} is not a number of seconds between 1 and 300: "
        f"unset it (default {aws.DEFAULT_CLI_BUDGET:g} s) or give e.g. {aws.CLI_BUDGET_ENV}=20"
    ]


def test_a_spinner_names_the_endpoint_while_a_call_waits(everything_silent: str) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=100)
    # Each attempt waits ≈ 0.3 s under the test's 2 s budget: show the spinner well before.
    waiting = WaitingForAws(terminal, after=0.05, tick=0.01)
    with aws.one_session(prepare=waiting.hook):
        dynamodb = aws.client("dynamodb")
        with pytest.raises(Exception, match="Read timeout"):
            dynamodb.get_item(TableName="t", Key={"user_id": {"S": "x"}})
    shown = screen.getvalue()
    assert f"waiting for {everything_silent} (" in shown
    # This call no longer counts as waiting; the spinner is gone unless another thread of this
    # process (the session is shared) is still waiting on a call of its own.
    assert threading.get_ident() not in waiting._waiting
    assert waiting._waiting or waiting._status is None, "the spinner is gone once calls end"


def test_no_spinner_when_stderr_is_not_a_terminal(everything_silent: str) -> None:
    screen = io.StringIO()
    waiting = WaitingForAws(Console(file=screen), after=0.1, tick=0.05)
    with aws.one_session(prepare=waiting.hook), pytest.raises(Exception, match="Read timeout"):
        aws.client("dynamodb").get_item(TableName="t", Key={"user_id": {"S": "x"}})
    assert screen.getvalue() == ""


def test_a_command_builds_all_its_clients_from_one_session() -> None:
    made: list[object] = []
    with aws.one_session(prepare=made.append):
        first = aws.client("dynamodb", region_name="us-east-1")
        second = aws.client("cognito-idp", region_name="us-east-1")
    assert len(made) == 1
    assert first.meta.events is not second.meta.events  # two clients...
    outside = aws.client("sts", region_name="us-east-1")
    assert len(made) == 1  # ...and outside the block, sessions of their own again
    assert outside.meta.region_name == "us-east-1"
