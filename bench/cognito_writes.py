"""Concurrent sign-ups against cognito-local, straight or through the stack's proxy.

    .venv/bin/python bench/cognito_writes.py [--users 300] [--runs 3] [--workers 64]

Each run starts a fresh local stack, signs up and confirms `--users` users at once
(`--workers` at a time), stops the stack, and then reads the pool file at rest: is it valid
JSON, and does it hold every user? "direct" sends the calls to cognito-local's own port, as
the stack did before the proxy; "proxy" to the stack's Cognito endpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config

from livekart_users.local import pools, processes
from livekart_users.local.stack import CONFIRMATION_CODE, LocalStack, Settings


def one_run(mode: str, users: int, workers: int, root: Path) -> dict[str, object]:
    stack = LocalStack(
        Settings(
            directory=root / f"{mode}-{uuid.uuid4().hex[:6]}",
            dynamodb_port=processes.free_port(),
            cognito_port=processes.free_port(),
            endpoint_port=processes.free_port(),
        )
    )
    status = stack.up()
    endpoint = status.endpoints["cognito-local" if mode == "direct" else "cognito-idp"]
    cognito = boto3.client(
        "cognito-idp",
        endpoint_url=endpoint,
        region_name="us-east-1",
        config=Config(max_pool_connections=workers, retries={"max_attempts": 1}),
    )
    errors: list[str] = []

    def sign_up(i: int) -> None:
        name = f"bench-{i}-{uuid.uuid4().hex[:6]}@example.com"
        try:
            cognito.sign_up(
                ClientId=str(status.client_id),
                Username=name,
                Password="LiveKart-bench-1",
                UserAttributes=[{"Name": "email", "Value": name}],
            )
            cognito.confirm_sign_up(
                ClientId=str(status.client_id), Username=name, ConfirmationCode=CONFIRMATION_CODE
            )
        except Exception as exc:
            errors.append(type(exc).__name__)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(sign_up, range(users)))
    seconds = time.monotonic() - started
    stack.down()
    pool_file = stack.cognito_db / f"{status.user_pool_id}.json"
    problem = pools.problem(pool_file)
    stored = 0
    if problem is None:
        stored = len(json.loads(pool_file.read_text()).get("Users") or {})
    stack.down(wipe=True)
    return {
        "mode": mode,
        "seconds": round(seconds, 1),
        "errors": len(errors),
        "pool_file": problem or "valid",
        "users_stored": stored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["direct", "proxy"])
    args = parser.parse_args()
    os.environ.update({"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"})
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            for _ in range(args.runs):
                print(json.dumps(one_run(mode, args.users, args.workers, Path(tmp))), flush=True)
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
