"""The stack on a shared machine: private files, its own folder only, a clean environment.

One stack is started the way a careless caller would start it: umask 022 and real-looking
AWS credentials, profile and session token in the environment. Its folder, files and
processes are then read from the outside (modes from the file system, environments from the
OS through psutil).
"""

from __future__ import annotations

import os
import stat
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from livekart_users import aws
from livekart_users.exceptions import LocalStackError
from livekart_users.local import private, processes
from livekart_users.local.demo import DemoUser, sign_up
from livekart_users.local.stack import SERVICES, LocalStack, Settings
from tests.conftest import start_stack

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and owners")

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLESESSIONTOKEN"
CALLER = {
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_SESSION_TOKEN": TOKEN,
    "AWS_PROFILE": "production",
    "AWS_CONFIG_FILE": "/home/someone/.aws/config",
}


@dataclass
class Seen:
    directory: Path
    environments: dict[str, dict[str, str]]  # service (and its children) -> environment
    modes_running: dict[str, int]
    modes_stopped: dict[str, int]


def modes(directory: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(directory.lstat().st_mode)}
    for path in directory.rglob("*"):
        found[str(path.relative_to(directory))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.fixture(scope="module")
def seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    saved = dict(os.environ)
    umask = os.umask(0o022)
    os.environ.update(CALLER)
    try:
        stack = start_stack(tmp_path_factory.mktemp("shared") / "stack")
        try:
            email = f"private-{uuid.uuid4().hex[:8]}@example.com"
            client = aws.client("cognito-idp")
            assert sign_up(client, str(stack.status().client_id), DemoUser(email, "customer"))
            environments = {}
            state = stack._state()
            for service in SERVICES:
                process = processes.find(stack._process(state, service))
                assert process is not None, service
                for n, member in enumerate([process, *process.children(recursive=True)]):
                    environments[f"{service}#{n}"] = member.environ()
            running = modes(stack.dir)
        finally:
            stack.down()
        yield Seen(stack.dir, environments, running, modes(stack.dir))
    finally:
        os.umask(umask)
        os.environ.clear()
        os.environ.update(saved)


def test_no_stack_process_holds_the_callers_credentials(seen: Seen) -> None:
    assert len(seen.environments) >= len(SERVICES)
    for name, environment in seen.environments.items():
        values = "\n".join(environment.values())
        assert SECRET not in values and TOKEN not in values, name
        assert "AWS_PROFILE" not in environment and "AWS_SESSION_TOKEN" not in environment
        assert environment.get("AWS_CONFIG_FILE") == os.devnull, name
        assert environment.get("AWS_ACCESS_KEY_ID") == "local", name


def test_the_endpoint_and_proxy_get_the_stacks_dummy_credentials(seen: Seen) -> None:
    for service in ("endpoint", "cognito"):
        environment = seen.environments[f"{service}#0"]
        assert environment["AWS_ACCESS_KEY_ID"] == environment["AWS_SECRET_ACCESS_KEY"] == "local"
    for service in ("dynamodb", "cognito-local"):  # the same dummies, and no configuration
        environment = seen.environments[f"{service}#0"]
        assert environment["AWS_SECRET_ACCESS_KEY"] == "local"
        assert environment["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull


@pytest.mark.parametrize("when", ["running", "stopped"])
def test_the_folder_and_every_file_are_private_whatever_the_umask(seen: Seen, when: str) -> None:
    found = seen.modes_running if when == "running" else seen.modes_stopped
    # What holds the users' data, passwords and tokens is among them.
    assert {"state.json", "dynamodb", "cognito/.cognito/db", "dynamodb.log"} <= set(found)
    if when == "stopped":
        assert any(name.startswith("backups/cognito-db/") for name in found)
    for name, mode in found.items():
        path = seen.directory / name
        expected = private.FOLDER_MODE if path.is_dir() else private.FILE_MODE
        assert mode == expected, f"{name} is {oct(mode)}"


# --- a folder that is not the user's own -------------------------------------------------


def stack_in(directory: Path) -> LocalStack:
    ports = {"dynamodb_port": 1, "cognito_port": 2, "endpoint_port": 3}
    return LocalStack(Settings(directory=directory, **ports))


def test_a_folder_of_another_user_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "theirs"
    folder.mkdir(mode=0o700)
    monkeypatch.setattr(private, "_me", lambda: os.getuid() + 1)

    for act in (stack_in(folder).up, stack_in(folder).down):
        with pytest.raises(LocalStackError, match="belongs to another user") as refused:
            act()
        assert "\n" not in str(refused.value)
    assert list(folder.iterdir()) == []


def test_a_folder_others_can_write_to_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)

    with pytest.raises(LocalStackError, match=r"can be written by other users.*chmod 700"):
        stack_in(folder).up()
    assert list(folder.iterdir()) == []


def test_a_state_file_that_is_a_link_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "stack"
    private.make_folder(folder)
    stack = stack_in(folder)
    private.write_text(folder / ".livekart-local-stack", "{}")
    (folder / "state.json").symlink_to(victim)

    for act in (stack.down, stack.status, lambda: stack._save({"processes": {}})):
        with pytest.raises(LocalStackError, match="symbolic link"):
            act()
    assert victim.read_text() == "precious"


def test_a_marker_that_is_a_link_does_not_make_a_stack(tmp_path: Path) -> None:
    elsewhere = tmp_path / "marker"
    elsewhere.write_text("{}")
    folder = tmp_path / "stack"
    folder.mkdir()
    (folder / ".livekart-local-stack").symlink_to(elsewhere)

    assert not stack_in(folder).is_marked()


def test_a_state_file_of_another_user_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "stack"
    private.make_folder(folder)
    private.write_text(folder / ".livekart-local-stack", "{}")
    private.write_text(folder / "state.json", "{}")
    (folder / "state.json").chmod(0o666)

    with pytest.raises(LocalStackError, match="others can write to it"):
        stack_in(folder).status()


def test_files_are_made_0600_and_existing_ones_tightened(tmp_path: Path) -> None:
    umask = os.umask(0)
    try:
        private.write_text(tmp_path / "new", "x")
        loose = tmp_path / "loose"
        loose.write_text("x")
        loose.chmod(0o644)
        with private.open_file(loose, "a") as out:
            out.write("y")
    finally:
        os.umask(umask)

    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600 and loose.read_text() == "xy"


# --- processes ---------------------------------------------------------------------------


def test_down_never_stops_a_process_of_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = processes.start(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], cwd=tmp_path,
        log=tmp_path / "sleeper.log",
    )  # fmt: skip
    try:
        assert processes.is_running(started)
        monkeypatch.setattr(processes.os, "getuid", lambda: os.geteuid() + 1)

        assert processes.find(started) is None
        assert processes.stop(started) is False
        assert psutil.Process(started.pid).is_running()
    finally:
        monkeypatch.undo()
        processes.stop(started)


def test_a_child_inherits_only_what_finds_programs_and_the_stacks_settings() -> None:
    caller = {
        **CALLER,
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_ALL": "C.UTF-8",
        "LIVEKART_LOCAL_ALLOWED_ORIGINS": "http://localhost:3000",
        "GITHUB_TOKEN": "ghp_secret",
        "AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/token",
    }

    child = processes.child_environment(caller)

    assert child == {
        "PATH": "/usr/bin",
        "HOME": "/home/me",
        "LC_ALL": "C.UTF-8",
        "LIVEKART_LOCAL_ALLOWED_ORIGINS": "http://localhost:3000",
        **processes.ISOLATED,
    }
