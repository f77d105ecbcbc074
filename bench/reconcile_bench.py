"""Benchmark of `livekart-users reconcile`: throughput against the rate, and peak memory.

    .venv/bin/python bench/reconcile_bench.py [--sizes 10000 100000] [--rate 20] [--markdown]

For each size N it builds a synthetic pool of N users on moto's server (cognito-local keeps
its users in one JSON file rewritten on every write, and cannot hold that many) and a table
on DynamoDB Local, with a realistic mix: 94% confirmed users with rows, 4% of those rows
stale (a name changed in Cognito), 5% admin-created users with no row (FORCE_CHANGE_PASSWORD),
1% unconfirmed, and orphan rows worth 0.5% of N. Then it runs the real command three times,
each in a fresh process whose peak RSS is read from the kernel (`wait4`):
1. a dry run, 2. `--apply`, 3. `--apply` again (which must find nothing to do).

moto's own ListUsers pagination rescans the whole pool for each page (≈ 100 ms a page at
100 k users), which would measure moto rather than reconcile, so the bench pages moto's pool
through an index instead (same answers, same tokens-until-the-end contract). Everything runs
on 127.0.0.1; every wait has a timeout.

Memory is projected to 1 M users linearly from the two largest sizes; time to 1 M at the
default rate from Cognito's page size: ⌈1 M / 60⌉ requests at `rate` requests/s.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from livekart_users import aws, schema
from livekart_users.local import emulators, processes
from livekart_users.reconcile import DEFAULT_RATE, PAGE_LIMIT
from livekart_users.table import UsersTable, to_dynamo

REGION = "us-east-1"
MEMORY_TARGET_MB = 400.0
ONE_MILLION = 1_000_000
RUN_TIMEOUT = 1800  # seconds, per reconcile run


# --- the emulators ---------------------------------------------------------------------------


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's server in this process (its backends are then ours to fill directly)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@contextmanager
def dynamodb_local(directory: Path) -> Iterator[str]:
    port = processes.free_port()
    pid = emulators.start_dynamodb(port, log=directory / "dynamodb.log")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        processes.stop(pid)


def index_moto_paging(backend: Any) -> None:
    """Serve ListUsers pages by position instead of moto's scan from the start per page."""
    original = backend.list_users
    snapshots: dict[str, list[Any]] = {}

    def list_users(
        user_pool_id: str,
        filt: str | None,
        limit: int | None = None,
        pagination_token: str | None = None,
    ) -> tuple[list[Any], str | None]:
        if filt:
            return original(user_pool_id, filt, limit=limit, pagination_token=pagination_token)  # type: ignore[no-any-return]
        users = backend.describe_user_pool(user_pool_id).users
        snapshot = snapshots.get(user_pool_id)
        if snapshot is None or len(snapshot) != len(users) or not pagination_token:
            snapshot = snapshots[user_pool_id] = list(users.values())
        start = int(pagination_token or 0)
        end = start + int(limit or PAGE_LIMIT)
        return snapshot[start:end], (str(end) if end < len(snapshot) else None)

    backend.list_users = list_users


# --- the synthetic pool and table ------------------------------------------------------------


