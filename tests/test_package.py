"""The Lambda zip: reproducible bytes, only the trigger's modules, pure Python, and a handler
that works from the unpacked zip alone (under Python 3.13, the runtime's, where it exists)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from livekart_users.cli import main
from livekart_users.deploy import package
from livekart_users.deploy.package import PackagingError, build_zip
from livekart_users.table import UsersTable

from .conftest import load_event

LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"
PYTHON_313 = Path("/root/.pyenv/versions/3.13.0/bin/python3.13")
# The python3.13 runtime's environment, for resolving the dependencies' markers.
LAMBDA_MARKERS = {
    "python_version": "3.13",
    "python_full_version": "3.13.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "aarch64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}
NATIVE_MAGIC = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xcf\xfa\xed\xfe",
    b"\xce\xfa\xed\xfe",
)


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_same_inputs_give_the_same_bytes() -> None:
    first = build_zip()
    build_zip.cache_clear()
    second = build_zip()
    assert second is not first
    assert second.data == first.data
    assert second.sha256 == first.sha256 == hashlib.sha256(first.data).hexdigest()
    assert package.code_sha256_b64(first.data) == first.code_sha256
    assert base64.b64decode(first.code_sha256) == hashlib.sha256(first.data).digest()


def test_entries_are_sorted_dated_1980_and_world_readable() -> None:
    with zipfile.ZipFile(io.BytesIO(build_zip().data)) as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {package.EPOCH}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}
    assert not [n for n in names if n.endswith("/")]
    assert not [n for n in names if n.endswith(("/RECORD", "/INSTALLER", "/direct_url.json"))]


def test_every_module_has_python313_bytecode_that_needs_no_source_check() -> None:
    files = members(build_zip().data)
    sources = {n for n in files if n.endswith(".py")}
    compiled = {n for n in files if n.endswith(".pyc")}
    assert compiled == {
        str(PurePosixPath(n).parent / "__pycache__" / f"{PurePosixPath(n).stem}.cpython-313.pyc")
        for n in sources
    }
    magic = subprocess.run(
        [
            package.runtime_python(),
            "-c",
            "import importlib.util, sys; sys.stdout.buffer.write(importlib.util.MAGIC_NUMBER)",
        ],
        capture_output=True,
        check=True,
    ).stdout
    headers = {files[n][:8] for n in compiled}
    # PEP 552: flags 0b01 = hash-based, not checked against the source (which Lambda dates
    # 1980 and never changes); the magic number is the runtime's.
    assert headers == {magic + (1).to_bytes(4, "little")}


def test_the_runtime_uses_the_bytecode_not_the_source(tmp_path: Path) -> None:
    # GIVEN the zip unpacked, with a source changed after compilation
    root = unpack(members(build_zip().data), tmp_path / "task")
    (root / "livekart_users" / "schema.py").write_text("raise ImportError('source compiled')\n")
    # WHEN python3.13 imports the handler from there, writing nothing (as on /var/task)
    done = subprocess.run(
        [package.runtime_python(), "-s", "-c", "import livekart_users.triggers"],
        env={
            "PYTHONPATH": str(root),
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(tmp_path),
            "AWS_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    # THEN it ran the zip's bytecode: the source was never read
    assert done.returncode == 0, done.stderr
    assert not list(root.rglob("*.cpython-313.opt-*.pyc"))


def test_only_the_data_of_the_services_the_handlers_call_is_inside() -> None:
    files = members(build_zip().data)
    services = {
        n.split("/")[2] for n in files if n.startswith("botocore/data/") and n.count("/") > 2
    }
    assert services == set(package.SDK_SERVICES) == {"dynamodb", "cognito-idp"}
    assert {"botocore/data/endpoints.json", "botocore/data/partitions.json"} <= set(files)


def test_without_a_python313_the_zip_is_refused_with_a_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sys.version_info[:2] == package.RUNTIME_PYTHON:
        pytest.skip("this interpreter is Python 3.13 itself")
    monkeypatch.delenv(package.PYTHON_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    with pytest.raises(
        PackagingError,
        match=r"^no Python 3.13 interpreter found: .* set "
        "LIVEKART_PYTHON313 to its path$",
    ):
        package.runtime_python()
    monkeypatch.setenv(package.PYTHON_VARIABLE, sys.executable)
    with pytest.raises(PackagingError, match=r"is not a Python 3\.13 interpreter"):
        package.runtime_python()


def test_only_the_modules_the_three_handlers_import_are_inside() -> None:
    code = (
        "import sys, livekart_users.triggers, livekart_users.changes, livekart_users.scheduled; "
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.split()
    imported = {m.replace(".", "/") for m in loaded if m.startswith("livekart_users.")}
    ours = {
        n.removesuffix(".py")
        for n in members(build_zip().data)
        if n.startswith("livekart_") and n.endswith(".py")
    }
    assert ours == imported | {"livekart_users/__init__"}


def test_no_native_library_for_any_platform_is_inside() -> None:
    files = members(build_zip("arm64").data)
    assert not [n for n in files if n.endswith((".so", ".pyd", ".dylib")) or ".so." in n]
    assert not [n for n, data in files.items() if data.startswith(NATIVE_MAGIC)]


FAKE_METADATA = b"Metadata-Version: 2.1\nName: fake-lib\nVersion: 1.0\n"


def fake_distribution(
    site: Path, tag: str, name: str, content: bytes, *, recorded: bytes | None = None
) -> str:
    """`fake-lib` installed in `site`: one file, whose RECORD hash is `recorded`'s."""
    info = site / "fake_lib-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_bytes(FAKE_METADATA)
    pure = str(tag.endswith("-none-any")).lower()
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: {pure}\nTag: {tag}\n")
    recorded = content if recorded is None else recorded
    digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).rstrip(b"=").decode()
    (site / name).parent.mkdir(parents=True)
    (site / name).write_bytes(content)
    (info / "RECORD").write_text(
        f"{name},sha256={digest},{len(recorded)}\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n"
    )
    return "fake-lib"


