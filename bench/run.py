"""Benchmarks of the Cognito trigger against DynamoDB Local: `make bench`.

Starts an in-memory DynamoDB Local on a free 127.0.0.1 port, creates a table, and measures
1. warm: `triggers.handler` on a sign-up vs a bare conditional PutItem of the same item on the
   handler's own client (interleaved, after a warm-up);
2. cold: a fresh interpreter that imports the trigger and serves its first invocation vs one
   that does the same PutItem with bare boto3 (bench/cold.py; interleaved, first round
   dropped), and where import time goes (this machine's Python and full CPU; the cold start as
   Lambda runs it is bench/lambda_cold.py);
3. unreachable: how long the handler takes to return when DynamoDB refuses connections,
   accepts them and never answers, never completes the TCP handshake, or answers so slowly
   (a byte every 0.5 s) that no single read times out.
Every invocation creates a new user (a fresh `sub`), and every row is checked afterwards.
Counts are fixed and every wait has a timeout, so it ends by itself; it reaches nothing but
127.0.0.1. `--markdown` prints the results as the tables in docs/performance.md. The exit
status is 1 when a target is missed, 0 when all are met.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekart_users import aws, schema, triggers
from livekart_users.local import emulators, processes
from livekart_users.table import UsersTable, to_dynamo

BENCH = Path(__file__).resolve().parent
# The tests' sample events, inside the repository.
SIGNUP_EVENT = BENCH.parent / "tests" / "events" / "post-confirmation-signup-customer.json"
TABLE = "bench-users"
CONDITION = "attribute_not_exists(user_id)"
WARM_TARGET = 1.3  # handler median / PutItem median
COLD_TARGET = 1.3  # trigger cold start median / bare boto3 cold start median
UNREACHABLE_TARGET_MS = 2500.0  # worst return time with DynamoDB unreachable
CHILD_TIMEOUT = 60.0
# The slow endpoint: a byte at a time, each well inside the trigger's 1 s read timeout, until
# Cognito's own 5 s limit has passed.
TRICKLE_INTERVAL = 0.5
TRICKLE_FOR = 5.0
IMPORT_LINE = re.compile(
    r"^import time:\s+(?P<self>\d+) \|\s+(?P<cum>\d+) \| (?P<indent> *)(?P<name>\S+)$", re.M
)


class BenchError(Exception):
    """A run that measured the wrong thing (a row not written, a child that failed)."""


@dataclass
class Sample:
    benchmark: str
    variant: str
    ms: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.ms)

    @property
    def p95(self) -> float:  # nearest rank
        ordered = sorted(self.ms)
        return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]

    @property
    def max(self) -> float:
        return max(self.ms)


@dataclass
class Check:
    name: str
    measured: float
    limit: float
    unit: str

    @property
    def met(self) -> bool:
        return self.measured <= self.limit

    def row(self) -> list[str]:
        fmt = "{:.2f}x" if self.unit == "x" else "{:.0f} ms"
        return [
            self.name,
            fmt.format(self.measured),
            "≤ " + fmt.format(self.limit),
            "yes" if self.met else "NO",
        ]


# --- helpers ---------------------------------------------------------------------------------


def use_dynamodb_local(port: int) -> None:
    """Point boto3 (ours and the children's) at DynamoDB Local, never at AWS."""
    for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_ENDPOINT_URL"):
        os.environ.pop(variable, None)
    os.environ.pop("USERS_EXTRA_FIELDS", None)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_DYNAMODB": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "USERS_TABLE": TABLE,
        }
    )


def fresh_process_env(pycache: Path) -> dict[str, str]:
    """The cold starts' environment: every module from bytecode, as a pip-built package has.

    Bytecode goes to a cache of this run (the discarded first round fills it), not into src/:
    an editable install has none there, and PYTHONDONTWRITEBYTECODE may be set.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def handler_table() -> UsersTable:
    """The table (and client) the handler itself uses: the client it built for this
    environment."""
    return triggers._users_table(aws.Deadline(30))


def signup(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A sign-up event for a new user, and its sub."""
    sub = str(uuid.uuid4())
    event = copy.deepcopy(template)
    event["request"]["userAttributes"]["sub"] = sub
    return sub, event


