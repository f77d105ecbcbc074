"""The error contract: every failure is one line on stderr and the README's exit status; with
--json, stdout holds one JSON object saying what failed; no traceback on any input."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from livekart_users.cli import main

ERROR_KEYS = {"command", "status", "outcome", "error", "exit_code"}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def readme_exit_codes() -> dict[int, str]:
    """The README's table of exit statuses: the contract these tests hold the CLI to."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Exit status", 1)[1].split("\n#", 1)[0]
    return {int(m[1]): m[2] for m in re.finditer(r"^\| \*\*(\d+)\*\* \| (.+?) \|$", section, re.M)}


def test_the_readme_documents_each_exit_status_the_cli_uses() -> None:
    assert set(readme_exit_codes()) == {0, 1, 2}


def assert_one_line(result: Result, status: int) -> str:
    assert result.exit_code == status, result.output
    assert status in readme_exit_codes()
    assert "Traceback" not in result.output
    (line,) = [ln for ln in result.stderr.splitlines() if ln.startswith(("Error:", "error:"))]
    return line


# --- unknown commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "nearest"),
    [(["user", "list"], "users"), (["users", "lst"], "list"), (["local", "dwn"], "down")],
)
def test_an_unknown_command_suggests_the_nearest(typed: list[str], nearest: str) -> None:
    line = assert_one_line(run(*typed), 2)
    wrong = typed[0] if typed[0] == "user" else typed[1]
    assert line == f"Error: no such command {wrong!r}: did you mean '{nearest}'?"


def test_an_unknown_command_with_nothing_near_lists_them() -> None:
    line = assert_one_line(run("xyzzy"), 2)
    assert "one of attach, deploy" in line and "users" in line


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["get", "set-role", "suspend", "activate", "delete"])
def test_an_empty_user_id_is_one_line_before_any_call(command: str) -> None:
    extra = ["customer"] if command == "set-role" else []
    result = run("users", command, "", *extra, "--table", "t", "--region", "us-east-1")
    line = assert_one_line(result, 2)
    assert (
        line == "Error: Invalid value for 'USER_ID': is empty: give the user's id (the Cognito sub)"
    )


@pytest.mark.parametrize("command", ["down", "status", "env", "demo"])
def test_a_file_given_as_the_stack_folder_is_refused_by_every_local_command(
    tmp_path: Path, command: str
) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    line = assert_one_line(run("local", command, "--dir", str(target)), 1)
    assert line == f"error: {target} is a file, not a folder: give --dir a folder (made if missing)"
    assert target.read_text() == "mine"


def test_a_file_given_as_local_dir_elsewhere_is_refused_too(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    line = assert_one_line(run("users", "list", "--local-dir", str(target)), 1)
    assert "is a file, not a folder" in line


def test_users_delete_without_a_pool_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LIVEKART_USER_POOL_ID", "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)
    line = assert_one_line(run("users", "delete", "some-sub", "--yes"), 2)
    assert "--user-pool-id is needed (or LIVEKART_USER_POOL_ID)" in line


# --- --json: one object on stdout, whatever failed -------------------------------------------


@pytest.mark.parametrize(
    ("args", "status", "command", "error"),
    [
        (["users", "get", "", "--json"], 2, "users get", "Invalid value for 'USER_ID'"),
        (
            ["deploy", "--user-pool-id", "us-east-1_AbCdEfGhI", "--memory", "64", "--json"],
            2,
            "deploy",
            "Invalid value for '--memory'",
        ),
        (["logs", "--function-name", "f", "--since", "soon", "--json"], 1, "logs", "--since"),
        (["local", "status", "--dir", "{file}", "--json"], 1, "local status", "is a file"),
    ],
)
def test_a_failure_with_json_is_one_json_object_on_stdout(
    tmp_path: Path, args: list[str], status: int, command: str, error: str
) -> None:
    target = tmp_path / "a-file"
    target.write_text("")
    result = run(*[a.replace("{file}", str(target)) for a in args])
    assert result.exit_code == status, result.output
    found = json.loads(result.stdout)
    assert set(found) == ERROR_KEYS
    assert (found["status"], found["outcome"], found["exit_code"]) == ("error", "failed", status)
    assert found["command"] == command
    assert error in found["error"]


def test_deploy_json_without_credentials_says_failed_on_stdout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in [v for v in os.environ if v.startswith("AWS_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = run("deploy", "--user-pool-id", "us-east-1_AbCdEfGhI", "--dry-run", "--json")
    assert result.exit_code == 1
    found = json.loads(result.stdout)
    assert found == {
        "command": "deploy",
        "status": "error",
        "outcome": "failed",
        "error": "no AWS credentials found: configure a profile or set AWS_PROFILE",
        "exit_code": 1,
    }


def test_an_empty_email_is_one_line_before_any_call() -> None:
    line = assert_one_line(run("users", "find", "--email", " ", "--table", "t"), 2)
    assert line == "Error: Invalid value for '--email': is empty: give the address"


def test_another_emulators_endpoints_are_not_taken_for_a_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # moto's server or LocalStack, say: the table defaults as against AWS, and the error is
    # the endpoint's, not "the local stack does not run there".
    monkeypatch.chdir(tmp_path)
    for variable in ("USERS_TABLE", "LIVEKART_LOCAL_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    line = assert_one_line(run("users", "get", "some-sub"), 1)
    assert line.startswith("error: cannot connect to http://127.0.0.1:9")


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback_before_or_after_the_command(where: str) -> None:
    from livekart_users.logs import InvalidSince

    args = ["logs", "--function-name", "f", "--since", "soon"]
    result = run(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert isinstance(result.exception, InvalidSince)
    assert not isinstance(run(*args).exception, InvalidSince)  # a clean exit(1) without it


def test_every_command_takes_debug() -> None:
    import click

    from tests.test_cli import all_commands, subcommand

    for path in all_commands(main):
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = subcommand(command, name)
        if not isinstance(command, click.Group):
            assert any("--debug" in p.opts for p in command.params), " ".join(path)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["users", "list", "--limit", "1" + "0" * 20], "--limit"),
        (["logs", "--function-name", "f", "--limit", "1" + "0" * 20], "--limit"),
        (["logs", "--function-name", "f", "--follow", "--interval", "inf"], "--interval"),
    ],
)
def test_absurd_numbers_are_one_line(args: list[str], option: str) -> None:
    line = assert_one_line(run(*args), 2)
    assert line.startswith(f"Error: Invalid value for '{option}'")