def pinned_fake_wheel(
    cache: Path, name: str, content: bytes, monkeypatch: pytest.MonkeyPatch
) -> dict[str, package.Pin]:
    """The wheel of fake-lib 1.0 holding `content` at `name`, in the wheel cache, and a lock
    that pins it by its sha256."""
    record = {name: content, "fake_lib-1.0.dist-info/METADATA": FAKE_METADATA}
    lines = [
        f"{path},sha256="
        + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        + f",{len(data)}"
        for path, data in record.items()
    ]
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / "fake_lib-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in record.items():
            archive.writestr(path, data)
        archive.writestr("fake_lib-1.0.dist-info/RECORD", "\n".join(lines) + "\n")
    monkeypatch.setattr(package, "wheel_cache", lambda: cache)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return {"fake-lib": package.Pin("1.0", frozenset({digest}))}


def test_a_distribution_with_native_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = "cp313-cp313-manylinux2014_x86_64"
    name = fake_distribution(tmp_path, tag, "fake_lib/_speedups.so", b"\x7fELF for x86_64")
    pins = {"fake-lib": package.Pin("1.0", frozenset())}
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PackagingError, match=r"fake-lib 1.0 is not pure Python .* for arm64"):
        package.distribution_files(name, "arm64", pins=pins)


