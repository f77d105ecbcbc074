"""Turning the library's data into what a person reads (rich) or a script reads (JSON).

Tables are drawn only when they fit the console's width (COLUMNS, else the terminal, else 80):
a table squeezed narrower folds its cells, and would cut ids (user ids, pool ids, ARNs) across
lines. What does not fit is printed as indented lines instead, broken at spaces only, so an
id is always whole on one line, whatever the width.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from livekart_users.cli.visible_text import visible

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

    from livekart_users.doctor import Result
    from livekart_users.logs import Invocation, Window

# rich is imported when something is drawn, not with this module: `users get --json` and the
# other JSON outputs never load it (≈ 40 ms of a command's start, see docs/performance.md).


def _table(*args: Any, **kwargs: Any) -> Table:
    from rich.table import Table

    return Table(*args, **kwargs)


def _escape(text: str) -> str:
    """Text as it reads: no markup, no control character (see visible_text)."""
    from rich.markup import escape

    return escape(visible(text))


def _text(*args: Any, **kwargs: Any) -> Text:
    from rich.text import Text

    return Text(*args, **kwargs)


def _text_from_markup(markup: str) -> Text:
    from rich.text import Text

    return Text.from_markup(markup)


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


def fits(console: Console, renderable: RenderableType) -> bool:
    """`renderable` fits the console's width without folding any cell."""
    unbounded = console.options.update_width(1 << 16)  # measure() clamps to the width given
    return console.measure(renderable, options=unbounded).maximum <= console.width