def populate(size: int, moto: str, dynamodb: str) -> tuple[str, str, dict[str, int]]:
    """A pool and a table holding the mix described above; their ids and the expected counts."""
    from moto.cognitoidp.models import cognitoidp_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    cognito = aws.client("cognito-idp", region_name=REGION)
    pool_id = cognito.create_user_pool(PoolName=f"bench-{size}-{uuid.uuid4().hex[:6]}")["UserPool"][
        "Id"
    ]
    backend = cognitoidp_backends[DEFAULT_ACCOUNT_ID][REGION]
    index_moto_paging(backend)
    table = UsersTable(aws.client("dynamodb", region_name=REGION), f"bench-{size}")
    table.create_table()
    timestamp = schema.now()
    rows: list[dict[str, Any]] = []
    expected = {"to_create": 0, "to_refresh": 0, "unconfirmed": 0, "orphans": 0, "in_step": 0}
    for i in range(size):
        slot = i % 100
        attributes = [
            {"Name": "email", "Value": f"user{i}@example.com"},
            {"Name": "name", "Value": f"User {i}"},
            {"Name": "custom:role", "Value": "vendor" if i % 10 == 0 else "customer"},
            {"Name": "email_verified", "Value": "true"},
        ]
        user = backend.admin_create_user(
            pool_id, f"user{i}", "SUPPRESS", "Bench-pass-1", attributes
        )
        if slot == 0:
            user.status = "UNCONFIRMED"
            expected["unconfirmed"] += 1
            continue
        if slot <= 5:  # admin-created: FORCE_CHANGE_PASSWORD, and no row
            expected["to_create"] += 1
            continue
        user.status = "CONFIRMED"
        values = {a["Name"]: a["Value"] for a in user.attributes}
        row = schema.new_record(values, user.username, timestamp=timestamp)
        if slot <= 9:
            row["name"] = "Old Name"
            expected["to_refresh"] += 1
        else:
            expected["in_step"] += 1
        rows.append(row)
    for i in range(size // 200):
        sub = str(uuid.uuid4())
        rows.append(
            schema.new_record(
                {"sub": sub, "email": f"gone{i}@example.com"}, sub, timestamp=timestamp
            )
        )
        expected["orphans"] += 1
    write_rows(table, rows)
    return pool_id, table.name, expected


def write_rows(table: UsersTable, rows: list[dict[str, Any]]) -> None:
    def batch(chunk: list[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": to_dynamo(r)}} for r in chunk]
        while requests:
            answer = table.client.batch_write_item(RequestItems={table.name: requests})
            requests = answer.get("UnprocessedItems", {}).get(table.name, [])

    chunks = [rows[i : i + 25] for i in range(0, len(rows), 25)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(batch, chunks))


# --- one run of the real command, in a process of its own ------------------------------------


# The command's own peak: the kernel's VmHWM of the process after exec, read at exit. (Its
# ru_maxrss would not do: exec folds the parent's high-water mark into it, and the parent here
# holds the whole synthetic pool.)
CHILD = """
import atexit, os, sys

def peak():
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM:"))
    with open(os.environ["BENCH_PEAK_FILE"], "w") as out:
        out.write(hwm.split()[1])

atexit.register(peak)
sys.argv[0] = "livekart-users"
from livekart_users.cli import main
main()
"""


def run_reconcile(pool_id: str, table: str, *args: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-c",
        CHILD,
        "reconcile",
        "--user-pool-id",
        pool_id,
        "--table",
        table,
        "--json",
        *args,
    ]
    started = time.monotonic()
    peak_file = Path(tempfile.mkstemp(prefix="reconcile-peak-")[1])
    env = {**os.environ, "BENCH_PEAK_FILE": str(peak_file)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                child.kill()
                raise SystemExit(f"reconcile did not finish in {RUN_TIMEOUT} s")
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"reconcile failed: {err.read().decode(errors='replace')[-2000:]}")
        report: dict[str, Any] = json.loads(out.read())
    report["wall_seconds"] = round(time.monotonic() - started, 2)
    report["peak_rss_mb"] = round(int(peak_file.read_text()) / 1024, 1)  # VmHWM is in kB
    peak_file.unlink()
    report["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 2)
    return report


def check(report: dict[str, Any], expected: dict[str, int], *, healed: bool) -> None:
    want = dict(expected)
    if healed:
        want.update(
            to_create=0,
            to_refresh=0,
            in_step=expected["in_step"] + expected["to_create"] + expected["to_refresh"],
        )
    got = {k: report[k] for k in want}
    if got != want:
        raise SystemExit(f"unexpected counts: {got} != {want}")


# --- main ------------------------------------------------------------------------------------


def measure(sizes: list[int], rate: float) -> dict[str, Any]:
    results: dict[str, Any] = {"rate": rate, "sizes": {}}
    with (
        tempfile.TemporaryDirectory() as scratch,
        moto_server() as moto,
        dynamodb_local(Path(scratch)) as dynamodb,
    ):
        os.environ.update(
            {
                "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": moto,
                "AWS_ENDPOINT_URL_DYNAMODB": dynamodb,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": REGION,
            }
        )
        for variable in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL", "USERS_EXTRA_FIELDS"):
            os.environ.pop(variable, None)
        empty_pool, empty_table, _ = populate(0, moto, dynamodb)
        results["baseline_rss_mb"] = run_reconcile(empty_pool, empty_table)["peak_rss_mb"]
        for size in sizes:
            started = time.monotonic()
            pool_id, table, expected = populate(size, moto, dynamodb)
            print(f"{size}: populated in {time.monotonic() - started:.0f} s", file=sys.stderr)
            runs = {}
            for name, args in (
                ("dry run", ()),
                ("apply", ("--apply",)),
                ("again", ("--apply",)),
            ):
                rate_args = ("--rate", f"{rate:g}")
                report = run_reconcile(pool_id, table, *args, *rate_args)
                check(report, expected, healed=name == "again")
                runs[name] = report
                print(f"{size} {name}: {summarize(report)}", file=sys.stderr)
            if runs["apply"]["created"] != expected["to_create"]:
                raise SystemExit("apply did not create every missing row")
            results["sizes"][size] = runs
    largest = sorted(results["sizes"])[-2:]
    peaks = [max(r["peak_rss_mb"] for r in results["sizes"][n].values()) for n in largest]
    if len(largest) == 2:
        slope = (peaks[1] - peaks[0]) / (largest[1] - largest[0])
        results["projected_rss_mb_1m"] = round(peaks[1] + slope * (ONE_MILLION - largest[1]), 0)
        results["rss_bytes_per_user"] = round(slope * 1024 * 1024, 0)
    requests = math.ceil(ONE_MILLION / PAGE_LIMIT)
    results["projected_listing_minutes_1m"] = round(requests / DEFAULT_RATE / 60, 1)
    results["quota_floor_minutes_1m"] = round(requests / 30 / 60, 1)
    return results


def summarize(report: dict[str, Any]) -> str:
    listing = report["pool_seconds"] or 1e-9
    return (
        f"{report['pool_users'] / report['seconds']:.0f} users/s overall, "
        f"{report['list_requests'] / listing:.1f} ListUsers/s while listing, "
        f"peak RSS {report['peak_rss_mb']} MB, {report['wall_seconds']} s"
    )


def markdown(results: dict[str, Any]) -> str:
    rate = results["rate"]
    lines = [
        f"Rate {rate:g} ListUsers requests/s (the default), concurrency 8, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}. Baseline (empty pool "
        f"and table): peak RSS {results['baseline_rss_mb']} MB.",
        "",
        "| users | run | to create | to refresh | table read | listing | ListUsers/s "
        "(limit) | users/s | peak RSS |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, runs in sorted(results["sizes"].items()):
        for name, r in runs.items():
            listing = r["pool_seconds"] or 1e-9
            lines.append(
                f"| {size:,} | {name} | {r['to_create']:,} | {r['to_refresh']:,} | "
                f"{r['table_seconds']:.1f} s | {r['pool_seconds']:.1f} s | "
                f"{r['list_requests'] / listing:.1f} ({rate:g}) | "
                f"{r['pool_users'] / r['seconds']:,.0f} | {r['peak_rss_mb']} MB |"
            )
    lines += [
        "",
        f"Projected for 1 M users: peak RSS ≈ {results.get('projected_rss_mb_1m', '?')} MB "
        f"(≈ {results.get('rss_bytes_per_user', '?')} bytes per user; target ≤ "
        f"{MEMORY_TARGET_MB:g} MB); listing ≥ {results['projected_listing_minutes_1m']} min at "
        f"{DEFAULT_RATE:g} requests/s ({results['quota_floor_minutes_1m']} min at the 30/s quota).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--markdown", action="store_true", help="Print docs/performance.md rows.")
    args = parser.parse_args()
    results = measure(args.sizes, args.rate)
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    projected = results.get("projected_rss_mb_1m")
    if projected is not None and projected > MEMORY_TARGET_MB:
        raise SystemExit(f"projected peak RSS {projected} MB is above {MEMORY_TARGET_MB:g} MB")


if __name__ == "__main__":
    main()
