"""Starting, recognising and stopping the local stack's background processes, on any OS.

A pid alone proves nothing: after a reboot, or hours later, the same number belongs to some
other program. So `start` records a `Started` (pid, start time and command line, as the OS
reports them), and a recorded process counts as ours only while all three still match.
`stop` ends that process and every process below it, and nothing else. psutil does the
platform work (no `os.kill(pid, 0)`, which on Windows terminates the process).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from livekart_users.exceptions import LocalStackError
from livekart_users.local import private

# Windows: a process group of its own (a Ctrl+C in the console that ran `up` does not reach
# it) and no console window. Numeric so that the branch can be tested on any OS.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
# Winsock's SO_EXCLUSIVEADDRUSE is (int)(~SO_REUSEADDR) = -5; socket only defines it on Windows.
SO_EXCLUSIVEADDRUSE = -5
# Start times as the OS reports them can move by up to a second between two readers (Linux
# derives them from the boot time, which follows clock adjustments); a reused pid would also
# need the very same command line.
_START_TIME_SLACK = 1.0


@dataclass(frozen=True)
class Started:
    """What `start` saw of a process it started: enough to recognise it later."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline)}

    @classmethod
    def from_json(cls, value: Any) -> Started | None:
        """The record saved by `to_json`; None for anything else (a bare pid proves nothing)."""
        try:
            return cls(int(value["pid"]), float(value["create_time"]), tuple(value["cmdline"]))
        except (KeyError, TypeError, ValueError):
            return None


def detach_options(platform: str = sys.platform) -> dict[str, Any]:
    """Popen options that let a background process outlive the command that started it."""
    if platform == "win32":
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    # Its own session: the terminal's Ctrl+C and hang-up reach the shell's jobs, not it.
    return {"start_new_session": True}


# What a stack process may inherit from the caller: what finds programs and files, the
# locale, temporary folders, Java, and the stack's own LIVEKART_* settings. Nothing else: the
# caller's AWS_* credentials, profile and session token (and any other secret in the
# environment) never reach an emulator (DynamoDB Local, cognito-local and its 200-odd npm
# packages), the proxy or the endpoint; those that call AWS APIs get the stack's dummy
# credentials explicitly (LocalStack.environment).
INHERITED = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
        "JAVA_HOME", "PYTHONPATH", "VIRTUAL_ENV",
        # Windows needs these to run programs at all.
        "SYSTEMROOT", "SYSTEMDRIVE", "WINDIR", "COMSPEC", "PATHEXT", "USERPROFILE",
        "APPDATA", "LOCALAPPDATA", "PROGRAMDATA", "PROGRAMFILES", "NUMBER_OF_PROCESSORS",
    }
)  # fmt: skip
INHERITED_PREFIXES = ("LC_", "LIVEKART_")
# No AWS configuration file, no instance metadata, and the stack's dummy credentials and a
# region: a stack process knows only what it is given, and an AWS SDK inside one (DynamoDB
# Local carries the one for Java) finds them first instead of looking further down its
# default chain. The stack passes its own region to what calls AWS APIs.
ISOLATED = {
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def child_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a stack process starts from (see INHERITED)."""
    source = os.environ if environ is None else environ
    kept = {
        key: value
        for key, value in source.items()
        if key.upper() in INHERITED or key.upper().startswith(INHERITED_PREFIXES)
    }
    return {**kept, **ISOLATED}


def _private_options() -> dict[str, Any]:
    """What the emulators write (passwords, tokens, users' data) is the user's alone."""
    return {"umask": private.CHILD_UMASK} if private.POSIX else {}


def start(
    name: str,
    command: Sequence[str],
    *,
    cwd: Path,
    log: Path,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Start `command` in the background, its output appended to `log`; what identifies it."""
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise LocalStackError(f"cannot start {name}: {command[0]!r} is not installed")
    log.parent.mkdir(parents=True, exist_ok=True)
    with private.open_file(log, "ab") as out:
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**child_environment(), **(env or {})},
            **detach_options(),
            **_private_options(),
        )
    return _identify(process.pid, tuple(command))


