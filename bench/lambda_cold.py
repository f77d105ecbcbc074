"""A cold sign-up as Lambda runs it: `make bench-lambda` (.venv/bin/python bench/lambda_cold.py).

Emulates the python3.13 runtime at a given memory size:
- python3.13 (found as `package` finds it), nothing on its path but the task folder and the
  runtime's SDK, `PYTHONDONTWRITEBYTECODE` as on a read-only `/var/task`;
- the task folder is the zip exactly as `livekart-users package` builds it, extracted and made
  read-only (we run as root, which ignores file modes, so the bench also checks afterwards
  that nothing was written in it);
- "the runtime's SDK" is the same boto3/botocore (all services' data), precompiled, in a
  folder of its own outside the task folder;
- CPU: a cgroup v1 `cpu` controller quota of MemorySize/1769 of one CPU (Lambda's ratio),
  where the machine permits one (root, /sys/fs/cgroup/cpu); skipped with the reason printed
  where not, and the results then say "no CPU quota";
- time: from just before the parent starts the process to the handler's return (wall clock),
  i.e. runtime start, init (imports, and whatever the module does at import) and the call.
The Lambda service's own work (placing the sandbox, fetching the code) is not emulated.

Per memory size, interleaved, first round dropped:
1. trigger: a sign-up (`PostConfirmation_ConfirmSignUp`, a fresh `sub`) against DynamoDB Local;
2. bare: the baseline, a handler on the runtime's SDK alone that builds its DynamoDB client at
   init and makes the same conditional PutItem in the call;
3. silent: the trigger's sign-up against an endpoint that accepts connections and never
   answers: process start to handler return.
Every row is checked afterwards. Exit status 1 when a target is missed at `--target-memory`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import run  # bench/run.py: shared helpers

from livekart_users import aws
from livekart_users.deploy import models, package
from livekart_users.local import emulators, processes
from livekart_users.table import UsersTable

BENCH = Path(__file__).resolve().parent
RUNTIME = BENCH / "lambda_runtime.py"
CGROUP_ROOT = Path("/sys/fs/cgroup/cpu")
CPU_PERIOD_US = 100_000
MB_PER_VCPU = 1769
CHILD_TIMEOUT = 60.0
FUNCTION_TIMEOUT = float(models.TIMEOUT_SECONDS)
COLD_LIMIT_S = 1.0  # median cold sign-up at the deployed memory
COLD_RATIO = 1.05  # trigger median / bare median
SILENT_LIMIT_S = 4.5  # DynamoDB never answers: process start to handler return
# The wall time a process would take if the quota were all that slowed it (no other load):
# its CPU time divided by its share of a CPU. Load on a shared machine stretches the wall
# times, not this.
PROJECTED_NOTE = "load-independent estimate"
BARE_HANDLER = """
import os

import boto3

client = boto3.client("dynamodb")


def handler(event, context):
    client.put_item(
        TableName=os.environ["USERS_TABLE"],
        Item=event["item"],
        ConditionExpression="attribute_not_exists(user_id)",
    )
    return event
"""


# --- the folders ------------------------------------------------------------------------------


def extract_read_only(data: bytes, root: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(root)
    for path in sorted(root.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    root.chmod(0o555)


def files_under(root: Path) -> int:
    return sum(1 for _ in root.rglob("*"))


def runtime_sdk(root: Path, python: str) -> None:
    """The SDK as the runtime has it: every service's data, compiled, outside /var/task."""
    files: dict[str, bytes] = {}
    for name in package.SDK:
        files.update(package.distribution_files(name, models.DEFAULT_ARCHITECTURE, None))
    files.update(package.bytecode(files, python))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


def bare_task(root: Path, python: str) -> None:
    root.mkdir(parents=True)
    files = {"bare_handler.py": BARE_HANDLER.encode()}
    files.update(package.bytecode(files, python))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)


# --- CPU quota -------------------------------------------------------------------------------


def quota_refused() -> str | None:
    """Why no cgroup CPU quota can be set here, or None when one can."""
    if not (CGROUP_ROOT / "cpu.cfs_quota_us").exists():
        return f"no cgroup v1 cpu controller at {CGROUP_ROOT}"
    if not os.access(CGROUP_ROOT, os.W_OK):
        return f"{CGROUP_ROOT} is not writable (run as root for the CPU quota)"
    return None


