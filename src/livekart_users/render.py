"""Turning the library's data into what a person reads (rich) or a script reads (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from livekart_users.doctor import Result

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
    table = Table(title=title, show_lines=False)
    columns = [c for c in RECORD_COLUMNS if c != "storeName" or any(c in r for r in rows)]
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column == "user_id")
    for row in rows:
        table.add_row(*[cell(row.get(c)) if c in row else "[dim]-[/dim]" for c in columns])
    return table


def record_detail(record: Mapping[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=True)
    table.add_column("attribute")
    table.add_column("value", overflow="fold")
    for key in sorted(record):
        table.add_row(key, cell(record[key]))
    return table


def print_status(console: Console, status: Any) -> None:
    table = Table(title=f"local stack ({status.directory})")
    table.add_column("service")
    table.add_column("state")
    table.add_column("endpoint")
    names = {
        "dynamodb": ("DynamoDB Local", "dynamodb"),
        "cognito": ("cognito-local", "cognito-idp"),
        "endpoint": ("Lambda Invoke endpoint", "lambda"),
    }
    for service, (label, key) in names.items():
        state = "[green]running[/green]" if status.running.get(service) else "[red]stopped[/red]"
        table.add_row(label, state, status.endpoints[key])
    console.print(table)
    if status.user_pool_id:
        console.print(
            f"user pool [bold]{status.user_pool_id}[/bold], app client "
            f"[bold]{status.client_id}[/bold], table [bold]{status.table}[/bold]"
        )


ACTION_STYLES = {"create": "green", "update": "yellow", "delete": "red", "no change": "dim"}


def plan_table(plan: Any, title: str) -> Table:
    """A deploy or destroy plan: one row per step, with its reason."""
    table = Table(title=title)
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
    table = Table(
        title=escape(heading), title_justify="left", box=None, show_header=False, pad_edge=False
    )
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding", overflow="fold")
    for r in results:
        finding = escape(r.finding) + (f"\n[bold]fix:[/bold] {escape(r.fix)}" if r.fix else "")
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
    table = Table(
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
        table.add_row(step.action, escape(step.resource), escape(step.reason))
    for slot, arn in sorted(refused.items()):
        table.add_row("[yellow]refused[/yellow]", slot, f"it runs {escape(arn)}, another function")
    console.print(table, highlight=False)
