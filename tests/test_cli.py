"""The command line: help everywhere, clear one-line errors, and the demo flow end to end."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from livekart_users.cli import main
from livekart_users.local import processes


def subcommand(group: click.Group, name: str) -> click.Command:
    """Through `get_command`: the top-level group imports its commands when asked."""
    command = group.get_command(click.Context(group), name)
    assert command is not None, name
    return command


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name in group.list_commands(click.Context(group)):
        command = subcommand(group, name)
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *all_commands(main)], ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = subcommand(command, name)
    assert command.help, f"{' '.join(path)} has no help text"


def test_version_is_the_installed_distributions() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"livekart-users, version {version('livekart-users')}"


def ports_args() -> list[str]:
    return [
        "--dynamodb-port",
        str(processes.free_port()),
        "--cognito-port",
        str(processes.free_port()),
        "--lambda-port",
        str(processes.free_port()),
    ]


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        args = ["local", "up", "--dir", str(tmp_path), *ports_args()]
        args[args.index("--cognito-port") + 1] = str(port)
        result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert f"port {port} (for cognito) is already in use" in result.output
    assert "--cognito-port or LIVEKART_LOCAL_COGNITO_PORT" in result.output
    assert "Traceback" not in result.output
    assert not any(processes.is_running(p) for p in _pids(tmp_path))


def test_invalid_extra_fields_are_refused_before_anything_starts(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["local", "up", "--dir", str(tmp_path), "--extra-fields", '{"cart": 1}']
    )
    assert result.exit_code == 2
    # The option is named, not the variable it did not come from.
    assert "Invalid value for '--extra-fields': 'cart' is a field of the record" in result.output
    assert "USERS_EXTRA_FIELDS" not in result.output.split("Error:")[-1]
    assert not (tmp_path / "state.json").exists()


def test_bad_extra_fields_from_the_environment_name_the_variable(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["local", "up", "--dir", str(tmp_path)], env={"USERS_EXTRA_FIELDS": "{bad"}
    )
    assert result.exit_code == 2
    assert "'--extra-fields': USERS_EXTRA_FIELDS not valid JSON" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "state.json").exists()


def test_status_of_a_stack_that_is_not_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["local", "status", "--dir", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["all_running"] is False


def test_demo_without_a_stack_says_how_to_start_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["local", "demo", "--no-up", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "livekart-users local up" in result.output
    assert "Traceback" not in result.output


def _pids(directory: Path) -> list[processes.Started | None]:
    try:
        state = json.loads((directory / "state.json").read_text())
    except OSError:
        return []
    return [processes.Started.from_json(p) for p in (state.get("processes") or {}).values()]


@pytest.mark.slow
def test_up_demo_down(tmp_path: Path) -> None:
    saved = dict(os.environ)
    runner = CliRunner()
    try:
        up = runner.invoke(main, ["local", "up", "--dir", str(tmp_path), *ports_args()])
        assert up.exit_code == 0, up.output
        assert "started: dynamodb, endpoint, cognito-local, cognito" in up.output
        pids = _pids(tmp_path)
        assert len(pids) == 4 and all(processes.is_running(p) for p in pids)
        assert runner.invoke(main, ["local", "status", "--dir", str(tmp_path)]).exit_code == 0

        demo = runner.invoke(main, ["local", "demo", "--dir", str(tmp_path)])
        assert demo.exit_code == 0, demo.output
        for email in ("testuser@example.com", "asha@spices.example", "mallory@example.com"):
            assert email in demo.output
        assert "vendor" in demo.output
        assert "find_by_email('TESTUSER@EXAMPLE.COM', unverified=True)" in demo.output
        records = [
            json.loads(line) for line in (tmp_path / "invocations.jsonl").read_text().splitlines()
        ]
        outcomes = [(r["function"], r["outcome"]) for r in records]
        trigger, changes = "livekart-post-confirmation-trigger", "livekart-users-changes"
        # Three sign-ups and a sign-in; then a user who signs up, has their email changed by
        # an administrator and is deleted: the change function refreshes, then anonymizes.
        assert outcomes == [
            *[(trigger, "created")] * 3,
            (trigger, "refreshed"),
            (trigger, "created"),
            (changes, "refreshed"),
            (changes, "anonymized"),
        ]
        # It ends with what `logs` shows: those invocations, by user id only.
        assert "7 invocations since" in demo.output.split("rows the trigger wrote")[-1]
        assert all(r["user_id"] in demo.output for r in records)

        again = runner.invoke(main, ["local", "demo", "--dir", str(tmp_path)])
        assert again.exit_code == 0, again.output
        assert "already signed up earlier" in again.output
        # Hints a pipx user can follow: no virtualenv paths, no make.
        for output in (up.output, demo.output):
            assert f"livekart-users local down --dir {tmp_path}" in output
            assert ".venv" not in output and "make " not in output
    finally:
        down = runner.invoke(main, ["local", "down", "--dir", str(tmp_path)])
        os.environ.clear()
        os.environ.update(saved)
    assert down.exit_code == 0
    assert not any(processes.is_running(p) for p in pids)
    status = runner.invoke(main, ["local", "status", "--dir", str(tmp_path)])
    assert status.exit_code == 1


def test_deploy_refuses_a_memory_size_lambda_does_not_accept() -> None:
    result = CliRunner().invoke(
        main, ["deploy", "--user-pool-id", "us-east-1_AbC123", "--memory", "64"]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--memory': 64 is not in the range 128<=x<=10240." in result.output
