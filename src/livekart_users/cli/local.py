"""`livekart-users local`: start, inspect, stop and demo the local stack of emulators."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from livekart_users.cli import render
from livekart_users.cli.common import F, console, errors, friendly_errors


@click.group()
def local() -> None:
    """The local stack: DynamoDB Local, cognito-local and the trigger, no AWS account."""


def stack_options(command: F) -> F:
    options = [
        click.option(
            "--dir",
            "directory",
            type=click.Path(path_type=Path),
            default=None,
            help="Folder of the stack's state, logs and data "
            "[env LIVEKART_LOCAL_DIR; default .local-stack]",
        ),
        click.option(
            "--dynamodb-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="[env LIVEKART_LOCAL_DYNAMODB_PORT; default 8000]",
        ),
        click.option(
            "--cognito-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="[env LIVEKART_LOCAL_COGNITO_PORT; default 9229]",
        ),
        click.option(
            "--lambda-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="Port of the local Lambda Invoke endpoint "
            "[env LIVEKART_LOCAL_LAMBDA_PORT; default 9001]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _stack(
    directory: Path | None = None,
    dynamodb_port: int | None = None,
    cognito_port: int | None = None,
    lambda_port: int | None = None,
    extra_fields: str | None = None,
) -> Any:
    from livekart_users.local.stack import LocalStack, Settings

    settings = Settings()
    for name, value in (
        ("directory", directory),
        ("dynamodb_port", dynamodb_port),
        ("cognito_port", cognito_port),
        ("endpoint_port", lambda_port),
        ("extra_fields", extra_fields),
    ):
        if value is not None:
            setattr(settings, name, value)
    return LocalStack(settings)


@local.command("up")
@stack_options
@click.option(
    "--extra-fields",
    default=None,
    metavar="JSON",
    help='Extra record fields with defaults, e.g. \'{"subscriptionTier": "free"}\' '
    "[env USERS_EXTRA_FIELDS]",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was started, and where, as JSON.")
@friendly_errors
def local_up(as_json: bool, **options: Any) -> None:
    """Start the emulators and create the pool, app client and table (idempotent)."""
    from livekart_users.local import loopback

    stack = _stack(**options)
    if as_json:
        status = stack.up()
    else:
        with console.status("starting the local stack…"):
            status = stack.up()
    listening = loopback.listening(status.endpoints)
    exposed = loopback.exposed(listening)
    if as_json:
        click.echo(render.local_up_json(status, listening, exposed))
        return
    started = ", ".join(status.started) or "nothing (all were running)"
    console.print(f"started: {started}")
    render.print_status(console, status)
    render.print_exposed(errors, exposed, status.endpoints)
    console.print(
        'Point boto3 or the AWS CLI at it: [bold]eval "$(livekart-users local env)"'
        "[/bold]; stop it with [bold]livekart-users local down[/bold]."
    )


@local.command("down")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
@click.option("--wipe", is_flag=True, help="Also delete the stack's users, rows and logs.")
@friendly_errors
def local_down(directory: Path | None, wipe: bool) -> None:
    """Stop every process `local up` started."""
    stopped = _stack(directory).down(wipe=wipe)
    console.print(
        f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data wiped" if wipe else "")
    )


@local.command("status")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@friendly_errors
def local_status(directory: Path | None, as_json: bool) -> None:
    """Show which emulators run and where. Exit status 1 when any is stopped."""
    status = _stack(directory).status()
    if as_json:
        click.echo(render.to_json({**vars(status), "all_running": status.all_running}))
    else:
        render.print_status(console, status)
    sys.exit(0 if status.all_running else 1)


@local.command("env")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
def local_env(directory: Path | None) -> None:
    """Print shell exports that point AWS clients at the local stack."""
    for key, value in _stack(directory).environment().items():
        click.echo(f"export {key}={value}")


@local.command("demo")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None)
@friendly_errors
def local_demo(directory: Path | None) -> None:
    """Sign up, confirm and sign in sample users through Cognito; show their rows.

    Then create a user with AdminCreateUser (no trigger fires, so no row) and backfill its
    row with `reconcile --apply`.
    """
    from livekart_users.local import demo

    stack = _stack(directory)
    result = demo.run(stack, say=lambda line: console.print(f"• {line}"))
    console.print(render.records_table(result.records, "rows the trigger wrote"))
    console.print(f"find_by_email({result.lookup_email!r}) through the GSI email-index:")
    for row in result.found_by_email:
        console.print(render.record_detail(row, f"user {row['user_id']}"))
    backfill = demo.backfill(stack, say=lambda line: console.print(f"• {line}"))
    render.print_reconcile(console, backfill.report)
    if backfill.after is not None:
        title = f"{backfill.email}: row after reconcile"
        console.print(render.record_detail(backfill.after, title))
    _show_invocations(stack)
    console.print(
        "Stop the stack with [bold]livekart-users local down[/bold] (or `make local-down`)."
    )


def _show_invocations(stack: Any) -> None:
    """What the trigger did during the demo, as `livekart-users logs` shows it."""
    from livekart_users import logs

    window = logs.LocalRecord(stack.record_file).read(
        logs.parse_since(logs.DEFAULT_SINCE), logs.Filters(), logs.DEFAULT_LIMIT
    )
    render.print_logs_window(console, console, window, as_json=False, follow=False)
    console.print(
        "The same for a deployed trigger: [bold]livekart-users logs --user-pool-id POOL"
        "[/bold] (add --follow to watch)."
    )
