"""Background processes, ports and shells on every OS: what can be run here runs for real; the
Windows branches are checked as the values they hand to the OS."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from livekart_users.cli import main
from livekart_users.local import processes, shells
from livekart_users.local.stack import MARKER, LocalStack, Settings

# A parent that starts a child and then waits, both asleep: a small process tree.
TREE = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def sleeper(tmp_path: Path, name: str = "sleeper") -> processes.Started:
    return processes.start(
        name,
        [sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=tmp_path,
        log=tmp_path / f"{name}.log",
    )


def test_a_started_process_is_recognised_by_pid_start_time_and_command_line(
    tmp_path: Path,
) -> None:
    started = sleeper(tmp_path)
    try:
        assert processes.is_running(started)
        assert processes.Started.from_json(json.loads(json.dumps(started.to_json()))) == started
        # The same pid with another start time or command line is someone else's now.
        later = processes.Started(started.pid, started.create_time + 3600, started.cmdline)
        other = processes.Started(started.pid, started.create_time, ("/bin/other",))
        assert not processes.is_running(later)
        assert not processes.is_running(other)
        assert not processes.stop(later) and not processes.stop(other)
        assert processes.is_running(started)
    finally:
        assert processes.stop(started)
    assert not processes.is_running(started)


def test_a_bare_pid_from_an_older_state_is_never_trusted() -> None:
    assert processes.Started.from_json(1) is None
    assert processes.Started.from_json({"pid": 1}) is None
    assert not processes.is_running(None)


def start_tree(tmp_path: Path) -> tuple[processes.Started, Callable[[], psutil.Process]]:
    """TREE started, and how to find its child once it has said its pid."""
    log = tmp_path / "tree.log"
    tree = processes.start("tree", [sys.executable, "-c", TREE], cwd=tmp_path, log=log)

    def child() -> psutil.Process:
        processes.wait_until("tree", lambda: bool(log.read_text().strip()), process=tree, log=log)
        return psutil.Process(int(log.read_text().split()[0]))

    return tree, child


def test_stop_ends_the_whole_tree_and_nothing_else(tmp_path: Path) -> None:
    tree, find_child = start_tree(tmp_path)
    bystander = sleeper(tmp_path, "bystander")
    try:
        child = find_child()
        assert child.is_running()
        assert processes.stop(tree)
        assert not processes.is_running(tree)
        with pytest.raises(psutil.NoSuchProcess):
            child.wait(timeout=5)
            child.status()
        assert processes.is_running(bystander)
    finally:
        processes.stop(bystander)
        processes.stop(tree)


def test_stop_returns_once_the_process_has_exited_though_no_one_reaps_it(tmp_path: Path) -> None:
    # A stack started by an earlier `up` is not our child: once it exits it stays a zombie
    # until its parent reaps it. Here the parent never does, while it lives.
    tree, find_child = start_tree(tmp_path)
    try:
        child = find_child()
        started = processes.Started(child.pid, child.create_time(), tuple(child.cmdline()))
        began = time.monotonic()

        assert processes.stop(started, timeout=30)

        # Waiting for the reaping would have taken the whole timeout, twice (terminate, kill).
        assert time.monotonic() - began < 15
        assert child.status() == psutil.STATUS_ZOMBIE
        assert not processes.is_running(started)
    finally:
        processes.stop(tree)


def test_down_with_a_recycled_pid_in_its_state_stops_nothing(tmp_path: Path) -> None:
    # GIVEN a stack whose state names a live process that is not the one `up` started
    bystander = sleeper(tmp_path, "bystander")
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / MARKER).write_text("{}")
    recycled = processes.Started(bystander.pid, bystander.create_time - 86400, bystander.cmdline)
    (stack_dir / "state.json").write_text(
        json.dumps({"processes": {"dynamodb": recycled.to_json(), "cognito": bystander.pid}})
    )
    stack = LocalStack(Settings(directory=stack_dir))
    try:
        # THEN status reports it stopped, and down leaves it alone
        assert stack.status().running["dynamodb"] is False
        assert stack.down().stopped == []
        assert processes.is_running(bystander)
    finally:
        processes.stop(bystander)


def test_a_process_that_dies_while_starting_is_reported_with_its_log(tmp_path: Path) -> None:
    from livekart_users.exceptions import LocalStackError

    dying = processes.start(
        "dying",
        [sys.executable, "-c", "print('no config'); raise SystemExit(3)"],
        cwd=tmp_path,
        log=tmp_path / "dying.log",
    )
    with pytest.raises(LocalStackError, match="dying exited while starting; its log:\nno config"):
        processes.wait_until("dying", lambda: False, process=dying, log=tmp_path / "dying.log")


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("win32", {"creationflags": 0x00000200 | 0x08000000}),
        ("linux", {"start_new_session": True}),
        ("darwin", {"start_new_session": True}),
    ],
)
def test_background_processes_are_detached_the_way_each_os_does_it(
    platform: str, expected: dict[str, object]
) -> None:
    assert processes.detach_options(platform) == expected


def test_the_port_check_uses_exclusive_binding_on_windows() -> None:
    # SO_REUSEADDR on Windows lets a bind succeed on a port another socket listens on.
    [(level, option, value)] = processes.bind_options("win32")
    assert (level, option, value) == (socket.SOL_SOCKET, -5, 1)  # SO_EXCLUSIVEADDRUSE
    if sys.platform == "win32":
        assert option == socket.SO_EXCLUSIVEADDRUSE  # type: ignore[attr-defined]
    [(_, posix_option, _)] = processes.bind_options("linux")
    assert posix_option == socket.SO_REUSEADDR


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_port_someone_listens_on_is_not_free(host: str) -> None:
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert not processes.port_is_free(port)
    assert processes.port_is_free(port)


def test_a_port_bound_without_listening_is_not_free() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        assert not processes.port_is_free(holder.getsockname()[1])


# --- shells ---------------------------------------------------------------------------------

VARIABLES = {"AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:8000", "ODD": "it's $HOME"}


def test_exports_for_posix_shells_survive_eval() -> None:
    lines = shells.exports(VARIABLES, "posix")
    assert lines[0] == "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000"
    script = "\n".join(lines) + '\nprintf %s "$ODD"'
    assert subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout == (
        "it's $HOME"
    )


def test_exports_for_powershell_cmd_and_fish() -> None:
    assert shells.exports(VARIABLES, "powershell") == [
        "$env:AWS_ENDPOINT_URL_DYNAMODB = 'http://127.0.0.1:8000'",
        "$env:ODD = 'it''s $HOME'",
    ]
    assert shells.exports(VARIABLES, "cmd") == [
        'set "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:8000"',
        'set "ODD=it\'s $HOME"',
    ]
    assert shells.exports(VARIABLES, "fish")[1] == "set -gx ODD 'it'\"'\"'s $HOME'"


@pytest.mark.parametrize(
    ("ancestors", "platform", "shell"),
    [
        (["python3.11", "livekart-users", "bash", "sshd"], "linux", "posix"),
        (["-zsh"], "darwin", "posix"),
        (["fish"], "linux", "fish"),
        (["python.exe", "livekart-users.exe", "pwsh.exe"], "win32", "powershell"),
        (["python.exe", "powershell.exe"], "win32", "powershell"),
        (["python.exe", "livekart-users.exe", "cmd.exe", "explorer.exe"], "win32", "cmd"),
        (["python.exe", "explorer.exe"], "win32", "powershell"),
        ([], "linux", "posix"),
    ],
)
def test_the_shell_is_the_nearest_known_ancestor(
    ancestors: list[str], platform: str, shell: str
) -> None:
    assert shells.from_process_names(ancestors, platform) == shell


def test_local_env_prints_the_chosen_shells_form(tmp_path: Path) -> None:
    runner = CliRunner()
    forms = (("posix", "export "), ("powershell", "$env:"), ("cmd", 'set "'), ("fish", "set -gx "))
    for shell, start in forms:
        result = runner.invoke(main, ["local", "env", "--dir", str(tmp_path), "--shell", shell])
        assert result.exit_code == 0
        lines = result.stdout.splitlines()
        assert lines and all(line.startswith(start) for line in lines)
        # What our own commands read to find the stack (its pool too, once it runs).
        assert any(line.startswith(f"{start}LIVEKART_LOCAL_DIR") for line in lines)
        assert "no local stack in" in result.stderr and "local up --dir" in result.stderr
        assert any("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER" in line for line in lines)
        # The SDK for JavaScript v3 reads AWS_REGION only; botocore AWS_DEFAULT_REGION.
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            assert any(line.startswith(f"{start}{name}") for line in lines), (shell, name)
