"""A user's own text is printed as text: it cannot drive the operator's terminal.

`name` is writable by the user. Printed raw, control characters in it are a hyperlink (OSC 8),
colours, a right-to-left override or a newline that draws a fake table row. Every
human-readable output shows them as escapes (cli/visible_text.py); the trigger also cleans
names on write (schema.clean_name, docs/record.md). `--json` is JSON's own escaping.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from livekart_users import aws, schema, triggers
from livekart_users.cli import main, render
from livekart_users.cli.common import friendly_errors
from livekart_users.cli.visible_text import visible
from livekart_users.exceptions import LivekartUsersError
from livekart_users.local.demo import DemoUser, sign_up
from livekart_users.local.stack import LocalStack
from livekart_users.logs import Invocation
from livekart_users.table import UsersTable, to_dynamo

from .conftest import TriggerOutput, load_event

HYPERLINK = "\x1b]8;;http://evil.example\x1b\\CLICK\x1b]8;;\x1b\\"
COLOUR = "\x1b[31mred\x1b[0m"
RTL = "\u202eevil.exe"
FAKE_ROW = "Eve\n| 00000000-0000-0000-0000-000000000000 | admin | active |"
HOSTILE = f"{HYPERLINK} {COLOUR} {RTL} {FAKE_ROW} \x9b2J \u2066iso\u2069 \x07\x08\r"
# What must never reach a terminal from user data (the output's own line ends aside).
T0 = "2026-01-31T12:00:00.000Z"
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "400"})


def hostile_row(table: UsersTable, name: str = HOSTILE) -> dict[str, Any]:
    """A row whose name holds control characters: written before names were cleaned, or by
    the app itself (the trigger no longer stores them)."""
    sub = str(uuid.uuid4())
    row = schema.new_record(
        {"sub": sub, "email": f"eve-{sub[:8]}@example.com", "email_verified": "true"},
        sub,
        timestamp=schema.now(),
    )
    assert table.create_if_absent(row)
    table.client.update_item(
        TableName=table.name,
        Key=to_dynamo({"user_id": sub}),
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues=to_dynamo({":n": name}),
    )
    return {**row, "name": name}


def assert_shown_as_text(output: str) -> None:
    assert not CONTROL.search(output), repr(CONTROL.findall(output))
    assert "\\x1b]8;;http://evil.example\\x1b\\CLICK" in output
    assert "\\x1b[31mred\\x1b[0m" in output and "\\u202eevil.exe" in output
    # The newline is shown, not obeyed: the fake row stays inside the name's cell.
    assert "Eve\\n| 00000000-0000-0000-0000-000000000000 | admin | active |" in output
    assert not any(line.startswith("| 00000000") for line in output.splitlines())


# --- the escaping ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # Letters, emoji and the joiner between them stay.
        ("Zoë Ñandú 李 😀 👨‍👩‍👧", "Zoë Ñandú 李 😀 👨‍👩‍👧"),
        ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
        ("\x1b[31m", "\\x1b[31m"),
        ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
        ("\u202ecba\u202c", "\\u202ecba\\u202c"),
        ("\u2066x\u2069\u200f\u061c", "\\u2066x\\u2069\\u200f\\u061c"),
        ("\u2028\u2029", "\\u2028\\u2029"),
    ],
)
def test_visible_shows_controls_as_escapes_and_keeps_everything_else(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert not CONTROL.search(visible(text))


# --- users get / find / list -------------------------------------------------------------


def test_users_get_prints_a_hostile_name_as_text(users_table: UsersTable) -> None:
    row = hostile_row(users_table)

    result = run("users", "get", row["user_id"])

    assert result.exit_code == 0, result.output
    assert_shown_as_text(result.output)


def test_users_find_prints_a_hostile_name_as_text(users_table: UsersTable) -> None:
    row = hostile_row(users_table)

    result = run("users", "find", "--email", row["email"])

    assert result.exit_code == 0, result.output
    assert_shown_as_text(result.output)


@pytest.mark.parametrize("columns", ["400", "60"])  # a table, and lines when it does not fit
def test_users_list_prints_a_hostile_name_as_text(users_table: UsersTable, columns: str) -> None:
    hostile_row(users_table)

    result = CliRunner().invoke(main, ["users", "list"], env={"COLUMNS": columns})

    assert result.exit_code == 0, result.output
    assert not CONTROL.search(result.output)
    assert "\\x1b]8;;http://evil.example" in result.output


def test_json_keeps_the_name_exactly(users_table: UsersTable) -> None:
    row = hostile_row(users_table)

    result = run("users", "get", row["user_id"], "--json")

    assert not CONTROL.search(result.output)  # JSON escapes them itself
    assert json.loads(result.output)["name"] == HOSTILE


def test_messages_quoting_user_input_print_it_as_text(users_table: UsersTable) -> None:
    not_found = run("users", "get", f"{COLOUR}{RTL}")
    no_email = run("users", "find", "--email", f"{HYPERLINK}@example.com")

    for result in (not_found, no_email):
        assert result.exit_code == 1
        assert not CONTROL.search(result.output), repr(result.output)
    assert "\\x1b[31mred" in not_found.output
    assert "\\x1b]8;;http://evil.example" in no_email.output


def test_an_error_line_prints_user_text_as_text() -> None:
    # Any library error may quote a value it was given: its one line is shown as text.
    @click.command()
    @friendly_errors
    def fails() -> None:
        raise LivekartUsersError(f"no user named {FAKE_ROW} {COLOUR} [bold]x[/bold]")

    result = CliRunner().invoke(fails, [])

    assert result.exit_code == 1
    assert not CONTROL.search(result.output), repr(result.output)
    assert result.output.count("\n") == 1 and "Eve\\n|" in result.output
    assert "[bold]x[/bold]" in result.output  # markup in the message is text too


def test_log_lines_print_a_forged_user_id_as_text() -> None:
    invocation = Invocation(
        time=datetime(2026, 1, 1, tzinfo=UTC),
        trigger_source=f"PostConfirmation{COLOUR}",
        outcome="created",
        user_id=FAKE_ROW,
    )
    for as_table in (True, False):
        console = Console(width=300, file=io.StringIO(), force_terminal=False)
        if as_table:
            console.print(render.logs_table([invocation], None))
        else:
            render.print_log_invocation(console, invocation, as_json=False)
        output = console.file.getvalue()  # type: ignore[attr-defined]

        assert not CONTROL.search(output), repr(output)
        assert "Eve\\n|" in output and "\\x1b[31m" in output


# --- what the trigger writes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Ana María", "Ana María"),
        (HYPERLINK, "]8;;http://evil.example\\CLICK]8;;\\"),
        ("Eve\r\n\tadmin\u2028x", "Eve admin x"),
        ("\u202eexe.txt", "exe.txt"),
        ("\u2066Mallory\u2069 \x1b[31m", "Mallory [31m"),
        ("\n\t\x00", None),
        ("\u05e9\u05dc\u05d5\u05dd \u200f", "\u05e9\u05dc\u05d5\u05dd \u200f"),  # a mark stays
    ],
)
def test_names_are_stored_without_controls(given: str, stored: str | None) -> None:
    assert schema.clean_name(given) == stored
    assert schema.identity({"name": given}, "u")["name"] == stored


def test_the_trigger_stores_a_hostile_name_cleaned(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    event = load_event("post-confirmation-signup-customer")
    event["request"]["userAttributes"]["name"] = HOSTILE
    sub = event["request"]["userAttributes"]["sub"]

    assert triggers.handler(event, None) is event  # the sign-up goes on

    name = users_table.get(sub)["name"]  # type: ignore[index]
    assert not CONTROL.search(name) and "evil.exe" in name and "CLICK" in name
    schema.validate(users_table.get(sub))  # type: ignore[arg-type]


def test_a_forged_sub_is_not_logged_as_given(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    event = load_event("post-confirmation-signup-customer")
    event["request"]["userAttributes"]["sub"] = "victim@example.com"

    triggers.handler(event, None)

    [line] = trigger_output.logs()
    assert line["user_id"] == "not-a-uuid"
    assert "victim" not in trigger_output.text()


# --- on a running stack ------------------------------------------------------------------


@pytest.mark.slow
def test_on_the_stack_list_and_find_print_no_control_character(stack_env: LocalStack) -> None:
    email = f"eve-{uuid.uuid4().hex[:8]}@example.com"
    user = DemoUser(email, "customer", name=HOSTILE[:200])
    assert sign_up(aws.client("cognito-idp"), str(stack_env.status().client_id), user)

    listed = run("users", "list")
    found = run("users", "find", "--email", email)

    for result in (listed, found):
        assert result.exit_code == 0, result.output
        assert not CONTROL.search(result.output), repr(result.output)
    assert "evil.exe" in found.output and "CLICK" in found.output


# --- email folding -----------------------------------------------------------------------


def test_email_folds_ascii_letters_only() -> None:
    assert schema.fold_email("  Kate.O'Neil@Example.COM ") == "kate.o'neil@example.com"
    assert schema.fold_email("\u212aate@example.com") == "\u212aate@example.com"  # Kelvin sign
    assert schema.fold_email("\u0130nci@example.com") == "\u0130nci@example.com"
    assert "\u212aATE@example.com".lower() == "kate@example.com"  # what str.lower() did


def test_two_addresses_that_lower_alike_do_not_find_each_other(users_table: UsersTable) -> None:
    def add(email: str) -> str:
        sub = str(uuid.uuid4())
        attributes = {"sub": sub, "email": email, "email_verified": "true"}
        assert users_table.create_if_absent(schema.new_record(attributes, sub, timestamp=T0))
        return sub

    kate, kelvin = add("Kate@example.com"), add("\u212aate@example.com")

    assert [r["user_id"] for r in users_table.find_by_email("KATE@example.com")] == [kate]
    assert [r["user_id"] for r in users_table.find_by_email("\u212aate@example.com")] == [kelvin]
    assert users_table.get(kelvin)["email"] == "\u212aate@example.com"  # type: ignore[index]