def wrapped(text: str, width: int, indent: str = "") -> list[str]:
    """`text` in lines of at most `width`, broken at spaces only: no word (id) is ever cut.

    A word longer than the width gets a line of its own, and the terminal wraps it on screen.
    """
    return textwrap.wrap(
        text,
        width=max(width, len(indent) + 20),
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def _rewrapped(line: str, width: int) -> list[str]:
    """`line` broken at spaces to `width`, its continuation indented 4 more than it is."""
    indent = line[: len(line) - len(line.lstrip())]
    first, *rest = wrapped(line.strip(), width - len(indent) - 4) or [""]
    return [indent + first, *[indent + "    " + r for r in rest]]


def print_lines(console: Console, lines: Iterable[str | Text]) -> None:
    """Print lines as they are: no markup read from data, no line broken by rich."""
    for line in lines:
        console.print(_text(line) if isinstance(line, str) else line, soft_wrap=True)


def print_commands(console: Console, steps: Sequence[tuple[str, str]]) -> None:
    """What to do next: each step's words broken at spaces, then its command on a line of
    its own, indented and never broken (copied, it is whole; the terminal wraps one longer
    than itself)."""
    for text, command in steps:
        if text:
            print_lines(console, wrapped(text, console.width))
        console.print(_text("    " + command, style="bold"), soft_wrap=True)


def print_table_or_lines(
    console: Console, table: Table, lines: Callable[[int], Iterable[str | Text]]
) -> None:
    """`table` when it fits the width, else `lines(width)`: indented lines broken at spaces
    only (README: a table that does not fit), so no id or address is ever cut."""
    if fits(console, table):
        console.print(table, highlight=False)
    else:
        print_lines(console, lines(console.width))


def plain(value: Any) -> str:
    """A value as text with no markup (for lines; `cell` is for tables)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(json.loads(to_json(value)), sort_keys=True) if value else str(value)
    return visible(str(value))


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
    return visible(str(value))


def records_table(records: Iterable[Mapping[str, Any]], title: str) -> Table:
    rows = list(records)
    table = _table(title=title, show_lines=False)
    columns = [c for c in RECORD_COLUMNS if c != "storeName" or any(c in r for r in rows)]
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "user_id")
    for row in rows:
        table.add_row(*[cell(row.get(c)) if c in row else "[dim]-[/dim]" for c in columns])
    return table


def print_records(console: Console, records: Iterable[Mapping[str, Any]], title: str) -> None:
    """Rows as the trigger wrote them (the demo): a table when it fits, else lines."""
    rows = list(records)
    print_table_or_lines(
        console,
        records_table(rows, title),
        lambda width: [
            _text(title, style="bold"),
            *[line for row in rows for line in user_lines(row, width)],
        ],
    )


def print_status(console: Console, status: Any) -> None:
    # The folder above the table, not as its title: rich folds a title mid-path.
    print_lines(console, wrapped(f"local stack in {visible(status.directory)}", console.width))
    table = _table()
    table.add_column("service")
    table.add_column("state")
    table.add_column("endpoint")
    names = {
        "dynamodb": ("DynamoDB Local", "dynamodb"),
        "cognito": ("Cognito (a proxy: one write at a time)", "cognito-idp"),
        "cognito-local": ("cognito-local (behind the proxy)", "cognito-local"),
        "endpoint": ("Lambda Invoke endpoint", "lambda"),
    }
    lines = []
    for service, (label, key) in names.items():
        running = status.running.get(service)
        state = "[green]running[/green]" if running else "[red]stopped[/red]"
        table.add_row(label, state, status.endpoints.get(key, "-"))
        where = status.endpoints.get(key, "-")
        lines.append(f"    {label}: {'running' if running else 'stopped'} {where}")
    print_table_or_lines(
        console, table, lambda width: [ln for line in lines for ln in _rewrapped(line, width)]
    )
    if status.user_pool_id:
        console.print(
            f"user pool [bold]{status.user_pool_id}[/bold], app client "
            f"[bold]{status.client_id}[/bold], table [bold]{status.table}[/bold]"
        )


def local_up_json(
    status: Any, listening: Mapping[str, Sequence[str]], exposed: Mapping[str, Sequence[str]]
) -> str:
    """`local up --json`: the stack's status, and the addresses each service listens on."""
    return to_json(
        {
            **vars(status),
            "all_running": status.all_running,
            "listening": dict(listening),
            "exposed": dict(exposed),
        }
    )


def print_exposed(
    console: Console, exposed: Mapping[str, Sequence[str]], endpoints: Mapping[str, str]
) -> None:
    """One line per service that other machines can reach, and what the user can do."""
    from urllib.parse import urlsplit

    for service, addresses in exposed.items():
        port = urlsplit(endpoints[service]).port
        console.print(
            f"[yellow]warning:[/yellow] {service} listens on {', '.join(addresses)} port {port}, "
            f"which other machines can reach (it could not be kept to 127.0.0.1): block inbound "
            f"TCP port {port} in your firewall, or stop the stack on networks you do not trust",
            highlight=False,
            soft_wrap=True,  # one line, whatever the width
        )


def attach_json(target: Any, arn: str, changed: Sequence[str], refused: Mapping[str, str]) -> str:
    """`attach --json`: which trigger slots now point at the function, which were refused."""
    return to_json(
        {
            "user_pool_id": target.user_pool_id,
            "region": target.region,
            "function": target.function,
            "function_arn": arn,
            "changed": list(changed),
            "refused": dict(refused),
            "outcome": "changed" if changed else "no change",
        }
    )


def detach_json(target: Any, emptied: Sequence[str]) -> str:
    """`detach --json`: which trigger slots no longer name the function."""
    return to_json(
        {
            "user_pool_id": target.user_pool_id,
            "region": target.region,
            "function": target.function,
            "detached": list(emptied),
            "outcome": "detached" if emptied else "no change",
        }
    )


def package_json(output: Any, built: Any, architecture: str, bundle_sdk: bool) -> str:
    """`package --json`: where the zip is and what identifies it."""
    return to_json(
        {
            "output": str(output),
            "size": built.size,
            "sha256": built.sha256,
            "code_sha256": built.code_sha256,
            "architecture": architecture,
            "bundle_sdk": bundle_sdk,
            "distributions": dict(built.distributions),
        }
    )


ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "red", "no change": "dim"}


