"""Turning the library's data into what a person reads (rich) or a script reads (JSON)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

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
