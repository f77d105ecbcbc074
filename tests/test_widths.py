"""Every command that prints a table or a report, at 80 and at 120 columns: no word or id is
split across lines, no line is wider than the terminal (but for a single word longer than it,
left whole), and a table has a header for every column, whole; or else it is the documented
fallback of indented lines (README: Output for people and for scripts)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from livekart_users import schema
from livekart_users.cli import main, render
from livekart_users.deploy.clients import Clients
from livekart_users.local.stack import LocalStack
from livekart_users.table import UsersTable
from tests.test_deploy import clients, make_pool  # noqa: F401 (fixture)
from tests.test_logs import (  # noqa: F401 (fixtures)
    FUNCTION,
    cloudwatch,
    three_invocations,
)

WIDTHS = (80, 120)
LONG_NAME = "María Fernanda González-Rodríguez de la Santísima Trinidad"
LONG_EMAIL = "first.middle.last-{}@a-rather-long-company-domain.example"
T0 = "2026-01-31T12:00:00.000Z"


def run(width: int, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(width)})


def assert_reads_at(
    output: str, width: int, tokens: Iterable[str], headers: Iterable[str] = ()
) -> None:
    """The contract of this module, on one command's output."""
    lines = output.splitlines()
    for line in lines:
        # A command to copy has a line of its own, indented, never broken (README).
        command = line.startswith("    ") and "livekart-users " in line
        assert len(line) <= width or len(line.split()) == 1 or command, f"{width}: {line!r}"
    words = {word for line in lines for word in line.replace("│", " ").split()}
    for token in tokens:
        assert any(token in word for word in words), f"{token!r} is split:\n{output}"
    # A table's header is one line: a squeezed table wraps its headers ("emai" over "l").
    runs = "".join("h" if "┃" in line else "." for line in lines)
    assert "hh" not in runs, f"a header is split:\n{output}"
    head = [ln for ln in lines if "┃" in ln]
    if head:  # and each column's header is there, whole
        for header in headers:
            assert any(header in ln for ln in head), f"header {header!r} is missing:\n{output}"


def add_user(table: UsersTable, i: int) -> dict[str, Any]:
    sub = str(uuid.uuid4())
    attributes = {
        "sub": sub,
        "name": LONG_NAME,
        "email": LONG_EMAIL.format(i),
        "email_verified": "true",
        "phone_number": "+15555550123",
    }
    row = schema.new_record(attributes, sub, timestamp=T0)
    assert table.create_if_absent(row)
    return row


def identity(rows: Iterable[dict[str, Any]]) -> list[str]:
    shown = [str(r[k]) for r in rows for k in ("user_id", "email") if k in r]
    return shown + (LONG_NAME.split() if shown else [])


# --- users ----------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_users_commands(users_table: UsersTable, width: int) -> None:
    rows = [add_user(users_table, i) for i in range(3)]
    erased = rows[2]
    assert users_table.anonymize(
        erased["user_id"], user_pool_id="us-east-1_pMr6t5GFA", timestamp=T0, adopt_legacy=True
    )
    sub = rows[0]["user_id"]

    for args, shown, more in (
        (("users", "list"), rows[:2], [erased["user_id"]]),
        (("users", "find", "--email", rows[1]["email"]), rows[1:2], []),
        (("users", "get", sub), rows[:1], [T0]),
        (("users", "set-role", sub, "vendor"), rows[:1], [T0]),
        (("users", "suspend", sub), rows[:1], [T0]),
        (("users", "activate", sub), rows[:1], [T0]),
        (("users", "get", erased["user_id"]), [], [erased["user_id"], T0]),
    ):
        result = run(width, *args)
        assert result.exit_code == 0, result.output
        headers = render.USER_COLUMNS if args[1] in ("list", "find") else ("attribute", "value")
        assert_reads_at(result.output, width, [*identity(shown), *more], headers)


# --- AWS: deploy, doctor, reconcile (moto) ------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_deploy_plan_doctor_and_reconcile(clients: Clients, width: int) -> None:
    other = "arn:aws:lambda:us-east-1:123456789012:function:another-teams-post-confirmation"
    pool_id = make_pool(clients, PostConfirmation=other)
    plan = json.loads(run(width, "deploy", "--user-pool-id", pool_id, "--dry-run", "--json").stdout)
    deployed = run(width, "deploy", "--user-pool-id", pool_id, "--dry-run")
    assert_reads_at(
        deployed.output,
        width,
        [pool_id, other, *(w for s in plan["steps"] for w in s["resource"].split())],
        ["resource", "action", "reason"],
    )
    checked = json.loads(run(width, "doctor", "--user-pool-id", pool_id, "--json").stdout)
    doctor = run(width, "doctor", "--user-pool-id", pool_id)
    assert_reads_at(
        doctor.output,
        width,
        [pool_id, *(w for c in checked["checks"] for w in (c["fix"] or "").split())],
    )

    table = UsersTable(clients.dynamodb, "users")
    table.create_table()
    orphan = add_user(table, 9)
    reconciled = run(width, "reconcile", "--user-pool-id", pool_id, "--table", "users")
    assert reconciled.exit_code == 0, reconciled.output
    assert_reads_at(reconciled.output, width, [pool_id, orphan["user_id"]])


