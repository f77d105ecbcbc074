"""The `users` and `reconcile` commands: parse, call the library, render. No logic here."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import click

from livekart_users import aws, erasure, schema
from livekart_users.cli import Group, render
from livekart_users.cli.common import (
    F,
    console,
    erasure_policy_option,
    extra_fields_option,
    fail,
    friendly_errors,
    json_option,
    local_dir_option,
    region_option,
    resolve_pool,
    resolve_table,
    table_option,
    user_pool_option,
)
from livekart_users.table import UsersTable


def table_options(command: F) -> F:
    """Where the rows are: the table and its region, or the local stack's."""
    for option in reversed((table_option(), region_option, local_dir_option())):
        command = option(command)
    return command


def user_id_argument(command: F) -> F:
    return click.argument("user_id", callback=_not_empty)(command)


def _not_empty(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    # DynamoDB refuses an empty key with a ValidationException: say it in our words.
    if not value.strip():
        what = "the address" if param.name == "email" else "the user's id (the Cognito sub)"
        raise click.BadParameter(f"is empty: give {what}")
    return value


def _table(table: str | None, region: str | None, local_dir: Path | None) -> UsersTable:
    name = resolve_table(table, local_dir)
    return UsersTable(aws.client("dynamodb", region_name=aws.resolve_region(region)), name)


def _not_found(message: str) -> None:
    fail(message, label="not found")


def _show_row(row: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(render.to_json(row))
    else:
        render.print_user_detail(console, row, title)


# --- users -------------------------------------------------------------------------------


@click.group(cls=Group)
def users() -> None:
    """Look users up in the table, change their role or status, delete them.

    These commands read and write the DynamoDB table only, never Cognito, except `delete`,
    which deletes the user from Cognito too.
    """


@users.command("get")
@user_id_argument
@table_options
@json_option("Print the row as JSON.")
@friendly_errors
def users_get(
    user_id: str, table: str | None, region: str | None, local_dir: Path | None, as_json: bool
) -> None:
    """Show one user's row by user id (the Cognito sub). Exit status 1 when there is none."""
    rows = _table(table, region, local_dir)
    row = rows.get(user_id)
    if row is None:
        _not_found(f"no user with id {user_id!r} in table {rows.name!r}")
        return
    _show_row(row, as_json, f"user {user_id}")


@users.command("find")
@click.option(
    "--email", required=True, metavar="ADDRESS", callback=_not_empty, help="The address (any case)."
)
@click.option(
    "--unverified",
    is_flag=True,
    help="Also rows whose address is not verified (anyone can claim an unverified address).",
)
@table_options
@json_option("Print the rows as JSON Lines.")
@friendly_errors
def users_find(
    email: str,
    unverified: bool,
    table: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
) -> None:
    """Find users by verified email through the email-index GSI (eventually consistent).

    The address is lower-cased, as it is stored. Exit status 1 when no row has it.
    """
    users_table = _table(table, region, local_dir)
    rows = users_table.find_by_email(email, unverified=unverified)
    if not rows:
        which = "email" if unverified else "verified email"
        hint = "" if unverified else " (--unverified to include unverified addresses)"
        _not_found(
            f"no user with {which} {schema.fold_email(email)!r} in table {users_table.name!r}{hint}"
        )
    elif as_json:
        for row in rows:
            click.echo(render.to_json_line(row))
    else:
        render.print_users(console, rows)  # a table when it fits, else lines


@users.command("list")
@click.option("--role", type=click.Choice(sorted(schema.ROLES)), help="Only users of this role.")
@click.option(
    "--status", type=click.Choice(sorted(schema.STATUSES)), help="Only users of this status."
)
@click.option(
    "--limit",
    # islice takes at most sys.maxsize: a larger number is a usage error, not a traceback.
    type=click.IntRange(1, sys.maxsize),
    help="Stop after this many users.",
)
@table_options
@json_option("Print the rows as JSON Lines.")
@friendly_errors
def users_list(
    role: str | None,
    status: str | None,
    limit: int | None,
    table: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
) -> None:
    """List users, a page of the table at a time (the table is never loaded whole)."""
    rows = _table(table, region, local_dir).scan_where(role=role, status=status)
    if limit is not None:
        rows = itertools.islice(rows, limit)
    if as_json:
        for row in rows:
            click.echo(render.to_json_line(row))
    elif render.print_users(console, rows) == 0:
        console.print("no users match")


@users.command("set-role")
@user_id_argument
@click.argument("role", type=click.Choice(sorted(schema.ROLES)))
@table_options
@json_option("Print the updated row as JSON.")
@friendly_errors
def users_set_role(
    user_id: str,
    role: str,
    table: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
) -> None:
    """Set a user's role in the table (one conditional update; Cognito is not touched).

    Becoming a vendor adds the vendor fields with their defaults where absent; leaving keeps
    them. Only `role`, `updatedAt` and those defaults change.
    """
    rows = _table(table, region, local_dir)
    row = rows.set_role(user_id, role)
    if row is None:
        _not_found(f"no user with id {user_id!r} in table {rows.name!r}: nothing changed")
        return
    _show_row(row, as_json, f"user {user_id}: role is now {role}")


@users.command("delete")
@user_id_argument
@user_pool_option()
@erasure_policy_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@table_options
@json_option("Print what was done as JSON.")
@friendly_errors
def users_delete(
    user_id: str,
    user_pool_id: str | None,
    erasure_policy: str,
    yes: bool,
    table: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
) -> None:
    """Delete a user: from Cognito (AdminDeleteUser), then erase their row.

    The erasure an app's "delete my account" button or a support agent needs. Cognito goes
    first, so a run stopped half-way never leaves an account that could sign in and write
    personal data back; run it again (or let the change handler or `reconcile
    --erase-orphans` do it) and the row is erased. Running it twice changes nothing. A user
    the pool does not have, whose row does not say it was this pool's, is refused (exit 1)
    and nothing changes.
    """
    policy = erasure.parse_policy(erasure_policy)
    user_pool_id = resolve_pool(user_pool_id, local_dir)
    table = resolve_table(table, local_dir)
    chosen = aws.resolve_region(region, user_pool_id)
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to confirm the deletion: pass --yes")
        click.confirm(
            f"Delete user {user_id} from {user_pool_id} and erase their row in {table} "
            f"({policy})? This cannot be undone",
            abort=True,
        )
    rows = UsersTable(aws.client("dynamodb", region_name=chosen), table)
    done = erasure.delete_user(
        aws.client("cognito-idp", region_name=chosen), rows, user_pool_id, user_id, policy
    )
    if not done.cognito_user_deleted and done.row == erasure.Erased.NO_ROW:
        _not_found(
            f"no user with id {user_id!r} in pool {user_pool_id} or table {table!r}: "
            "nothing was deleted"
        )
    if as_json:
        click.echo(render.to_json(done.as_dict()))
    else:
        # What it found: an erased row says when, and by whom (the change handler, often).
        found = rows.get(user_id) if done.row == erasure.Erased.ALREADY_ERASED else None
        console.print(render.deletion(done, found), soft_wrap=True)  # one line, however narrow


def _status_command(name: str, status: str, summary: str) -> click.Command:
    @user_id_argument
    @table_options
    @json_option("Print the updated row as JSON.")
    @friendly_errors
    def command(
        user_id: str, table: str | None, region: str | None, local_dir: Path | None, as_json: bool
    ) -> None:
        rows = _table(table, region, local_dir)
        row = rows.set_status(user_id, status)
        if row is None:
            _not_found(f"no user with id {user_id!r} in table {rows.name!r}: nothing changed")
            return
        _show_row(row, as_json, f"user {user_id}: status is now {status}")

    command.__doc__ = (
        f"{summary}\n\nOne conditional update of the row's `status` and `updatedAt`. The table "
        "only: Cognito's own enable/disable (AdminDisableUser) is not touched, so the user can "
        "still sign in unless the app checks this status."
    )
    return users.command(name)(command)


_status_command("suspend", "suspended", "Mark a user suspended in the table.")
_status_command("activate", "active", "Mark a user active in the table.")


# --- reconcile ---------------------------------------------------------------------------


@click.command("reconcile")
@user_pool_option()
@click.option("--apply", is_flag=True, help="Create and refresh rows (default: only report).")
@click.option(
    "--delete-orphans",
    is_flag=True,
    help="With --apply: delete rows whose Cognito user is gone, after a confirmation.",
)
@click.option(
    "--erase-orphans",
    is_flag=True,
    help="With --apply: apply the erasure policy to rows whose Cognito user is confirmed "
    "gone (AdminGetUser), after a confirmation.",
)
@click.option(
    "--include-legacy-rows",
    is_flag=True,
    help="With --delete-orphans or --erase-orphans: also take orphan rows that record no "
    "pool (written before rows recorded one). Only where no other pool shares the table.",
)
@erasure_policy_option
@click.option("--yes", "-y", is_flag=True, help="Delete or erase orphans without asking.")
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 30.0),
    default=20.0,
    show_default=True,
    help="ListUsers requests per second. Cognito allows 30 per account and region, shared "
    "with every other caller.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Writes in parallel (with --apply).",
)
@click.option(
    "--examples",
    type=click.IntRange(0, 1000),
    default=10,
    show_default=True,
    help="Examples shown per category.",
)
@extra_fields_option
@click.option(
    "--restart",
    is_flag=True,
    help="Start over instead of resuming where an interrupted run of this pool, table and "
    "mode stopped.",
)
@table_options
@json_option("Print the summary as JSON.")
@friendly_errors
def reconcile_command(
    user_pool_id: str | None,
    apply: bool,
    delete_orphans: bool,
    erase_orphans: bool,
    include_legacy_rows: bool,
    erasure_policy: str,
    yes: bool,
    rate: float,
    concurrency: int,
    examples: int,
    extra_fields: str | None,
    restart: bool,
    table: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
) -> None:
    """Compare the user pool with the table; with --apply, heal the table.

    Creates the rows of confirmed users who have none (admin-created, older than the trigger,
    or whose write failed) exactly as the trigger would, and refreshes identity attributes
    that differ from Cognito, without touching app data or lastLoginAt. Reports rows whose
    user is gone (orphans), users who came back with a new sub (moved), and unconfirmed
    users. Only this pool's rows are changed: rows of other pools sharing the table are
    counted, and orphan rows that record no pool are counted apart (taken only with
    --include-legacy-rows). Safe to interrupt: the next run resumes at the page where it
    stopped (a checkpoint per page in the user's state directory), unless --restart.
    """
    from livekart_users import reconcile
    from livekart_users.checkpoint import FileCheckpoints

    if delete_orphans and erase_orphans:
        raise click.UsageError("--delete-orphans and --erase-orphans: choose one")
    if include_legacy_rows and not (delete_orphans or erase_orphans):
        raise click.UsageError(
            "--include-legacy-rows goes with --delete-orphans or --erase-orphans"
        )
    policy = erasure.parse_policy(erasure_policy) if erase_orphans else None
    extra = schema.parse_extra_fields(extra_fields)
    user_pool_id = resolve_pool(user_pool_id, local_dir)
    table = resolve_table(table, local_dir)
    cognito, dynamodb = reconcile.clients(aws.resolve_region(region, user_pool_id), concurrency)
    with render.ReconcileProgress(console, enabled=console.is_terminal and not as_json) as bars:

        def confirm(count: int) -> bool:
            if yes:
                return True
            if not sys.stdin.isatty():
                return False  # no one to ask: keep them
            verb = f"Erase ({policy})" if policy else "Delete"
            question = f"{verb} {count} orphan rows from {table}?"
            return bool(bars.paused(lambda: click.confirm(question, default=False)))

        report = reconcile.reconcile(
            cognito,
            UsersTable(dynamodb, table),
            user_pool_id,
            apply=apply,
            delete_orphans=delete_orphans,
            erase_orphans=policy,
            confirm_delete=confirm,
            include_no_pool=include_legacy_rows,
            rate=rate,
            concurrency=concurrency,
            examples=examples,
            extra_fields=extra,
            on_progress=bars.update if bars.enabled else None,
            checkpoints=FileCheckpoints(user_pool_id, table, apply),
            restart=restart,
        )
    if as_json:
        click.echo(render.to_json(report.as_dict()))
    else:
        render.print_reconcile(console, report)
