"""The stack's folder and files: the user's own, private, and never reached through a link.

cognito-local keeps every user's password in plain text and their refresh tokens in its pool
files; the backups copy them and the logs carry email addresses. So, on POSIX:
- the folder and every folder in it is 0700, every file 0600, whatever the umask: made with
  those modes and chmod-ed after (a umask only takes bits away), and the stack's processes
  run with umask 077 so that what the emulators write is private too;
- an existing folder is used only when it belongs to this user and no one else may write in
  it: another user could otherwise plant a `state.json` naming a process for `down` to stop,
  or a link for `up` to write through;
- a file is opened with O_NOFOLLOW: `state.json` (or a log) that is a symbolic link is
  refused, never followed, and a file read back must be this user's and not writable by others.
On Windows a new folder inherits the ACL of the user's profile folder (private to them by
default); the POSIX modes and owners checked here do not apply there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path
from typing import IO, Any

from livekart_users.exceptions import LocalStackError

FOLDER_MODE = 0o700
FILE_MODE = 0o600
CHILD_UMASK = 0o077
POSIX = sys.platform != "win32"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _me() -> int:
    return os.getuid()


def make_folder(path: Path) -> None:
    """Create `path` (and missing parents, as the OS makes them) with mode 0700, or make an
    existing one of ours 0700."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=FOLDER_MODE)
    if POSIX and not path.is_symlink():
        os.chmod(path, FOLDER_MODE)


def check_folder(path: Path) -> None:
    """Refuse, in one line, a folder that is another user's or that others may write in."""
    if not POSIX:
        return
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there yet: making it says what is wrong
    if info.st_uid != _me():
        raise LocalStackError(
            f"{path} belongs to another user (uid {info.st_uid}): refusing to use it; "
            "give --dir a folder of your own"
        )
    if info.st_mode & 0o022:
        raise LocalStackError(
            f"{path} can be written by other users (mode {stat.filemode(info.st_mode)}): "
            f"refusing to use it; run `chmod 700 {path}` or give --dir another folder"
        )


def tighten(path: Path) -> None:
    """Make every folder under `path` 0700 and every file 0600 (a stack made before they
    were private); symbolic links are left as they are, never followed."""
    if not POSIX:
        return
    for root, folders, files in os.walk(path):
        for name in folders:
            _chmod_own(Path(root) / name, FOLDER_MODE)
        for name in files:
            _chmod_own(Path(root) / name, FILE_MODE)


def _chmod_own(path: Path, mode: int) -> None:
    with contextlib.suppress(OSError):
        info = path.lstat()
        if not stat.S_ISLNK(info.st_mode) and info.st_uid == _me():
            os.chmod(path, mode)


def _open(path: Path, flags: int) -> int:
    if not _NOFOLLOW and path.is_symlink():  # Windows: no O_NOFOLLOW
        raise LocalStackError(_link(path))
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, FILE_MODE)
    except OSError as exc:
        # ELOOP on Linux; FreeBSD and macOS say EMLINK for O_NOFOLLOW on a link.
        if exc.errno in (errno.ELOOP, errno.EMLINK) and path.is_symlink():
            raise LocalStackError(_link(path)) from None
        raise
    return fd


def _link(path: Path) -> str:
    return (
        f"{path} is a symbolic link: the stack never follows one (it could point anywhere); "
        "remove it and run the command again"
    )


def open_file(path: Path, mode: str) -> IO[Any]:
    """`open(path, mode)` for writing ("w", "wb", "a", "ab"): created 0600, made 0600 if it
    existed, never through a symbolic link."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    fd = _open(path, flags)
    try:
        if POSIX:
            os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode)
    except BaseException:
        os.close(fd)
        raise


def write_text(path: Path, text: str) -> None:
    with open_file(path, "w") as out:
        out.write(text)


def read_text(path: Path) -> str:
    """The file's text, when it is a file of this user's that others cannot write to."""
    fd = _open(path, os.O_RDONLY)
    with os.fdopen(fd, "r", encoding="utf-8") as file:
        if POSIX:
            info = os.fstat(fd)
            if info.st_uid != _me() or info.st_mode & 0o022:
                raise LocalStackError(
                    f"{path} belongs to another user or others can write to it: refusing to "
                    "read it; remove it (or the folder) and run the command again"
                )
        return file.read()