def plan_table(plan: Any, title: str) -> Table:
    """A deploy or destroy plan: one row per step, with its reason."""
    table = _table(title=_escape(title))
    table.add_column("resource", overflow="fold")
    table.add_column("action")
    table.add_column("why", overflow="fold")
    for step in plan.steps:
        style = ACTION_STYLES.get(step.action, "")
        action = f"[{style}]{step.action}[/{style}]"
        table.add_row(_escape(step.resource), action, _escape(step.reason))
    return table


def print_plan(console: Console, plan: Any, title: str) -> None:
    """The plan as a table when it fits; else each step as its action, resource and reason."""
    table = plan_table(plan, title)
    if fits(console, table):
        console.print(table)
        return
    width = max((len(step.action) for step in plan.steps), default=0) + 2
    lines: list[str | Text] = [_text(title, style="bold")]
    for step in plan.steps:
        first, *rest = wrapped(step.resource, console.width - width)
        head = _text(f"{step.action:<{width}}", style=ACTION_STYLES.get(step.action, ""))
        lines.append(head + _text(first))
        lines += [" " * width + line for line in rest]
        lines += wrapped(step.reason, console.width, " " * width)
    print_lines(console, lines)


def plan_json(
    plan: Any,
    *,
    command: str,
    dry_run: bool,
    applied: Sequence[Any] = (),
    error: str | None = None,
) -> str:
    """deploy's or destroy's plan and what was done, for scripts: stable keys, one object."""

    def step(s: Any) -> dict[str, str]:
        return {"resource": s.resource, "action": s.action, "reason": s.reason}

    if error is not None:
        outcome = "failed"
    elif not plan.changes:
        outcome = "no changes"
    else:
        outcome = "planned" if dry_run else "applied"
    return to_json(
        {
            "command": command,
            "dry_run": dry_run,
            "outcome": outcome,
            "error": error,
            "user_pool_id": plan.target.user_pool_id,
            "region": plan.target.region,
            "account": plan.target.account,
            "steps": [step(s) for s in plan.steps],
            "changes": len(plan.changes),
            "applied": [step(s) for s in applied],
            "refused": dict(plan.refused),
            "notices": [
                {"resource": n.resource, "message": n.message, "fix": n.fix} for n in plan.notices
            ],
        }
    )


# --- doctor ------------------------------------------------------------------------------

DOCTOR_MARKS = {
    "pass": "[green]✓ pass[/green]",
    "warn": "[yellow]! warn[/yellow]",
    "fail": "[red]✗ fail[/red]",
    "skip": "[dim]- skip[/dim]",
}


def print_doctor(console: Console, results: Sequence[Result], heading: str) -> None:
    """One row per check, its fix beneath the finding: as readable in a CI log as in a terminal.

    The finding column wraps at spaces; when a word of it (an ARN) would not fit that column,
    each check is printed as lines instead, so no id is cut.
    """
    mark_width = max((len(_text_from_markup(m)) for m in DOCTOR_MARKS.values()), default=0)
    name_width = max((len(r.name) for r in results), default=0)
    room = console.width - mark_width - name_width - 4  # two gaps of two spaces
    texts = [r.finding + (f" fix: {r.fix}" if r.fix else "") for r in results]
    if max((len(word) for text in texts for word in text.split()), default=0) > room:
        _print_doctor_lines(console, results, heading, mark_width)
    else:
        console.print(_doctor_table(results, heading), highlight=False)
    counts = doctor_summary(results)
    console.print(
        ", ".join(f"{counts[s]} {s}" for s in ("fail", "warn", "pass", "skip") if counts[s]),
        highlight=False,
    )


