"""One vocabulary: after `local up --dir X` and `eval "$(livekart-users local env --dir X)"`,
every command finds the stack, its pool and its table with no other option; and each shared
option has one name, one variable and one help text in every command."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from livekart_users.cli import main
from livekart_users.local.stack import LocalStack
from tests.test_changes import World
from tests.test_cli import all_commands, subcommand

# What only the shell's environment may supply in these tests: nothing from the test run.
OURS = ("AWS_", "LIVEKART_", "USERS_", "USER_POOL_ID")


def loaded(stack: LocalStack) -> dict[str, str]:
    """What `eval "$(livekart-users local env --dir X)"` sets in a POSIX shell."""
    printed = CliRunner().invoke(
        main, ["local", "env", "--dir", str(stack.dir), "--shell", "posix"]
    )
    assert printed.exit_code == 0, printed.output
    found = {}
    for line in printed.stdout.splitlines():
        export, assignment = shlex.split(line)
        assert export == "export"
        name, value = assignment.split("=", 1)
        found[name] = value
    return found


@pytest.fixture
def shell(
    stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """A shell that ran only `eval "$(livekart-users local env --dir X)"`, in another folder."""
    variables = loaded(stack_env)
    for name in [n for n in os.environ if n.startswith(OURS)]:
        monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .local-stack here: the variables must do it
    yield variables


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "120"})


@pytest.mark.slow
def test_local_env_exports_the_stacks_folder_and_pool(
    stack_env: LocalStack, shell: dict[str, str]
) -> None:
    assert shell["LIVEKART_LOCAL_DIR"] == str(stack_env.dir)
    assert shell["LIVEKART_USER_POOL_ID"] == stack_env.status().user_pool_id
    assert (
        shell["AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"] == stack_env.endpoints()["cognito-idp"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("only_endpoints", [False, True], ids=["as-exported", "endpoints-only"])
def test_every_command_works_after_local_env_with_no_other_option(
    stack_env: LocalStack,
    shell: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    only_endpoints: bool,
) -> None:
    world = World(stack_env, monkeypatch)
    monkeypatch.delenv("USER_POOL_ID")  # World's, for the change handler: not ours to read
    sub, _ = world.new_user()
    if only_endpoints:
        # The stack's pool and table then come from the stack itself (LIVEKART_LOCAL_DIR).
        monkeypatch.delenv("LIVEKART_USER_POOL_ID")
        monkeypatch.delenv("USERS_TABLE")

    listed = run("users", "list")
    reconciled = run("reconcile", "--json")
    deleted = run("users", "delete", sub, "--yes")
    logs = run("logs")
    doctor = run("doctor", "--json")

    for result in (listed, reconciled, deleted, logs, doctor):
        assert result.exit_code == 0, result.output
    assert sub in listed.output
    assert json.loads(reconciled.stdout)["user_pool_id"] == stack_env.status().user_pool_id
    assert deleted.output.startswith(f"user {sub}: deleted from Cognito; row:")
    assert " since " in logs.output and "local stack" in logs.output
    assert json.loads(doctor.stdout)["target"]["local"] is True


@pytest.mark.slow
def test_local_dir_alone_names_the_stack(
    stack_env: LocalStack, shell: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(OURS)]:
        monkeypatch.delenv(name)
    listed = run("users", "list", "--local-dir", str(stack_env.dir))
    reconciled = run("reconcile", "--local-dir", str(stack_env.dir), "--json")
    assert listed.exit_code == reconciled.exit_code == 0, listed.output + reconciled.output


# --- one name, one variable, one help text ---------------------------------------------------

SHARED = {
    "--user-pool-id": "LIVEKART_USER_POOL_ID",
    "--table": "USERS_TABLE",
    "--region": None,
    "--function-name": "LIVEKART_FUNCTION",
    "--local-dir": None,
    "--extra-fields": "USERS_EXTRA_FIELDS",
    "--erasure-policy": "USERS_ERASURE_POLICY",
}


def options_by_name() -> dict[str, list[tuple[str, click.Option]]]:
    found: dict[str, list[tuple[str, click.Option]]] = {}
    for path in all_commands(main):
        command: click.Command = main
        for name in path:
            assert isinstance(command, click.Group)
            command = subcommand(command, name)
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    found.setdefault(flag, []).append((" ".join(path), param))
    return found


def test_each_shared_option_has_one_variable_and_one_help_text_everywhere() -> None:
    found = options_by_name()
    for flag, variable in SHARED.items():
        uses = found[flag]
        assert len(uses) >= 2, flag
        assert {p.envvar for _, p in uses} == {variable}, flag
        # The same text, but for the clause saying the local stack supplies it (not where a
        # command works against AWS only).
        texts = {(p.help or "").replace("; against the local stack, its own", "") for _, p in uses}
        assert len(texts) == 1, (flag, texts)


def test_the_erasure_policy_choices_are_the_librarys() -> None:
    from livekart_users import erasure

    for _, option in options_by_name()["--erasure-policy"]:
        assert isinstance(option.type, click.Choice)
        assert list(option.type.choices) == [str(p) for p in erasure.Policy]


def test_no_help_text_promises_a_region_default_of_its_own() -> None:
    for where, option in options_by_name()["--region"]:
        assert "AWS_REGION, AWS_DEFAULT_REGION, the profile's" in (option.help or ""), where
