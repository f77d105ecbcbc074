"""Whole-process timings of the CLI against the local stack: `doctor` and `users get`.

    .venv/bin/python bench/cli_bench.py [--runs 15]      (or: make bench-cli)

It starts a local stack of its own on free 127.0.0.1 ports in a temporary folder (DynamoDB
Local, cognito-local, the local Lambda endpoint: what `make test` needs), writes one user row,
then runs, in fresh processes, in rotating order:
- `livekart-users doctor --local-dir DIR` (target: median <= 0.7 s);
- `livekart-users users get ID --json`, and a bare boto3 script that makes the same GetItem
  and prints the item as JSON (target: the CLI's median <= 1.3x the script's).
Each time runs from just before the process starts to its exit (interpreter start, imports,
clients, requests, output, interpreter exit), and the process's CPU time (user + system) is
kept too: it moves less than the wall time when other work shares the CPUs. Every module runs
from bytecode, as from an installed wheel. The first round is a warm-up, not counted. It
never reaches AWS, stops the stack at the end, and exits 1 when a target is missed. The
machine's load average is printed before and after: the timings move with it.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from livekart_users import schema
from livekart_users.local import processes
from livekart_users.local.stack import LocalStack, Settings

USER_ID = "3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
DOCTOR_LIMIT = 0.7
USERS_GET_RATIO_LIMIT = 1.3
BARE_GET = """
import json, sys
import boto3
item = boto3.client("dynamodb").get_item(
    TableName=sys.argv[1], Key={"user_id": {"S": sys.argv[2]}}
).get("Item")
print(json.dumps(item))
"""


def start_stack(directory: Path) -> LocalStack:
    stack = LocalStack(
        Settings(
            directory=directory,
            dynamodb_port=processes.free_port(),
            cognito_port=processes.free_port(),
            endpoint_port=processes.free_port(),
            table="livekart-users",
        )
    )
    try:
        stack.up()
    except Exception:
        stack.down()
        raise
    return stack


def write_user(stack: LocalStack) -> None:
    from livekart_users import aws
    from livekart_users.table import UsersTable

    stack.use()
    record = schema.new_record(
        {"sub": USER_ID, "email": "bench@livekart.example", "name": "Bench User"},
        "bench@livekart.example",
        timestamp=schema.now(),
    )
    UsersTable(aws.client("dynamodb"), stack.settings.table).create_if_absent(record)


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one process, in seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} exited {done.returncode}: {done.stderr or done.stdout}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="counted rounds (default 15)")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="also time the CLI from another checkout's src/ (e.g. `git worktree add --detach "
        "/tmp/old COMMIT`, then /tmp/old/src), interleaved with this one",
    )
    args = parser.parse_args()

    cli = shutil.which("livekart-users", path=str(Path(sys.executable).parent))
    if cli is None:
        raise SystemExit("livekart-users is not installed beside this Python: run make bootstrap")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="livekart-cli-bench-") as folder:
        stack = start_stack(Path(folder) / "stack")
        try:
            write_user(stack)
            env = {**os.environ, **stack.environment(), "COLUMNS": "100"}
            env.pop("AWS_REGION", None)
            env.pop("AWS_PROFILE", None)
            # From bytecode, as an installed wheel runs (pip compiles what it installs): the
            # children write and read .pyc files in a cache of the run, never in src/.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(Path(folder) / "pycache")
            commands = {
                "doctor": [cli, "doctor", "--local-dir", str(stack.dir)],
                "users get": [cli, "users", "get", USER_ID, "--json"],
                "bare boto3 GetItem": [sys.executable, "-c", BARE_GET, "livekart-users", USER_ID],
            }
            envs = dict.fromkeys(commands, env)
            if args.baseline_src:
                baseline = {**env, "PYTHONPATH": str(args.baseline_src.resolve())}
                for name in ("doctor", "users get"):
                    commands[f"{name} (baseline)"] = commands[name]
                    envs[f"{name} (baseline)"] = baseline
            times: dict[str, list[float]] = {name: [] for name in commands}
            cpu: dict[str, list[float]] = {name: [] for name in commands}
            names = list(commands)
            for round_ in range(args.runs + 1):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    elapsed, used = timed(commands[name], envs[name])
                    if round_:  # the first round warms the caches (bytecode, page cache)
                        times[name].append(elapsed)
                        cpu[name].append(used)
        finally:
            stack.down()
    load_after = os.getloadavg()

    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    ratio = median["users get"] / median["bare boto3 GetItem"]
    ratio_cpu = median_cpu["users get"] / median_cpu["bare boto3 GetItem"]
    met_doctor = median["doctor"] <= DOCTOR_LIMIT
    met_ratio = ratio <= USERS_GET_RATIO_LIMIT
    print("| process | runs | wall: median | min | max | CPU: median |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in times.items():
        print(
            f"| {name} | {len(values)} | {median[name]:.3f} s | {min(values):.3f} s | "
            f"{max(values):.3f} s | {median_cpu[name]:.3f} s |"
        )
    print()
    print("| target | measured (wall) | CPU | limit | met |\n|---|---|---|---|---|")
    print(
        f"| doctor, median | {median['doctor']:.3f} s | {median_cpu['doctor']:.3f} s | "
        f"≤ {DOCTOR_LIMIT} s | {'yes' if met_doctor else 'NO'} |"
    )
    print(
        f"| users get / bare boto3, medians | {ratio:.2f}x | {ratio_cpu:.2f}x | "
        f"≤ {USERS_GET_RATIO_LIMIT}x | {'yes' if met_ratio else 'NO'} |"
    )
    print(
        "load average (1, 5, 15 min): before "
        + ", ".join(f"{x:.2f}" for x in load_before)
        + "; after "
        + ", ".join(f"{x:.2f}" for x in load_after)
        + f"; {os.cpu_count()} CPUs"
    )
    return 0 if met_doctor and met_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
