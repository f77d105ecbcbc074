"""Starting, finding and stopping the local stack's background processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from livekart_users.exceptions import LocalStackError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: a port in TIME_WAIT after a stop is free to listen on again.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests, which run beside a demo stack)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def is_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: reap it if it is our child.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def start(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `command` in its own session (so `stop` ends it and its children); its pid."""
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise LocalStackError(f"cannot start {name}: {command[0]!r} is not installed")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    return process.pid


def wait_until(
    name: str,
    ready: Callable[[], bool],
    *,
    pid: int,
    log: Path,
    timeout: float = 60.0,
) -> None:
    """Wait for `ready()`; fail with the end of the log when the process dies or time is up."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if ready():
            return
        if not is_alive(pid):
            raise LocalStackError(f"{name} exited while starting; its log:\n{_tail(log)}")
        time.sleep(0.1)
    stop(pid)
    raise LocalStackError(f"{name} was not ready after {timeout:.0f} s; its log:\n{_tail(log)}")


def stop(pid: int | None, timeout: float = 10.0) -> bool:
    """Stop the process group led by `pid`; True when something was stopped."""
    if not is_alive(pid):
        return False
    assert pid is not None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if not is_alive(pid):
                return True
            time.sleep(0.05)
    return not is_alive(pid)


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