def dynamo_item(event: dict[str, Any]) -> dict[str, Any]:
    """The row the handler would write for `event`, in DynamoDB's wire form."""
    attributes = event["request"]["userAttributes"]
    item = schema.new_record(attributes, event["userName"], timestamp=schema.now())
    wire: dict[str, Any] = to_dynamo(item)
    return wire


@contextlib.contextmanager
def stdout_to(path: str) -> Iterator[None]:
    """Send fd 1 to `path`: powertools' logger holds sys.stdout, so redirect below it."""
    sys.stdout.flush()
    saved = os.dup(1)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(target, 1)
    os.close(target)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def check_rows(table: UsersTable, subs: list[str], what: str) -> None:
    missing = sum(table.get(sub) is None for sub in subs)
    if missing:
        raise BenchError(f"{what}: {missing} of {len(subs)} rows were not written")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- 1. warm ---------------------------------------------------------------------------------


def warm(
    table: UsersTable, template: dict[str, Any], runs: int, warmup: int
) -> tuple[Sample, Sample]:
    handler_ms: list[float] = []
    put_ms: list[float] = []
    subs: list[str] = []

    def run_handler(keep: bool) -> None:
        sub, event = signup(template)
        started = time.perf_counter()
        triggers.handler(event, None)
        if keep:
            handler_ms.append((time.perf_counter() - started) * 1000)
            subs.append(sub)

    def run_put(keep: bool) -> None:
        sub, event = signup(template)
        item = dynamo_item(event)
        started = time.perf_counter()
        table.client.put_item(TableName=table.name, Item=item, ConditionExpression=CONDITION)
        if keep:
            put_ms.append((time.perf_counter() - started) * 1000)
            subs.append(sub)

    steps: tuple[Callable[[bool], None], ...]
    with stdout_to(os.devnull):
        for i in range(warmup + runs):
            steps = (run_handler, run_put) if i % 2 == 0 else (run_put, run_handler)
            for step in steps:
                step(i >= warmup)
    check_rows(table, subs, "warm")
    return (
        Sample("warm", "handler (sign-up)", handler_ms, "log + EMF lines to /dev/null"),
        Sample("warm", "bare conditional PutItem", put_ms, "same client, item pre-built"),
    )


# --- 2. cold ---------------------------------------------------------------------------------