@contextlib.contextmanager
def cpu_quota(memory_mb: int, enabled: bool) -> Iterator[Path | None]:
    """A cgroup whose processes get memory_mb/1769 of one CPU, as Lambda gives."""
    if not enabled:
        yield None
        return
    group = CGROUP_ROOT / f"livekart-bench-{os.getpid()}-{memory_mb}"
    group.mkdir()
    try:
        (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        quota = max(1000, round(CPU_PERIOD_US * memory_mb / MB_PER_VCPU))
        (group / "cpu.cfs_quota_us").write_text(str(quota))
        yield group
    finally:
        # Our children have exited: the group is empty and can go.
        for _ in range(50):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


# --- one cold start ----------------------------------------------------------------------------


def child_env(path: list[Path], memory_mb: int, endpoint: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONDONTWRITEBYTECODE": "1",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "USERS_TABLE": os.environ["USERS_TABLE"],
        "POWERTOOLS_SERVICE_NAME": "livekart-users",
        "AWS_LAMBDA_FUNCTION_NAME": "livekart-bench",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "LAMBDA_TASK_ROOT": str(path[0]),
    }


def cold_once(
    python: str, handler: str, event: dict[str, Any], env: dict[str, str], group: Path | None
) -> tuple[float, float, float, list[dict[str, Any]]]:
    """Process start to handler return, init, and CPU time to the return (s), and the JSON
    lines it logged."""

    def join_group() -> None:  # in the child, before exec: the whole process is limited
        if group is not None:
            (group / "cgroup.procs").write_text(str(os.getpid()))

    started = time.time()
    child = subprocess.run(
        [python, str(RUNTIME), handler, str(FUNCTION_TIMEOUT)],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        env=env,
        preexec_fn=join_group,
    )
    if child.returncode != 0:
        raise run.BenchError(f"{handler} exited {child.returncode}:\n{child.stderr[-2000:]}")
    lines = child.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    logged = []
    for line in lines[:-1]:
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "outcome" in entry:
                logged.append(entry)
    return result["ended"] - started, result["init_s"], result["cpu_s"], logged


def at_memory(
    memory_mb: int,
    runs: int,
    silent_runs: int,
    folders: dict[str, Path],
    python: str,
    template: dict[str, Any],
    checker: UsersTable,
    quota: bool,
    silent_endpoint: str,
) -> list[run.Sample]:
    endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    trigger_env = child_env([folders["task"], folders["runtime"]], memory_mb, endpoint)
    bare_env = child_env([folders["bare"], folders["runtime"]], memory_mb, endpoint)
    silent_env = child_env([folders["task"], folders["runtime"]], memory_mb, silent_endpoint)
    times: dict[str, list[float]] = {"trigger": [], "bare": [], "silent": []}
    inits: dict[str, list[float]] = {"trigger": [], "bare": []}
    cpus: dict[str, list[float]] = {"trigger": [], "bare": []}
    outcomes: set[str] = set()
    written: dict[str, int] = {}
    subs: list[str] = []

    def trigger(keep: bool) -> None:
        sub, event = run.signup(template)
        total, init, cpu, logged = cold_once(python, models.HANDLER, event, trigger_env, group)
        [outcome] = [line.get("outcome") for line in logged] or ["(no log line)"]
        if keep:
            times["trigger"].append(total)
            inits["trigger"].append(init)
            cpus["trigger"].append(cpu)
            written[str(outcome)] = written.get(str(outcome), 0) + 1
            if outcome == "created":  # a write cut short by the deadline is reported
                subs.append(sub)

    def bare(keep: bool) -> None:
        sub, event = run.signup(template)
        total, init, cpu, _ = cold_once(
            python, "bare_handler.handler", {"item": run.dynamo_item(event)}, bare_env, group
        )
        if keep:
            times["bare"].append(total)
            inits["bare"].append(init)
            cpus["bare"].append(cpu)
            subs.append(sub)

    def silent(keep: bool) -> None:
        total, _, _, logged = cold_once(
            python, models.HANDLER, run.signup(template)[1], silent_env, group
        )
        for line in logged:
            codes = [line.get(k) for k in ("error_code", "last_error_code")]
            outcomes.add(" / ".join([line["outcome"], *(c for c in codes if c)]))
        if keep:
            times["silent"].append(total)

    with cpu_quota(memory_mb, quota) as group:
        steps: list[Callable[[bool], None]] = [trigger, bare]
        for i in range(runs + 1):  # the first round only fills the page cache
            for step in steps if i % 2 == 0 else steps[::-1]:
                step(i > 0)
        for _ in range(silent_runs):
            silent(True)
    run.check_rows(checker, subs, f"cold at {memory_mb} MB")
    label = f"{memory_mb} MB" + ("" if quota else " (no CPU quota)")
    ms = {key: [t * 1000 for t in values] for key, values in times.items()}
    share = memory_mb / MB_PER_VCPU
    projected = {key: [c * 1000 / share for c in values] for key, values in cpus.items()}
    return [
        run.Sample(
            label,
            "trigger: start → handler returned",
            ms["trigger"],
            f"init median {statistics.median(inits['trigger']) * 1000:.0f} ms; "
            + ", ".join(f"{k} x{n}" for k, n in sorted(written.items())),
        ),
        run.Sample(
            label,
            "bare handler: start → handler returned",
            ms["bare"],
            f"init median {statistics.median(inits['bare']) * 1000:.0f} ms",
        ),
        run.Sample(
            label,
            "trigger, DynamoDB never answers: start → returned",
            ms["silent"],
            "; ".join(sorted(outcomes)),
        ),
        run.Sample(
            label,
            "trigger: CPU time to return / CPU share",
            projected["trigger"],
            PROJECTED_NOTE,
        ),
        run.Sample(
            label,
            "bare handler: CPU time to return / CPU share",
            projected["bare"],
            PROJECTED_NOTE,
        ),
    ]


def checks(samples: list[run.Sample], memory_mb: int) -> list[run.Check]:
    found = [s for s in samples if s.benchmark.startswith(f"{memory_mb} MB")]
    if not found:
        return []
    trigger, bare, silent, trigger_cpu, bare_cpu = found
    label = f"{memory_mb} MB"
    limit_ms = COLD_LIMIT_S * 1000
    return [
        run.Check(f"{label}: cold sign-up, median", trigger.median, limit_ms, "ms"),
        run.Check(
            f"{label}: trigger / bare (medians)", trigger.median / bare.median, COLD_RATIO, "x"
        ),
        run.Check(f"{label}: DynamoDB never answers, max", silent.max, SILENT_LIMIT_S * 1000, "ms"),
        run.Check(
            f"{label}: cold sign-up, CPU / share, median", trigger_cpu.median, limit_ms, "ms"
        ),
        run.Check(
            f"{label}: trigger / bare, CPU (medians)",
            trigger_cpu.median / bare_cpu.median,
            COLD_RATIO,
            "x",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--memory", type=run.bounded(128, 10240), nargs="+", default=[models.MEMORY_MB]
    )
    parser.add_argument(
        "--target-memory",
        type=int,
        default=models.MEMORY_MB,
        help="the memory size the targets apply to (deploy's default)",
    )
    parser.add_argument("--runs", type=run.bounded(3, 100), default=11)
    parser.add_argument("--silent-runs", type=run.bounded(1, 20), default=3)
    parser.add_argument(
        "--strip-bytecode",
        action="store_true",
        help="what-if: the zip without its bytecode (as it was before)",
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    python = package.runtime_python()
    refused = quota_refused()
    if refused:
        run.progress(f"no CPU quota: {refused}; times are this machine's full speed")
    template = json.loads(run.SIGNUP_EVENT.read_text())
    load_before = os.getloadavg()
    built = package.build_zip()
    data = built.data
    if args.strip_bytecode:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            kept = {n: archive.read(n) for n in archive.namelist() if not n.endswith(".pyc")}
        data = package._write_zip(kept)
    with tempfile.TemporaryDirectory(prefix="livekart-lambda-") as folder:
        tmp = Path(folder)
        folders = {"task": tmp / "task", "runtime": tmp / "runtime", "bare": tmp / "bare"}
        run.progress(f"zip: {len(data):,} bytes; runtime SDK and bare handler: compiling")
        extract_read_only(data, folders["task"])
        before = files_under(folders["task"])
        runtime_sdk(folders["runtime"], python)
        bare_task(folders["bare"], python)
        port = processes.free_port()
        run.use_dynamodb_local(port)
        pid = emulators.start_dynamodb(port, log=tmp / "dynamodb.log")
        samples: list[run.Sample] = []
        try:
            checker = UsersTable(aws.client("dynamodb"), run.TABLE)
            checker.create_table()
            with run.serving(run.never_answer) as silent_port:
                for memory in args.memory:
                    run.progress(f"{memory} MB: 1 + {args.runs} rounds, {args.silent_runs} silent")
                    samples += at_memory(
                        memory,
                        args.runs,
                        args.silent_runs,
                        folders,
                        python,
                        template,
                        checker,
                        refused is None,
                        f"http://127.0.0.1:{silent_port}",
                    )
        finally:
            processes.stop(pid)
        if files_under(folders["task"]) != before:
            raise run.BenchError("something was written into the read-only task folder")
        for path in folders["task"].rglob("*"):  # so that the temporary folder can go
            path.chmod(0o755 if path.is_dir() else 0o644)
        folders["task"].chmod(0o755)
    found = checks(samples, args.target_memory)
    machine = run.machine(load_before)
    version = subprocess.run(
        [python, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    machine.insert(4, ["python (emulated runtime)", f"{python} ({version})"])
    machine.insert(
        5,
        [
            "zip",
            f"{len(data):,} bytes, sha256 {built.sha256[:16]}…"
            + (" (bytecode stripped)" if args.strip_bytecode else ""),
        ],
    )
    machine.insert(
        6,
        [
            "CPU quota",
            "cgroup v1 cpu, MemorySize/1769 of one CPU" if refused is None else f"none: {refused}",
        ],
    )
    heading = "#### {}" if args.markdown else "== {} =="
    sections = [
        ("Machine", ["what", "value"], machine),
        (
            "Measurements (ms)",
            ["memory", "variant", "runs", "median", "p95", "max", "notes"],
            [
                [
                    s.benchmark,
                    s.variant,
                    str(len(s.ms)),
                    run.ms(s.median),
                    run.ms(s.p95),
                    run.ms(s.max),
                    s.note,
                ]
                for s in samples
            ],
        ),
        ("Targets", ["target", "measured", "limit", "met"], [c.row() for c in found]),
    ]
    print(
        "\n\n".join(
            heading.format(title) + "\n\n" + run.table_text(h, rows, args.markdown)
            for title, h, rows in sections
        )
    )
    return 0 if found and all(c.met for c in found) else 1


if __name__ == "__main__":
    sys.exit(main())
