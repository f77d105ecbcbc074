"""Turning the library's data into what a person reads (rich) or a script reads (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from livekart_users.doctor import Result
    from livekart_users.logs import Invocation, Window

# rich is imported when something is drawn, not with this module: `users get --json` and the
# other JSON outputs never load it (≈ 40 ms of a command's start, see docs/performance.md).


def _table(*args: Any, **kwargs: Any) -> Table:
    from rich.table import Table

    return Table(*args, **kwargs)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


RECORD_COLUMNS = (
    "user_id",
    "email",
    "name",
    "role",
    "emailVerified",
    "phoneNumber",
    "storeName",
    "lastLoginAt",
)


def to_json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return int(obj) if obj == obj.to_integral_value() else float(obj)
        if isinstance(obj, set | frozenset):
            return sorted(obj)
        return str(obj)

    return json.dumps(value, default=default, indent=2, sort_keys=True)


def cell(value: Any) -> str:
    if value is None:
        return "[dim]null[/dim]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return (
            to_json(value).replace("\n", " ")
            if value
            else ("[]" if isinstance(value, list) else "{}")
        )
    return str(value)


def records_table(records: Iterable[Mapping[str, Any]], title: str) -> Table:
    rows = list(records)
    table = _table(title=title, show_lines=False)
    columns = [c for c in RECORD_COLUMNS if c != "storeName" or any(c in r for r in rows)]
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "user_id")
    for row in rows:
        table.add_row(*[cell(row.get(c)) if c in row else "[dim]-[/dim]" for c in columns])
    return table


def record_detail(record: Mapping[str, Any], title: str) -> Table:
    table = _table(title=title, show_header=True)
    table.add_column("attribute")
    table.add_column("value", overflow="fold")
    for key in sorted(record):
        table.add_row(key, cell(record[key]))
    return table


def print_status(console: Console, status: Any) -> None:
    table = _table(title=f"local stack ({status.directory})")
    table.add_column("service")
    table.add_column("state")
    table.add_column("endpoint")
    names = {
        "dynamodb": ("DynamoDB Local", "dynamodb"),
        "cognito": ("Cognito (a proxy: one write at a time)", "cognito-idp"),
        "cognito-local": ("cognito-local (behind the proxy)", "cognito-local"),
        "endpoint": ("Lambda Invoke endpoint", "lambda"),
    }
    for service, (label, key) in names.items():
        state = "[green]running[/green]" if status.running.get(service) else "[red]stopped[/red]"
        table.add_row(label, state, status.endpoints.get(key, "-"))
    console.print(table)
    if status.user_pool_id:
        console.print(
            f"user pool [bold]{status.user_pool_id}[/bold], app client "
            f"[bold]{status.client_id}[/bold], table [bold]{status.table}[/bold]"
        )


ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "red", "no change": "dim"}


def plan_table(plan: Any, title: str) -> Table:
    """A deploy or destroy plan: one row per step, with its reason."""
    table = _table(title=title)
    table.add_column("resource", overflow="fold")
    table.add_column("action")
    table.add_column("why", overflow="fold")
    for step in plan.steps:
        style = ACTION_STYLES.get(step.action, "")
        table.add_row(step.resource, f"[{style}]{step.action}[/{style}]", step.reason)
    return table


# --- doctor ------------------------------------------------------------------------------

DOCTOR_MARKS = {
    "pass": "[green]✓ pass[/green]",
    "warn": "[yellow]! warn[/yellow]",
    "fail": "[red]✗ fail[/red]",
    "skip": "[dim]- skip[/dim]",
}


def print_doctor(console: Console, results: Sequence[Result], heading: str) -> None:
    """One row per check, its fix beneath the finding: as readable in a CI log as in a terminal."""
    table = _table(
        title=_escape(heading), title_justify="left", box=None, show_header=False, pad_edge=False
    )
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding", overflow="fold")
    for r in results:
        finding = _escape(r.finding) + (f"\n[bold]fix:[/bold] {_escape(r.fix)}" if r.fix else "")
        table.add_row(DOCTOR_MARKS[r.status], r.name, finding)
    console.print(table, highlight=False)
    counts = doctor_summary(results)
    console.print(
        ", ".join(f"{counts[s]} {s}" for s in ("fail", "warn", "pass", "skip") if counts[s]),
        highlight=False,
    )


def doctor_summary(results: Iterable[Result]) -> dict[str, int]:
    counts = dict.fromkeys(DOCTOR_MARKS, 0)
    for r in results:
        counts[str(r.status)] += 1
    return counts


def doctor_json(
    results: Sequence[Result],
    *,
    exit_code: int,
    target: Mapping[str, Any],
    fixed: Iterable[Any] | None = None,
    refused: Mapping[str, str] | None = None,
) -> str:
    """doctor's results for scripts and CI: stable keys, one object."""
    document: dict[str, Any] = {
        "exit_code": exit_code,
        "status": "fail" if exit_code else "pass",
        "target": dict(target),
        "summary": doctor_summary(results),
        "checks": [
            {"name": r.name, "status": str(r.status), "finding": r.finding, "fix": r.fix}
            for r in results
        ],
    }
    if fixed is not None:
        document["fixed"] = [
            {"resource": s.resource, "action": s.action, "reason": s.reason} for s in fixed
        ]
        document["refused"] = dict(refused or {})
    return to_json(document)