def cold_once(
    table: UsersTable, template: dict[str, Any], mode: str, env: dict[str, str]
) -> tuple[float, float, int]:
    """One fresh process: start to end of first invocation (ms), import (ms), full GCs."""
    sub, event = signup(template)
    payload = json.dumps(dynamo_item(event) if mode == "bare" else event)
    started = time.time()
    child = subprocess.run(
        [sys.executable, str(BENCH / "cold.py"), mode, payload],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=False,
        env=env,
    )
    if child.returncode != 0:
        raise BenchError(f"cold {mode} exited {child.returncode}:\n{child.stderr[-2000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    check_rows(table, [sub], f"cold {mode}")
    return (result["ended"] - started) * 1000, result["import_s"] * 1000, result["full_gcs"]


COLD_MODES = {
    "trigger": "trigger: start → first invocation done",
    "bare": "bare boto3: start → first invocation done",
}


def cold(
    table: UsersTable, template: dict[str, Any], runs: int, env: dict[str, str]
) -> list[Sample]:
    modes = list(COLD_MODES)
    first: dict[str, list[float]] = {mode: [] for mode in modes}
    imports: dict[str, list[float]] = {mode: [] for mode in modes}
    full_gcs: dict[str, list[int]] = {mode: [] for mode in modes}
    for i in range(runs + 1):  # the first round only fills bytecode and page caches
        for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:
            total, imported, collections = cold_once(table, template, mode, env)
            if i > 0:
                first[mode].append(total)
                imports[mode].append(imported)
                full_gcs[mode].append(collections)
    return [
        *(
            Sample("cold", variant, first[mode], gc_note(full_gcs[mode]))
            for mode, variant in COLD_MODES.items()
        ),
        Sample("cold", "import livekart_users.triggers", imports["trigger"]),
        Sample("cold", "import boto3", imports["bare"]),
    ]


def gc_note(counts: list[int]) -> str:
    """How many full (generation-2) collections the processes had run by the end."""
    low, high = min(counts), max(counts)
    return f"full GCs by the end: {low}" + (f" to {high}" if high != low else "")


ImportLine = tuple[float, float, int, str]  # self ms, cumulative ms, depth, module


def importtime(code: str, env: dict[str, str]) -> list[ImportLine]:
    """The tree `python -X importtime -c CODE` prints, in its (post-)order."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
        check=True,
        env=env,
    ).stderr
    return [
        (int(m["self"]) / 1000, int(m["cum"]) / 1000, len(m["indent"]) // 2, m["name"])
        for m in IMPORT_LINE.finditer(err)
    ]


def by_package(lines: list[ImportLine]) -> dict[str, float]:
    """Self time summed by top-level package, the standard library as one."""
    totals: dict[str, float] = {}
    for self_ms, _, _, name in lines:
        top = name.split(".")[0]
        top = "(stdlib)" if top in sys.stdlib_module_names else top
        totals[top] = totals.get(top, 0.0) + self_ms
    return totals


def direct_imports(lines: list[ImportLine], module: str) -> dict[str, float]:
    """Cumulative time of `module` and of each import it makes itself (its tree children)."""
    end = next(i for i, (_, _, depth, name) in enumerate(lines) if (depth, name) == (0, module))
    found = {f"{module} (all of it)": lines[end][1]}
    for _, cumulative, depth, name in reversed(lines[:end]):
        if depth == 0:
            break
        if depth == 1:
            found[name] = cumulative
    return found


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set().union(*runs)
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in keys}


def import_breakdown(env: dict[str, str], runs: int = 9) -> tuple[list[list[str]], list[list[str]]]:
    """Medians in ms: self time by package, trigger vs boto3 alone; and what the trigger's own
    imports add once boto3 is imported (the marginal cost of the trigger over a bare handler).
    """
    module = "livekart_users.triggers"
    trigger_runs, bare_runs, after_boto3_runs = [], [], []
    for _ in range(runs):  # interleaved
        trigger_runs.append(importtime(f"import {module}", env))
        bare_runs.append(importtime("import boto3", env))
        after_boto3_runs.append(importtime(f"import boto3; import {module}", env))
    trigger = medians([by_package(lines) for lines in trigger_runs])
    bare = medians([by_package(lines) for lines in bare_runs])
    packages: list[list[str]] = []
    other = [0.0, 0.0]
    for package, spent in sorted(trigger.items(), key=lambda kv: -kv[1]):
        base = bare.get(package, 0.0)
        if spent >= 1 or abs(spent - base) >= 1:
            packages.append([package, ms(spent), ms(base), f"{spent - base:+.1f}"])
        else:
            other = [other[0] + spent, other[1] + base]
    total, base_total = sum(trigger.values()), sum(bare.values())
    packages += [
        ["(others, < 1 ms each)", ms(other[0]), ms(other[1]), f"{other[0] - other[1]:+.1f}"],
        ["total", ms(total), ms(base_total), f"{total - base_total:+.1f}"],
    ]
    added = medians([direct_imports(lines, module) for lines in after_boto3_runs])
    own = [[name, ms(spent)] for name, spent in sorted(added.items(), key=lambda kv: -kv[1])]
    return packages, own


# --- 3. unreachable --------------------------------------------------------------------------


@contextlib.contextmanager
def refusing() -> Iterator[int]:
    """A port nothing listens on: connections are refused at once."""
    port = processes.free_port()
    if processes.is_listening(port):
        raise BenchError(f"port {port} was taken")
    yield port


@contextlib.contextmanager
def serving(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A server on 127.0.0.1 whose thread hands each connection it accepts to `handle`."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                connection = listener.accept()[0]
                connection.settimeout(2)
                held.append(connection)
                handle(connection, done)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join(timeout=TRICKLE_FOR + 2)
        for connection in held:
            connection.close()
        listener.close()


def never_answer(connection: socket.socket, done: threading.Event) -> None:
    """Keep the connection open; never read from it, never answer."""


def trickle(connection: socket.socket, done: threading.Event) -> None:
    """Answer a byte every 0.5 s for 5 s, then hang up: each read is quick, the status line
    never ends (so the client sees a closed connection, never an answer)."""
    answer = b"HTTP/1.1 503 Service Unavailable\r\n"
    with contextlib.suppress(OSError):
        connection.recv(65536)
        ends = time.monotonic() + TRICKLE_FOR
        for byte in answer:
            if time.monotonic() >= ends or done.wait(TRICKLE_INTERVAL):
                break
            connection.sendall(bytes([byte]))
    connection.close()


@contextlib.contextmanager
def handshake_hangs() -> Iterator[int]:
    """A listener whose accept queue is full: Linux drops new SYNs, so connect() hangs."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = int(listener.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)
    try:
        yield port
    finally:
        filler.close()
        listener.close()


def outcomes(log: Path) -> str:
    """The distinct outcomes and error codes in the handler's log lines."""
    seen: set[str] = set()
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and "outcome" in entry:
                codes = [entry.get(k) for k in ("error_code", "last_error_code")]
                seen.add(" / ".join([entry["outcome"], *(c for c in codes if c)]))
    return "; ".join(sorted(seen))


def unreachable(template: dict[str, Any], runs: int, tmp: Path) -> list[Sample]:
    cases: list[tuple[str, Callable[[], contextlib.AbstractContextManager[int]]]] = [
        ("connection refused", refusing),
        ("accepts, never answers", lambda: serving(never_answer)),
        ("TCP handshake never completes", handshake_hangs),
        ("answers a byte every 0.5 s, for 5 s", lambda: serving(trickle)),
    ]
    endpoint = os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    samples: list[Sample] = []
    try:
        for name, server in cases:
            log = tmp / f"unreachable-{len(samples)}.log"
            times: list[float] = []
            with server() as port:
                # A new endpoint is a new key of the handler's client cache: a new client.
                os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = f"http://127.0.0.1:{port}"
                with stdout_to(str(log)):
                    for _ in range(runs):
                        started = time.perf_counter()
                        triggers.handler(signup(template)[1], None)
                        times.append((time.perf_counter() - started) * 1000)
            samples.append(Sample("unreachable", name, times, outcomes(log)))
    finally:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = endpoint
    return samples


# --- report ----------------------------------------------------------------------------------


def machine(load_before: tuple[float, float, float]) -> list[list[str]]:
    java = shutil.which("java")
    java_line = "(no java)"
    if java:
        text = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=20, check=False
        ).stderr
        java_line = (text.splitlines() or ["?"])[0]
    cpu = "?"
    with contextlib.suppress(OSError):
        models = re.findall(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = models[0] if models else "?"
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("boto3", "botocore", "aws-lambda-powertools")
    )
    return [
        ["nproc", str(len(os.sched_getaffinity(0)))],
        ["cpu", cpu],
        ["os", platform.platform()],
        ["python", platform.python_version()],
        ["java", java_line],
        ["packages", versions],
        ["load average (1, 5, 15 min), before", " ".join(f"{v:.2f}" for v in load_before)],
        ["load average (1, 5, 15 min), at the end", " ".join(f"{v:.2f}" for v in os.getloadavg())],
    ]


