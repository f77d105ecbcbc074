"""cognito-local's data files: checked before every start, with the last good copy kept.

cognito-local keeps each user pool (and the app clients) in one JSON file under
`.cognito/db/`. A file cut short by an interrupted write, or with trailing garbage from two
overlapping writes, stops cognito-local from starting; an empty one is read as an empty pool
(every user silently gone). So before each start, and after each stop:
- every file is checked (non-empty, one JSON object);
- a damaged file is put aside (`<name>.damaged-<time>`) and the last good copy restored,
  or, with no good copy, left out so that cognito-local can start;
- the good files are copied over the last good copies (each copy written whole, then renamed).
A missing file is not restored: cognito-local deletes a pool's file when the pool is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from livekart_users.local import private


@dataclass(frozen=True)
class Repair:
    """What was found wrong with one file and what was done about it."""

    file: str
    problem: str
    restored_from: str | None  # when the last good copy was taken, if one was restored
    set_aside: str

    def __str__(self) -> str:
        if self.restored_from:
            return (
                f"cognito-local's {self.file} was damaged ({self.problem}): restored the last "
                f"good copy, taken {self.restored_from} (changes after it are lost); the "
                f"damaged file is kept as {self.set_aside}"
            )
        return (
            f"cognito-local's {self.file} was damaged ({self.problem}) and no good copy exists: "
            f"moved it to {self.set_aside}; that pool starts empty"
        )


def problem(path: Path) -> str | None:
    """Why cognito-local could not use this file as it is; None when it can."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    if not data.strip():
        return "empty"
    try:
        value = json.loads(data)
    except ValueError as exc:
        return f"not valid JSON at byte {getattr(exc, 'pos', '?')} of {len(data)}"
    if not isinstance(value, dict):
        return "not a JSON object"
    return None


def check_and_keep(db: Path, backup: Path) -> list[Repair]:
    """Repair damaged files in `db` from `backup`, then refresh `backup` from the good ones."""
    repairs: list[Repair] = []
    if not db.is_dir():
        return repairs
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for path in sorted(db.glob("*.json")):
        why = problem(path)
        if why is None:
            continue
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        os.replace(path, aside)
        saved = backup / path.name
        taken = None
        if saved.is_file() and problem(saved) is None:
            shutil.copy2(saved, path)
            taken = datetime.fromtimestamp(saved.stat().st_mtime, UTC).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            )
        repairs.append(Repair(path.name, why, taken, aside.name))
    keep(db, backup)
    return repairs


def wait_until_whole(db: Path, timeout: float = 5.0) -> bool:
    """Wait (a little) until no file in `db` is caught mid-write; True when all are whole."""
    ends = time.monotonic() + timeout
    while True:
        if not db.is_dir() or all(problem(path) is None for path in db.glob("*.json")):
            return True
        if time.monotonic() > ends:
            return False
        time.sleep(0.05)


def keep(db: Path, backup: Path) -> None:
    """Copy every good file in `db` over its last good copy."""
    if not db.is_dir():
        return
    private.make_folder(backup.parent)
    private.make_folder(backup)
    for saved in backup.glob("*.json"):
        if not (db / saved.name).exists():
            saved.unlink()  # its pool was deleted
    for path in db.glob("*.json"):
        if problem(path) is not None:
            continue
        partial = backup / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}"
        if path.is_symlink():
            continue  # never copy what a link points to
        shutil.copy2(path, partial)
        os.chmod(partial, private.FILE_MODE)  # passwords and tokens: the user's alone
        # The copy may have raced a write: keep it only if it is whole.
        if problem(partial) is None:
            os.replace(partial, backup / path.name)
        else:
            partial.unlink(missing_ok=True)
