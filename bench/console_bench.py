"""Benchmark of the local console's users view: how fast it opens with a large pool.

    .venv/bin/python bench/console_bench.py [--users 10000] [--runs 7] [--markdown]

It starts a local stack of its own (a temporary folder, free ports), stops it, writes N
users straight into cognito-local's pool file (cognito-local rewrites that file on every
write, so N sign-ups would take hours; the file is what its own writes produce), starts the
stack again (its pool-file check runs as usual) and writes the rows to DynamoDB Local: 94 %
in step, 2 % with a stale name, 3 % with no row, 1 % unconfirmed, and orphan rows worth
0.5 % of N. Then it starts the console (`open_console`, as `local console` does) and times,
over HTTP with the token, what the page asks for: the first page of the users view, the next
page, an email search, the first page of rows without a user, and one user's detail. Each is
run `--runs` times; the first run of the first page is reported apart (cold).

Target: the users view's first page of 10,000 users in under 1 s.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from livekart_users import aws, schema
from livekart_users.local import processes
from livekart_users.local.console import open_console
from livekart_users.local.console.server import TOKEN_HEADER, Running
from livekart_users.local.stack import LocalStack, Settings
from livekart_users.table import UsersTable, to_dynamo

TARGET_S = 1.0


def start(directory: Path) -> LocalStack:
    stack = LocalStack(
        Settings(
            directory=directory,
            dynamodb_port=processes.free_port(),
            cognito_port=processes.free_port(),
            endpoint_port=processes.free_port(),
        )
    )
    stack.up()
    return stack


def synthetic_pool(size: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """N cognito-local users (its file's own shape) and how many of each kind."""
    users: list[dict[str, Any]] = []
    counts = {"in step": 0, "identity stale": 0, "row missing": 0, "unconfirmed": 0}
    now = "2026-12-01T00:00:00.000Z"
    for i in range(size):
        sub = str(uuid.uuid4())
        kind = (
            "unconfirmed"
            if i % 100 == 0
            else "row missing"
            if i % 100 in (1, 2, 3)
            else "identity stale"
            if i % 100 in (4, 5)
            else "in step"
        )
        counts[kind] += 1
        users.append(
            {
                "Attributes": [
                    {"Name": "custom:role", "Value": "vendor" if i % 10 == 0 else "customer"},
                    {"Name": "email", "Value": f"user{i:06d}@bench.example"},
                    {"Name": "email_verified", "Value": "true"},
                    {"Name": "name", "Value": f"Bench User {i}"},
                    {"Name": "sub", "Value": sub},
                ],
                "Enabled": True,
                "Password": "Bench-password-1",
                "UserCreateDate": now,
                "UserLastModifiedDate": now,
                "Username": sub,
                "UserStatus": "UNCONFIRMED" if kind == "unconfirmed" else "CONFIRMED",
                "_kind": kind,
            }
        )
    return users, counts


def write_pool(stack: LocalStack, users: list[dict[str, Any]]) -> None:
    pool_id = stack.status().user_pool_id
    path = stack.cognito_db / f"{pool_id}.json"
    data = json.loads(path.read_text())
    for user in users:
        data["Users"][user["Username"]] = {k: v for k, v in user.items() if k != "_kind"}
    path.write_text(json.dumps(data))


def write_rows(stack: LocalStack, users: list[dict[str, Any]], orphans: int) -> None:
    table = UsersTable(aws.client("dynamodb"), stack.settings.table)
    rows: list[dict[str, Any]] = []
    for user in users:
        if user["_kind"] in ("row missing", "unconfirmed"):
            continue
        attributes = {a["Name"]: a["Value"] for a in user["Attributes"]}
        row = schema.new_record(attributes, user["Username"], timestamp=schema.now())
        if user["_kind"] == "identity stale":
            row["name"] = "An Old Name"
        rows.append(row)
    for i in range(orphans):
        uid = str(uuid.uuid4())
        attributes = {"sub": uid, "email": f"gone{i:05d}@bench.example", "name": "Gone"}
        rows.append(schema.new_record(attributes, uid, timestamp=schema.now()))

    def batch(chunk: list[dict[str, Any]]) -> None:
        request = {table.name: [{"PutRequest": {"Item": to_dynamo(r)}} for r in chunk]}
        while request:
            answer = table.client.batch_write_item(RequestItems=request)
            request = answer.get("UnprocessedItems") or {}

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(batch, [rows[i : i + 25] for i in range(0, len(rows), 25)]))


def get(running: Running, path: str) -> tuple[float, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.port}{path}", headers={TOKEN_HEADER: running.token}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as answer:
        body = json.loads(answer.read())
    return time.perf_counter() - started, body


def timed(running: Running, path: str, runs: int) -> tuple[list[float], Any]:
    samples = []
    body: Any = None
    for _ in range(runs):
        seconds, body = get(running, path)
        samples.append(seconds)
    return samples, body


def measure(size: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="console-bench-") as folder:
        stack = start(Path(folder) / "stack")
        try:
            users, counts = synthetic_pool(size)
            stack.down()
            write_pool(stack, users)
            stack.up()
            stack.use()
            orphans = max(1, size // 200)
            write_rows(stack, users, orphans)
            running = open_console(stack, environ={})
            try:
                cold, first = get(running, "/api/users")
                assert len(first["entries"]) == 50, len(first["entries"])
                results: dict[str, Any] = {"first page, first request": [cold]}
                results["first page"], first = timed(running, "/api/users", runs)
                cursor = urllib.parse.quote(first["cursor"])
                results["next page"], _ = timed(running, f"/api/users?cursor={cursor}", runs)
                results["search by email prefix"], found = timed(
                    running, "/api/users?q=user00012", runs
                )
                assert len(found["entries"]) >= 10, found
                rows_cursor = urllib.parse.quote(
                    base64.urlsafe_b64encode(b'{"stage":"rows"}').decode()
                )
                results["rows without a user, first page"], rows = timed(
                    running, f"/api/users?cursor={rows_cursor}", runs
                )
                sub = first["entries"][0]["user_id"]
                results["one user's detail"], _ = timed(running, f"/api/users/{sub}", runs)
            finally:
                running.stop()
        finally:
            stack.down()
    return {
        "users": size,
        "orphans": orphans,
        "kinds": counts,
        "rows_page_entries": len(rows["entries"]),
        "timings": results,
    }


def markdown(result: dict[str, Any], runs: int) -> str:
    lines = [
        f"Users view of {result['users']:,} users ({result['orphans']} orphan rows), "
        f"{runs} runs each, seconds:",
        "",
        "| request | median | max | target |",
        "|---|---|---|---|",
    ]
    for name, samples in result["timings"].items():
        target = f"< {TARGET_S:.0f} s" if name.startswith("first page") else ""
        lines.append(
            f"| {name} | {statistics.median(samples):.3f} | {max(samples):.3f} | {target} |"
        )
    lines.append("")
    lines.append(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    result = measure(args.users, args.runs)
    if args.markdown:
        print(markdown(result, args.runs))
    else:
        print(json.dumps(result, indent=2))
    first = statistics.median(result["timings"]["first page"])
    return 0 if first < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