def _identify(pid: int, command: tuple[str, ...]) -> Started:
    """The process as the OS reports it. Its command line can read empty for a moment
    right after it starts (Linux fills /proc/PID/cmdline during exec): then ask again."""
    ends = time.monotonic() + 2.0
    try:
        seen = psutil.Process(pid)
        while True:
            cmdline = tuple(seen.cmdline())
            if cmdline or time.monotonic() > ends:
                return Started(pid, seen.create_time(), cmdline or command)
            time.sleep(0.01)
    except psutil.Error:
        # Gone already: `wait_until` reports it with its log.
        return Started(pid, 0.0, command)


def find(started: Started | None) -> psutil.Process | None:
    """The running process `started` describes, or None (gone, or its pid is another's now)."""
    if started is None:
        return None
    try:
        process = psutil.Process(started.pid)
        with process.oneshot():
            if abs(process.create_time() - started.create_time) > _START_TIME_SLACK:
                return None
            if process.status() == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(psutil.Error):
                    process.wait(timeout=0)  # reap it when it is our child
                return None
            if tuple(process.cmdline()) != started.cmdline:
                return None
            if not _is_mine(process):
                return None  # never stop another user's process, whatever state.json says
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None  # not ours to manage: we start our processes as ourselves
    return process


def _is_mine(process: psutil.Process) -> bool:
    """The process runs as this user (its real uid; on Windows, its user name)."""
    if private.POSIX:
        return bool(process.uids().real == os.getuid())
    return bool(process.username() == psutil.Process().username())


def is_running(started: Started | None) -> bool:
    return find(started) is not None


def wait_until(
    name: str,
    ready: Callable[[], bool],
    *,
    process: Started,
    log: Path,
    timeout: float = 60.0,
) -> None:
    """Wait for `ready()`; fail with the end of the log when the process dies or time is up."""
    ends = time.monotonic() + timeout
    while time.monotonic() < ends:
        if ready():
            return
        if not is_running(process):
            raise LocalStackError(f"{name} exited while starting; its log:\n{_tail(log)}")
        time.sleep(0.1)
    stop(process)
    raise LocalStackError(f"{name} was not ready after {timeout:.0f} s; its log:\n{_tail(log)}")


def stop(started: Started | None, timeout: float = 10.0) -> bool:
    """Stop the process `started` describes and all below it; True when something was stopped.

    Politely first (SIGTERM; TerminateProcess on Windows, which has nothing gentler for a
    console-less process), then by force for whatever is left after `timeout`.
    """
    process = find(started)
    if process is None:
        return False
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        family = [process]
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.terminate()
    alive = _wait_ended(family, timeout)
    for member in alive:
        with contextlib.suppress(psutil.Error):
            member.kill()
    _wait_ended(alive, timeout)
    return True


# How often `stop` looks whether the processes have ended (they usually take 10-400 ms).
_POLL_SECONDS = 0.02


def _wait_ended(family: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited, at most `timeout` s; those still running.

    Exited means gone or a zombie. A stack started by an earlier `up` is not our child: its
    exited processes stay zombies until their parent (init, or a container's subreaper)
    reaps them, which psutil.wait_procs waits for, about 2 s a service here (8 s for a
    `local down`). Our own children are reaped at once.
    """
    ends = time.monotonic() + timeout
    alive = list(family)
    while alive:
        alive = [p for p in alive if not _exited(p)]
        if not alive or time.monotonic() >= ends:
            break
        time.sleep(_POLL_SECONDS)
    return alive


def _exited(process: psutil.Process) -> bool:
    try:
        if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # cannot tell: keep waiting (and kill it at the timeout)
    with contextlib.suppress(psutil.Error):
        process.wait(timeout=0)  # reap it when it is our child
    return True


# --- ports ---------------------------------------------------------------------------------


def bind_options(platform: str = sys.platform) -> list[tuple[int, int, int]]:
    """Socket options for a bind that fails exactly when a server could not listen there."""
    if platform == "win32":
        # On Windows SO_REUSEADDR lets a second socket bind a port in use (the check would
        # lie); SO_EXCLUSIVEADDRUSE refuses any port another socket holds.
        return [(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)]
    # POSIX: as servers do, so a port in TIME_WAIT after a stop counts as free. (On macOS it
    # also allows a bind beside a wildcard listener: `port_is_free` connects to catch that.)
    return [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nothing listens on `port` and a server could bind it."""
    if is_listening(port, host):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        for level, option, value in bind_options():
            sock.setsockopt(level, option, value)
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


def _tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