def doctor_error_json(message: str) -> str:
    return to_json({"exit_code": 2, "status": "error", "error": message})


def print_fix_plan(console: Console, steps: Sequence[Any], refused: Mapping[str, str]) -> None:
    """What `doctor --fix` is about to change (deploy's plan), and what it will not touch."""
    changes = [s for s in steps if s.action != "no change"]
    table = _table(
        title=f"--fix: {len(changes)} change(s), through deploy's plan",
        title_justify="left",
        box=None,
        show_header=False,
        pad_edge=False,
    )
    table.add_column("action", no_wrap=True)
    table.add_column("resource", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for step in changes:
        table.add_row(step.action, _escape(step.resource), _escape(step.reason))
    for slot, arn in sorted(refused.items()):
        table.add_row("[yellow]refused[/yellow]", slot, f"it runs {_escape(arn)}, another function")
    console.print(table, highlight=False)


# --- users and reconcile -------------------------------------------------------------------

USER_COLUMNS = (
    "user_id",
    "email",
    "name",
    "role",
    "status",
    "emailVerified",
    "lastLoginAt",
)


def to_json_line(value: Any) -> str:
    """One compact line of JSON (JSON Lines, for scripts)."""
    return json.dumps(json.loads(to_json(value)), separators=(",", ":"), sort_keys=True)


def data_cell(value: Any) -> str:
    """`cell`, with the user's own text escaped: a name like "[bold]" is not markup."""
    from rich.markup import escape as escape_markup

    if value is None or isinstance(value, bool):
        return cell(value)
    return escape_markup(cell(value))


def users_table(rows: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    """Users as rows of a table, with the same columns whatever the rows hold."""
    table = _table(title=title)
    for column in USER_COLUMNS:
        table.add_column(column, overflow="fold", no_wrap=column == "user_id")
    for row in rows:
        table.add_row(
            *[data_cell(row.get(c)) if c in row else "[dim]-[/dim]" for c in USER_COLUMNS]
        )
    return table


def user_detail(record: Mapping[str, Any], title: str) -> Table:
    """Every attribute of one user's row."""
    table = _table(title=title)
    table.add_column("attribute")
    table.add_column("value", overflow="fold")
    for key in sorted(record):
        table.add_row(data_cell(key), data_cell(record[key]))
    return table


def print_users(console: Console, rows: Iterable[Mapping[str, Any]], chunk: int = 100) -> int:
    """Print users as they come, `chunk` to a table (never all in memory); how many."""
    shown = 0
    batch: list[Mapping[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            console.print(users_table(batch, f"users {shown + 1} to {shown + len(batch)}"))
            shown += len(batch)
            batch = []
    if batch:
        title = f"users {shown + 1} to {shown + len(batch)}" if shown else None
        console.print(users_table(batch, title))
        shown += len(batch)
    return shown


class ReconcileProgress:
    """Progress bars for a reconcile on a terminal; does nothing when not enabled."""

    LABELS: Mapping[str, str] = {
        "table": "reading the table",
        "pool": "listing the pool",
        "writes": "writes done",
        "settle": "users held back",
        "orphans": "checking orphans",
    }

    def __init__(self, console: Console, *, enabled: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.enabled = enabled
        self._tasks: dict[str, Any] = {}
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not enabled,
        )

    def __enter__(self) -> ReconcileProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, event: Any) -> None:
        """Show a `reconcile.ProgressEvent`."""
        task = self._tasks.get(event.phase)
        total = event.total if event.total is None else max(event.total, event.done)
        if task is None:
            label = self.LABELS.get(event.phase, event.phase)
            self._tasks[event.phase] = self._progress.add_task(
                label, total=total, completed=event.done
            )
        else:
            self._progress.update(task, completed=event.done, total=total)

    def paused(self, ask: Any) -> Any:
        """Run `ask()` (a question to the user) with the bars out of the way."""
        self._progress.stop()
        try:
            return ask()
        finally:
            if self.enabled:
                self._progress.start()


def _outcome(report: Any, category: str) -> str:
    """What an applied run did about one category."""
    if category == "to create":
        done = f"created {report.created}"
        if report.already_existed:
            done += f", {report.already_existed} already existed (a sign-in got there first)"
        return done
    if category == "to refresh":
        done = f"refreshed {report.refreshed}"
        if report.changed_since_read:
            done += f", {report.changed_since_read} skipped: changed since read (next run)"
        return done
    if category == "orphan":
        if report.orphans_erased or (report.erasure_policy and report.orphans_kept):
            return (
                f"erased {report.orphans_erased} ({report.erasure_policy}), "
                f"kept {report.orphans_kept}"
            )
        if report.orphans_deleted or report.orphans_kept:
            return f"deleted {report.orphans_deleted}, kept {report.orphans_kept}"
        return "reported only (--erase-orphans or --delete-orphans to act)"
    if category == "marked deleted":
        return "left alone: erased when their user was deleted"
    if category == "moved":
        return "reported only: app data is not moved"
    if category == "unconfirmed":
        return "left alone: the trigger writes the row at confirmation"
    return "reported only"


def reconcile_summary(report: Any) -> Table:
    """The counts of a reconcile (a `reconcile.Report`), and what was done about each."""
    mode = "applied" if report.applied else "dry run: nothing changed"
    pool, name = data_cell(report.user_pool_id), data_cell(report.table)
    table = _table(title=f"reconcile {pool} ↔ {name} ({mode})")
    table.add_column("category")
    table.add_column("count", justify="right")
    if report.applied:
        table.add_column("done")
    for category, count in report.counts().items():
        cells = [category, str(count)]
        if report.applied:
            cells.append(_outcome(report, category) if count else "")
        table.add_row(*cells)
    table.add_row("[dim]in step[/dim]", f"[dim]{report.in_step}[/dim]", *([""] * report.applied))
    return table


def reconcile_examples(report: Any) -> Table | None:
    """Some users or rows of each category, by id; None when there are none."""
    if not report.examples:
        return None
    table = _table(title="examples")
    table.add_column("category")
    table.add_column("user_id", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for example in report.examples:
        table.add_row(example.category, data_cell(example.user_id), data_cell(example.detail))
    return table


def print_reconcile(console: Console, report: Any) -> None:
    console.print(reconcile_summary(report))
    examples = reconcile_examples(report)
    if examples is not None:
        console.print(examples)
    console.print(
        f"{report.rows} rows read in {report.table_seconds:.1f} s; {report.pool_users} users "
        f"listed in {report.pool_seconds:.1f} s ({report.list_requests} ListUsers "
        f"request{'' if report.list_requests == 1 else 's'}, "
        f"at most {report.rate:g}/s); {report.retries} retries after throttling or errors; "
        f"{report.seconds:.1f} s in all"
    )
    if not report.applied and (report.to_create or report.to_refresh):
        console.print("Nothing was changed: run again with [bold]--apply[/bold] to heal the table.")


_ROW_OUTCOMES: Mapping[str, str] = {
    "anonymized": "personal fields removed, marked deleted, app data kept",
    "deleted": "row deleted",
    "marked_deleted": "marked deleted, kept as it was",
    "already_erased": "already erased",
    "no_row": "no row",
}


def deletion(done: Any) -> str:
    """One line for `users delete` (an `erasure.Deletion`)."""
    cognito = (
        "deleted from Cognito" if done.cognito_user_deleted else "not in Cognito (already gone)"
    )
    row = _ROW_OUTCOMES.get(done.row, done.row)
    return f"user {data_cell(done.user_id)}: {cognito}; row: {row} (policy {done.policy})"


# --- logs --------------------------------------------------------------------------------

LOG_OUTCOME_STYLES = {
    "created": "green",
    "refreshed": "cyan",
    "already_exists": "blue",
    "ignored": "dim",
    "failed": "red",
    "timeout": "red",
    "function_error": "red",
}


def _log_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def log_cells(invocation: Invocation) -> list[str]:
    """An invocation's cells: time, trigger source, outcome, user id, error code, durations.
    Values from the log are escaped: a line is data, never markup."""
    outcome = invocation.outcome or "-"
    style = LOG_OUTCOME_STYLES.get(outcome, "yellow")
    return [
        invocation.time.strftime("%Y-%m-%d %H:%M:%S") + "Z",
        _escape(invocation.trigger_source or "-"),
        f"[{style}]{_escape(outcome)}[/{style}]",
        _escape(invocation.user_id or "-"),
        _escape(invocation.error_code or "-"),
        _log_ms(invocation.duration_ms),
        _log_ms(invocation.init_duration_ms),
    ]


LOG_COLUMNS = (
    "time (UTC)",
    "trigger source",
    "outcome",
    "user id",
    "error code",
    "duration",
    "initDuration",
)


def logs_table(invocations: Iterable[Invocation], title: str | None) -> Table:
    table = _table(title=title, title_justify="left")
    for column in LOG_COLUMNS:
        right = column in ("duration", "initDuration")
        table.add_column(column, justify="right" if right else "left", no_wrap=True)
    for invocation in invocations:
        table.add_row(*log_cells(invocation))
    return table


def print_logs_window(
    console: Console, notes: Console, window: Window, *, as_json: bool, follow: bool
) -> None:
    """A read of `--since`: a table (or JSON Lines on stdout, notes on stderr). Before
    --follow the rows are lines, so the ones that follow line up beneath them."""
    since = window.since.strftime("%Y-%m-%d %H:%M:%S") + "Z"
    count = len(window.invocations)
    heading = (
        f"{count} invocation{'' if count == 1 else 's'} since {since} in {_escape(window.source)}"
    )
    if as_json:
        for invocation in window.invocations:
            print_log_invocation(console, invocation, as_json=True)
    elif follow:
        console.print(heading, highlight=False)
        for invocation in window.invocations:
            print_log_invocation(console, invocation, as_json=False)
    elif window.invocations:
        console.print(heading, highlight=False)
        console.print(logs_table(window.invocations, None), highlight=False)
    else:
        console.print(f"no invocations since {since} in {_escape(window.source)}", highlight=False)
    if window.cut_short:
        notes.print(f"[yellow]window cut short:[/yellow] {_escape(window.cut_short)}")


LOG_WIDTHS = (20, 38, 14, 36, 22, 11, 11)


def print_log_invocation(console: Console, invocation: Invocation, *, as_json: bool) -> None:
    """One invocation on one line (for --follow and --json), never wrapped or cut."""
    if as_json:
        console.out(to_json_line(invocation.as_dict()), highlight=False)
        return
    plain = [
        invocation.time.strftime("%Y-%m-%d %H:%M:%S") + "Z",
        invocation.trigger_source or "-",
        invocation.outcome or "-",
        invocation.user_id or "-",
        invocation.error_code or "-",
        _log_ms(invocation.duration_ms),
        _log_ms(invocation.init_duration_ms),
    ]
    cells = [
        text.rjust(width) if index >= 5 else text.ljust(width)
        for index, (text, width) in enumerate(zip(plain, LOG_WIDTHS, strict=True))
    ]
    style = LOG_OUTCOME_STYLES.get(plain[2], "yellow")
    cells = [_escape(c) for c in cells]
    cells[2] = f"[{style}]{cells[2]}[/{style}]"
    console.print(" ".join(cells), highlight=False, soft_wrap=True)