def test_a_file_that_differs_from_the_pinned_wheel_is_refused_whatever_record_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pins = pinned_fake_wheel(tmp_path / "cache", "fake_lib/__init__.py", b"x = 1\n", monkeypatch)
    site = tmp_path / "site"
    # Edited after installation, and its installed RECORD edited to match.
    name = fake_distribution(site, "py3-none-any", "fake_lib/__init__.py", b"edited = 1\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(PackagingError, match=r"fake_lib/__init__\.py differs from the file in"):
        package.distribution_files(name, "arm64", pins=pins)
    # ...while the file as the pinned wheel has it is taken as it is
    (site / "fake_lib" / "__init__.py").write_bytes(b"x = 1\n")
    assert dict(package.distribution_files(name, "arm64", pins=pins)) == {
        "fake_lib/__init__.py": b"x = 1\n",
        "fake_lib-1.0.dist-info/METADATA": FAKE_METADATA,
    }


def test_a_version_other_than_the_locked_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = fake_distribution(tmp_path, "py3-none-any", "fake_lib/__init__.py", b"x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    newer = {"fake-lib": package.Pin("1.1", frozenset())}
    with pytest.raises(PackagingError, match=r"fake-lib 1.0 is installed, but .* pins 1.1"):
        package.distribution_files(name, "arm64", pins=newer)
    with pytest.raises(PackagingError, match=r"fake-lib is not pinned in requirements.lock"):
        package.distribution_files(name, "arm64", pins={})


def test_the_package_ships_the_repository_lock_and_every_pin_has_hashes() -> None:
    shipped = Path(package.__file__).parent / package.SHIPPED_LOCK
    assert shipped.read_text() == LOCK.read_text(), "run: make lock (it copies the lock)"
    pins = package.locked()
    assert {"boto3", "botocore", "aws-lambda-powertools"} <= set(pins)
    assert all(pin.hashes for pin in pins.values())
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for pin in pins.values() for h in pin.hashes)


def test_an_unknown_architecture_is_refused() -> None:
    with pytest.raises(PackagingError, match="'i386' is not one of arm64, x86_64"):
        build_zip("i386")


def test_the_zip_carries_what_the_trigger_needs_at_the_locked_versions() -> None:
    built = build_zip()
    wanted = _requirement_closure(["aws-lambda-powertools", "boto3"])
    assert {canonicalize_name(name) for name, _ in built.distributions} == wanted
    locked = {name: pin.version for name, pin in package.parse_lock(LOCK.read_text()).items()}
    assert {canonicalize_name(n): v for n, v in built.distributions}.items() <= locked.items()
    tops = {name.split("/")[0] for name in members(built.data)}
    assert {"boto3", "botocore", "aws_lambda_powertools", "dateutil", "six.py"} <= tops


def test_without_the_sdk_the_runtime_s_boto3_is_used() -> None:
    slim = build_zip(bundle_sdk=False)
    tops = {name.split("/")[0] for name in members(slim.data)}
    assert not tops & {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "jmespath"}
    # The runtime ships the SDK's dependencies too (jmespath): none of them may shadow those.
    beside_the_sdk = _requirement_closure(["aws-lambda-powertools"]) - _requirement_closure(
        ["boto3"]
    )
    assert {canonicalize_name(n) for n, _ in slim.distributions} == beside_the_sdk
    assert slim.size < build_zip().size / 2


def test_package_command_writes_the_zip_and_prints_size_and_hashes(tmp_path: Path) -> None:
    output = tmp_path / "out" / "trigger.zip"
    result = CliRunner().invoke(main, ["package", "--output", str(output)])
    assert result.exit_code == 0, result.output
    built = build_zip()
    assert output.read_bytes() == built.data
    assert f"{built.size:,} bytes" in result.output
    assert built.sha256 in result.output
    assert built.code_sha256 in result.output


def unpack(files: dict[str, bytes], root: Path) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture(scope="module")
def lambda_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each zip unpacked as Lambda unpacks it into /var/task, and a stand-in for the runtime's
    own boto3 (the pinned SDK's files) for the zip that relies on it."""
    base = tmp_path_factory.mktemp("lambda")
    bundled = unpack(members(build_zip().data), base / "bundled")
    runtime = base / "runtime"
    runtime.mkdir()
    for name in package.SDK:
        for top in {str(f).split("/")[0] for f in metadata.distribution(name).files or []}:
            if top != ".." and (bundled / top).exists():  # the SDK's packages, no more
                (runtime / top).symlink_to(bundled / top)
    return {
        "bundled": bundled,
        "slim": unpack(members(build_zip(bundle_sdk=False).data), base / "slim"),
        "runtime": runtime,
    }


INTERPRETERS = [
    pytest.param(Path(sys.executable), id="this-python"),
    pytest.param(
        PYTHON_313,
        id="python3.13",
        marks=pytest.mark.skipif(
            not PYTHON_313.exists(),
            reason=f"no Python 3.13 at {PYTHON_313} (the Lambda runtime's version) on this machine",
        ),
    ),
]

HANDLER_CALL = """
import json, sys
import boto3, livekart_users.triggers as triggers
task_root, sdk_root = sys.argv[1:]
assert triggers.__file__.startswith(task_root), triggers.__file__
assert boto3.__file__.startswith(sdk_root), boto3.__file__
event = json.loads(sys.stdin.read())
print("RESULT " + json.dumps(triggers.handler(event, None)))
"""


@pytest.mark.parametrize("zip_kind", ["bundled", "slim"])
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_the_handler_from_the_unpacked_zip_writes_the_row(
    interpreter: Path,
    zip_kind: str,
    lambda_dirs: dict[str, Path],
    users_table: UsersTable,
    tmp_path: Path,
) -> None:
    # GIVEN a clean virtualenv (nothing installed) and the zip's content as its only library
    # (and, for the zip without the SDK, the runtime's boto3 after it, as on Lambda)
    task_root = lambda_dirs[zip_kind]
    sdk_root = task_root if zip_kind == "bundled" else lambda_dirs["runtime"]
    venv = tmp_path / "venv"
    subprocess.run([str(interpreter), "-m", "venv", "--without-pip", str(venv)], check=True)
    environment = {
        "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(task_root), str(sdk_root)])),
        "HOME": str(tmp_path),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL_DYNAMODB": os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
        "USERS_TABLE": os.environ["USERS_TABLE"],
        "POWERTOOLS_SERVICE_NAME": "livekart-users",
    }
    event = load_event("post-confirmation-signup-customer")
    # WHEN the handler imported from there handles a sign-up (sent again, as Cognito would,
    # if a loaded machine made it miss its deadline: timing is test_deadline's subject)
    for _ in range(2):
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-c", HANDLER_CALL, str(task_root), str(sdk_root)],
            input=json.dumps(event),
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        result = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert json.loads(result[0].removeprefix("RESULT ")) == event
        outcome = re.search(r'"outcome": ?"(\w+)"', done.stdout)
        assert outcome, done.stdout
        if outcome.group(1) not in ("failed", "unknown"):
            break
    # THEN it returns the event and the row is in the table
    assert outcome.group(1) in ("created", "already_exists"), done.stdout
    row = users_table.get(event["request"]["userAttributes"]["sub"])
    assert row is not None
    assert row["email"] == "testuser@example.com"
    assert row["role"] == "customer"


def _requirement_closure(roots: list[str]) -> set[str]:
    """What `roots` need at run time on Lambda: Requires-Dist, no extras, markers for 3.13."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(LAMBDA_MARKERS):
                pending.append(requirement.name)
    return seen