def _doctor_table(results: Sequence[Result], heading: str) -> Table:
    table = _table(
        title=_escape(heading), title_justify="left", box=None, show_header=False, pad_edge=False
    )
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding", overflow="fold")
    for r in results:
        finding = _escape(r.finding) + (f"\n[bold]fix:[/bold] {_escape(r.fix)}" if r.fix else "")
        table.add_row(DOCTOR_MARKS[r.status], r.name, finding)
    return table


def _print_doctor_lines(
    console: Console, results: Sequence[Result], heading: str, mark_width: int
) -> None:
    indent = " " * (mark_width + 2)
    lines: list[str | Text] = [*wrapped(heading, console.width)]
    for r in results:
        mark = _text_from_markup(DOCTOR_MARKS[r.status])
        lines.append(mark + _text(" " * (mark_width - len(mark) + 2) + r.name))
        lines += wrapped(r.finding, console.width, indent)
        if r.fix:
            lines += wrapped(f"fix: {r.fix}", console.width, indent)
    print_lines(console, lines)


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


def print_fix_plan(console: Console, steps: Sequence[Any], refused: Mapping[str, str]) -> None:
    """What `doctor --fix` is about to change (deploy's plan), and what it will not touch.

    A table while its reasons can wrap at spaces; else lines, so no resource or ARN is cut.
    """
    changes = [s for s in steps if s.action != "no change"]
    title = f"--fix: {len(changes)} change(s), through deploy's plan"
    rows = [(s.action, s.resource, s.reason) for s in changes]
    for slot, arn in sorted(refused.items()):
        rows.append(("refused", slot, f"it runs {arn}, another function"))
    action_width = max((len(r[0]) for r in rows), default=0)
    room = console.width - action_width - max((len(r[1]) for r in rows), default=0) - 4
    if room < 20 or max((len(w) for r in rows for w in r[2].split()), default=0) > room:
        lines: list[str | Text] = [*wrapped(title, console.width)]
        for action, resource, reason in rows:
            style = "yellow" if action == "refused" else ""
            first, *rest = wrapped(resource, console.width - action_width - 2)
            lines.append(_text(f"{action:<{action_width + 2}}", style=style) + _text(first))
            lines += [" " * (action_width + 2) + line for line in rest]
            lines += wrapped(reason, console.width, " " * (action_width + 2))
        print_lines(console, lines)
        return
    table = _table(title=title, title_justify="left", box=None, show_header=False, pad_edge=False)
    table.add_column("action", no_wrap=True)
    table.add_column("resource", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for action, resource, reason in rows:
        shown = "[yellow]refused[/yellow]" if action == "refused" else action
        table.add_row(shown, _escape(resource), _escape(reason))
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


def erased_by(row: Mapping[str, Any]) -> tuple[str, str] | None:
    """When a row whose Cognito user is gone was erased, and by which policy; None for a
    live row. The row does not name its policy, its shape does (docs/record.md): `keep`
    leaves the personal fields, `anonymize` removes them and keeps the app data, `delete`
    leaves a tombstone (`user_id`, `userPoolId`, `deletedAt`, `updatedAt`)."""
    from livekart_users import schema

    when = row.get(schema.DELETED_AT)
    if when is None:
        return None
    if any(row.get(field) is not None for field in schema.PERSONAL_FIELDS):
        return visible(str(when)), "keep"
    if set(row) <= {"user_id", "userPoolId", schema.DELETED_AT, "updatedAt"}:
        return visible(str(when)), "delete"
    return visible(str(when)), "anonymize"


def erasure(row: Mapping[str, Any]) -> str | None:
    """How and when the row was erased, in words; None for a live row."""
    found = erased_by(row)
    if found is None:
        return None
    when, policy = found
    if policy == "keep":
        return f"erased {when} (policy keep: marked only, personal fields kept)"
    if policy == "delete":
        return f"erased {when} (policy delete: only this tombstone is left)"
    return f"erased {when} (policy anonymize: personal fields removed, app data kept)"


def _user_cell(row: Mapping[str, Any], column: str) -> str:
    found = erased_by(row)
    if found is not None:
        if column == "status":
            return f"[red]erased[/red] {_escape(found[0])} ({found[1]})"
        if column == "emailVerified" and "email" not in row:
            return "[dim]-[/dim]"  # verified says nothing once the address is gone
    return data_cell(row.get(column)) if column in row else "[dim]-[/dim]"


def users_table(rows: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    """Users as rows of a table, with the same columns whatever the rows hold; an erased
    row's status reads `erased`."""
    table = _table(title=title)
    for column in USER_COLUMNS:
        table.add_column(column, overflow="fold", no_wrap=column == "user_id")
    for row in rows:
        table.add_row(*[_user_cell(row, c) for c in USER_COLUMNS])
    return table


def print_user_detail(console: Console, record: Mapping[str, Any], title: str) -> None:
    """Every attribute of one row: a table when it fits, else a line (or a few) each."""
    print_table_or_lines(
        console, user_detail(record, title), lambda width: detail_lines(record, title, width)
    )


def detail_lines(record: Mapping[str, Any], title: str, width: int) -> list[str | Text]:
    lines: list[str | Text] = [_text(visible(title), style="bold")]
    erased = erasure(record)
    if erased is not None:
        lines += wrapped(erased, width, "    ")
    for key in sorted(record):
        lines += _rewrapped(f"    {visible(key)}: {plain(record[key])}", width)
    return lines


def user_detail(record: Mapping[str, Any], title: str) -> Table:
    """Every attribute of one user's row; first, for an erased row, how and when."""
    table = _table(title=_escape(title))
    table.add_column("attribute")
    table.add_column("value", overflow="fold")
    erased = erasure(record)
    if erased is not None:
        table.add_row("[red]erased[/red]", data_cell(erased.removeprefix("erased ")))
    for key in sorted(record):
        table.add_row(data_cell(key), data_cell(record[key]))
    return table


def user_lines(row: Mapping[str, Any], width: int) -> list[str]:
    """One user in a few lines: the id first and whole, then what describes them."""

    def text(key: str, absent: str = "-") -> str:
        value = row.get(key)
        return absent if value is None else visible(str(value))

    erased = erasure(row)
    if erased is not None:
        return [
            f"{text('user_id')}  {text('role')}  erased",
            *wrapped(erased, width, "    "),
            *wrapped(f"last login: {text('lastLoginAt', 'never')}", width, "    "),
        ]
    flag = row.get("emailVerified")
    verified = "" if not isinstance(flag, bool) else " (verified)" if flag else " (unverified)"
    return [
        f"{text('user_id')}  {text('role')}  {text('status')}",
        *wrapped(f"email: {text('email', 'none')}{verified}", width, "    "),
        *wrapped(
            f"name: {text('name', 'none')} · last login: {text('lastLoginAt', 'never')}",
            width,
            "    ",
        ),
    ]


def print_users(console: Console, rows: Iterable[Mapping[str, Any]], chunk: int = 100) -> int:
    """Print users as they come, `chunk` at a time (never all in memory); how many.

    As tables while the first one fits the width, else as lines (the same all the way down).
    """
    shown = 0
    as_table: bool | None = None
    batch: list[Mapping[str, Any]] = []

    def flush(title: str | None) -> None:
        nonlocal as_table, shown
        table = users_table(batch, title)
        if as_table is None:
            as_table = fits(console, table)
        if as_table:
            console.print(table)
        else:
            lines = [_text(title, style="bold")] if title else []
            print_lines(console, lines + [ln for r in batch for ln in user_lines(r, console.width)])
        shown += len(batch)
        batch.clear()

    for row in rows:
        batch.append(row)
        if len(batch) == chunk:
            flush(f"users {shown + 1} to {shown + len(batch)}")
    if batch:
        flush(f"users {shown + 1} to {shown + len(batch)}" if shown else None)
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
        if report.erasure_policy:
            return "erased with the orphans (their user is gone); app data is not moved"
        return "reported only: app data is not moved"
    if category == "other pool":
        return "left alone: another pool's users"
    if category == "orphan, no pool recorded":
        if report.include_no_pool:
            return "taken with the orphans (--include-legacy-rows)"
        return "left alone: may be another pool's (--include-legacy-rows to take them)"
    if category == "unconfirmed":
        return "left alone: the trigger writes the row at confirmation"
    return "reported only"


def reconcile_heading(report: Any) -> str:
    """What was compared with what, and whether anything changed."""
    mode = "applied" if report.applied else "dry run: nothing changed"
    return f"reconcile {report.user_pool_id} ↔ {report.table} ({mode})"


def reconcile_summary(report: Any) -> Table:
    """The counts of a reconcile (a `reconcile.Report`), and what was done about each."""
    # Untitled: a title is wrapped to its table's width, which would cut the pool id.
    table = _table()
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


def reconcile_notes(report: Any) -> list[str]:
    """What the run went through: a resumed checkpoint, a restarted listing, throttling."""
    notes = []
    if report.resumed_at_page:
        notes.append(
            f"Resumed at page {report.resumed_at_page} from the checkpoint of an earlier run "
            "(--restart to start over)."
        )
    if report.listing_restarts:
        notes.append(
            f"Cognito refused a pagination token {report.listing_restarts} time(s): the "
            "listing started over from the first page (counts are of the last listing)."
        )
    if report.throttled:
        notes.append(
            f"Throttled {report.throttled} time(s): slowed to {report.lowest_rate:g} "
            "ListUsers requests/s, leaving the shared quota to others."
        )
    return notes


def print_reconcile(console: Console, report: Any) -> None:
    heading = wrapped(reconcile_heading(report), console.width)
    print_lines(console, [_text(line, style="bold") for line in heading])
    console.print(reconcile_summary(report))
    examples = reconcile_examples(report)
    if examples is not None and fits(console, examples):
        console.print(examples)
    elif examples is not None:
        width = max(len(e.category) for e in report.examples) + 2
        lines: list[str | Text] = [_text("examples", style="bold")]
        for example in report.examples:
            lines.append(f"{example.category:<{width}}{example.user_id}")
            if example.detail:
                lines += wrapped(example.detail, console.width, " " * width)
        print_lines(console, lines)
    console.print(
        f"{report.rows} rows read in {report.table_seconds:.1f} s; {report.pool_users} users "
        f"listed in {report.pool_seconds:.1f} s ({report.list_requests} ListUsers "
        f"request{'' if report.list_requests == 1 else 's'}, "
        f"at most {report.rate:g}/s); {report.retries} retries after throttling or errors; "
        f"{report.seconds:.1f} s in all"
    )
    for note in reconcile_notes(report):
        console.print(note)
    if not report.applied and (report.to_create or report.to_refresh):
        console.print("Nothing was changed: run again with [bold]--apply[/bold] to heal the table.")


_ROW_OUTCOMES: Mapping[str, str] = {
    "anonymized": "personal fields removed, marked deleted, app data kept",
    "deleted": "row deleted (a tombstone of id, pool and time blocks its re-creation)",
    "marked_deleted": "marked deleted, kept as it was",
    "already_erased": "already erased",
    "no_row": "no row",
    "other_pool": "another pool's row, left alone",
    "no_pool_recorded": "records no pool, left alone",
}


def deletion(done: Any, found: Mapping[str, Any] | None = None) -> str:
    """One line for `users delete` (an `erasure.Deletion`): what it did, and what it found.

    `found` is the row as it is now when it was erased already: by the change handler, when
    this run has just deleted the user from Cognito (the deletion event outran us), else by
    an earlier deletion."""
    cognito = (
        "deleted from Cognito" if done.cognito_user_deleted else "not in Cognito (already gone)"
    )
    row = _ROW_OUTCOMES.get(done.row, done.row)
    erased = erased_by(found) if found is not None else None
    if done.row == "already_erased" and erased is not None:
        when, policy = erased
        who = "the change handler" if done.cognito_user_deleted else "an earlier deletion"
        row = f"already erased by {who} at {_escape(when)} (policy {policy})"
        return f"user {data_cell(done.user_id)}: {cognito}; row: {row}"
    if done.row == "no_row" and done.cognito_user_deleted:
        row = "none (deleted already, or never written)"
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
    source = visible(window.source)
    # Lines broken at spaces: rich would fold the record's path mid-way.
    heading = wrapped(
        f"{count} invocation{'' if count == 1 else 's'} since {since} in {source}", console.width
    )
    if as_json:
        for invocation in window.invocations:
            print_log_invocation(console, invocation, as_json=True)
    elif follow:
        print_lines(console, heading)
        if _aligned(console):  # the rows that follow line up beneath this header
            console.print(_escape(_log_row(LOG_COLUMNS)), style="bold", soft_wrap=True)
        for invocation in window.invocations:
            print_log_invocation(console, invocation, as_json=False)
    elif window.invocations:
        print_lines(console, heading)
        invocations = window.invocations
        print_table_or_lines(
            console,
            logs_table(invocations, None),
            lambda width: [line for i in invocations for line in log_lines(i, width)],
        )
    else:
        print_lines(console, wrapped(f"no invocations since {since} in {source}", console.width))
    if window.cut_short:
        notes.print(f"[yellow]window cut short:[/yellow] {_escape(window.cut_short)}")


LOG_WIDTHS = (20, 38, 14, 36, 22, 11, 11)


def _aligned(console: Console) -> bool:
    """One aligned line per invocation fits the width (else a few lines each)."""
    return console.width >= sum(LOG_WIDTHS) + len(LOG_WIDTHS) - 1


def _log_cells(texts: Sequence[str]) -> list[str]:
    return [
        text.rjust(width) if index >= 5 else text.ljust(width)
        for index, (text, width) in enumerate(zip(texts, LOG_WIDTHS, strict=True))
    ]


def _log_row(texts: Sequence[str]) -> str:
    return " ".join(_log_cells(texts))


def _log_texts(invocation: Invocation) -> list[str]:
    return [
        invocation.time.strftime("%Y-%m-%d %H:%M:%S") + "Z",
        visible(invocation.trigger_source or "-"),
        visible(invocation.outcome or "-"),
        visible(invocation.user_id or "-"),
        visible(invocation.error_code or "-"),
        _log_ms(invocation.duration_ms),
        _log_ms(invocation.init_duration_ms),
    ]


def log_lines(invocation: Invocation, width: int) -> list[str]:
    """One invocation as lines that fit `width`: when, outcome and trigger source, then the
    user id, error code and durations, indented, broken at spaces only."""
    when, source, outcome, user, error, duration, init = _log_texts(invocation)
    return [
        *wrapped(f"{when}  {outcome}  {source}", width),
        *wrapped(f"user id: {user} · error code: {error}", width, "    "),
        *wrapped(f"duration: {duration} · initDuration: {init}", width, "    "),
    ]


def print_log_invocation(console: Console, invocation: Invocation, *, as_json: bool) -> None:
    """One invocation (for --follow and --json): one aligned line when the width allows it,
    else a few lines; never cut."""
    if as_json:
        console.out(to_json_line(invocation.as_dict()), highlight=False)
        return
    texts = _log_texts(invocation)
    if not _aligned(console):
        print_lines(console, log_lines(invocation, console.width))
        return
    style = LOG_OUTCOME_STYLES.get(texts[2], "yellow")
    cells = [_escape(c) for c in _log_cells(texts)]
    cells[2] = f"[{style}]{cells[2]}[/{style}]"
    console.print(" ".join(cells), highlight=False, soft_wrap=True)