def ms(value: float) -> str:
    return f"{value:.1f}"


def table_text(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [headers, ["---"] * len(headers), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)


def report(
    samples: list[Sample],
    checks: list[Check],
    imports: tuple[list[list[str]], list[list[str]]],
    load_before: tuple[float, float, float],
    markdown: bool,
) -> str:
    measured = [
        [s.benchmark, s.variant, str(len(s.ms)), ms(s.median), ms(s.p95), ms(s.max), s.note]
        for s in samples
    ]
    sections = [
        ("Machine", ["what", "value"], machine(load_before)),
        (
            "Measurements (ms)",
            ["benchmark", "variant", "runs", "median", "p95", "max", "notes"],
            measured,
        ),
        ("Targets", ["target", "measured", "limit", "met"], [c.row() for c in checks]),
        (
            "Import self time by package: python -X importtime, median of 9 (ms)",
            ["package", "import livekart_users.triggers", "import boto3", "difference"],
            imports[0],
        ),
        (
            "What livekart_users.triggers adds after `import boto3` (python -X importtime -c "
            '"import boto3; import livekart_users.triggers"), cumulative, median of 9 (ms)',
            ["import made by livekart_users.triggers", "cumulative"],
            imports[1],
        ),
    ]
    heading = "#### {}" if markdown else "== {} =="
    return "\n\n".join(
        heading.format(title) + "\n\n" + table_text(headers, rows, markdown)
        for title, headers, rows in sections
    )


def bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=bounded(10, 5000), default=300)
    parser.add_argument("--warmup", type=bounded(0, 1000), default=50)
    parser.add_argument("--cold-runs", type=bounded(3, 100), default=21)
    parser.add_argument("--unreachable-runs", type=bounded(1, 20), default=5)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    template = json.loads(SIGNUP_EVENT.read_text())
    load_before = os.getloadavg()
    if load_before[0] > len(os.sched_getaffinity(0)) / 2:
        progress(f"warning: load average {load_before[0]:.2f}: other work skews the ratios")

    with tempfile.TemporaryDirectory(prefix="livekart-bench-") as folder:
        tmp = Path(folder)
        port = processes.free_port()
        use_dynamodb_local(port)
        progress(f"starting DynamoDB Local on 127.0.0.1:{port}")
        env = fresh_process_env(tmp / "pycache")
        pid = emulators.start_dynamodb(port, log=tmp / "dynamodb.log")
        try:
            checker = UsersTable(aws.client("dynamodb"), TABLE)
            checker.create_table()
            progress(f"warm: {args.warmup} + {args.iterations} iterations of each")
            handler, put = warm(handler_table(), template, args.iterations, args.warmup)
            progress(f"cold: 1 + {args.cold_runs} fresh processes of each")
            cold_samples = cold(checker, template, args.cold_runs, env)
            progress("cold: python -X importtime")
            imports = import_breakdown(env)
            progress(f"unreachable: {args.unreachable_runs} invocations per case")
            down = unreachable(template, args.unreachable_runs, tmp)
        finally:
            processes.stop(pid)

    trigger_cold, bare_cold = cold_samples[:2]
    checks = [
        Check("warm: handler / PutItem (medians)", handler.median / put.median, WARM_TARGET, "x"),
        Check(
            "cold: trigger / bare boto3 (medians)",
            trigger_cold.median / bare_cold.median,
            COLD_TARGET,
            "x",
        ),
        *(
            Check(f"unreachable, {s.variant}: max", s.max, UNREACHABLE_TARGET_MS, "ms")
            for s in down
        ),
    ]
    print(report([handler, put, *cold_samples, *down], checks, imports, load_before, args.markdown))
    # A missed target is a failed run, so that `make bench` says so.
    return 0 if all(c.met for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