# --- logs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_logs(three_invocations: dict[str, Any], width: int) -> None:
    result = run(width, "logs", "--function-name", FUNCTION)
    assert result.exit_code == 0, result.output
    assert_reads_at(
        result.output,
        width,
        [three_invocations["sub"], "PostConfirmation_ConfirmSignUp", "PostAuthentication"],
        render.LOG_COLUMNS,
    )
    # Not a squeezed table: a header per column, or the lines that name each value.
    assert "┃ time (UTC)" in result.output or "    user id: " in result.output


def test_following_logs_on_a_wide_terminal_has_a_header_over_its_aligned_rows() -> None:
    from rich.console import Console

    console = Console(width=200, record=True, force_terminal=False)
    window = _window()
    render.print_logs_window(console, console, window, as_json=False, follow=True)
    text = console.export_text()
    header, row = text.splitlines()[1:3]
    assert header.split() == " ".join(render.LOG_COLUMNS).split()
    assert row.index("created") == header.index("outcome")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("follow", [False, True])
def test_a_long_record_path_in_the_logs_heading_is_whole(width: int, follow: bool) -> None:
    from dataclasses import replace

    from rich.console import Console

    path = "/home/someone/projects/a-shop/" + "a-rather-long-folder-name/" * 3 + "invocations.jsonl"
    window = replace(_window(), source=f"the local stack's record {path}")
    for shown in (window, replace(window, invocations=[])):
        console = Console(width=width, record=True, force_terminal=False)
        render.print_logs_window(console, console, shown, as_json=False, follow=follow)
        text = console.export_text()
        assert_reads_at(text, width, [path, *(i.user_id or "" for i in shown.invocations)])


def _window() -> Any:
    from datetime import UTC, datetime

    from livekart_users import logs

    invocation = logs.Invocation(
        time=datetime(2026, 12, 2, 10, 0, tzinfo=UTC),
        request_id="r1",
        trigger_source="PostConfirmation_ConfirmSignUp",
        outcome="created",
        user_id=str(uuid.uuid4()),
        duration_ms=12.5,
    )
    return logs.Window(
        invocations=[invocation], since=invocation.time, source="the record", cut_short=None
    )


# --- package, local status ----------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
def test_package(tmp_path: Path, width: int) -> None:
    output = tmp_path / "a-rather-long-folder-name-for-the-artefacts" / "trigger.zip"
    result = run(width, "package", "-o", str(output), "--no-bundle-sdk", "--json")
    built = json.loads(result.stdout)
    shown = run(width, "package", "-o", str(output), "--no-bundle-sdk")
    assert shown.exit_code == 0, shown.output
    key = f"s3://BUCKET/livekart-users/{built['sha256']}.zip"
    assert_reads_at(shown.output, width, [str(output), built["sha256"], key])


@pytest.mark.parametrize("width", WIDTHS)
def test_local_status(tmp_path: Path, width: int) -> None:
    folder = tmp_path / "a-stack-folder-with-a-rather-long-name-to-show-the-title-is-not-cut"
    result = run(width, "local", "status", "--dir", str(folder))
    assert result.exit_code == 1  # stopped
    assert_reads_at(result.output, width, [str(folder.resolve())], ["service", "state"])


# --- the demo (the local stack) -----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_local_demo_and_users_delete(stack_env: LocalStack, width: int) -> None:
    demo = run(width, "local", "demo", "--no-up", "--dir", str(stack_env.dir))
    assert demo.exit_code == 0, demo.output
    table = UsersTable(stack_env_client(), stack_env.settings.table)
    rows = table.scan()
    assert rows
    shown = [r for r in rows if r.get("email") and r["email"] in demo.output]
    assert shown, demo.output
    assert_reads_at(
        demo.output,
        width,
        [t for r in shown for t in (r["user_id"], r["email"])],
    )


def stack_env_client() -> Any:
    from livekart_users import aws

    return aws.client("dynamodb")
