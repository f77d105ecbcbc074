"""`livekart-users doctor`: run the checklist, render it, exit 0 / 1 / 2; `--fix` goes
through deploy's plan and apply, then checks again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from botocore.exceptions import BotoCoreError, ClientError

from livekart_users import aws, doctor
from livekart_users.cli import render
from livekart_users.cli.common import (
    console,
    debugging,
    errors,
    explain,
    friendly_errors,
    json_error,
    json_option,
    local_dir_option,
    region_option,
    user_pool_option,
)
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.exceptions import LivekartUsersError

if TYPE_CHECKING:
    from livekart_users.local.stack import LocalStack

CANNOT_RUN = 2


@click.command("doctor")
@user_pool_option()
@region_option
@local_dir_option()
@json_option("Print one JSON object (for CI).")
@click.option("--fix", is_flag=True, help="Carry out the fixes deploy can make, then check again.")
@click.option("--probe", is_flag=True, help="Also invoke the function with a synthetic sign-up.")
@friendly_errors
def doctor_command(
    user_pool_id: str | None,
    region: str | None,
    local_dir: Path | None,
    as_json: bool,
    fix: bool,
    probe: bool,
) -> None:
    """Check the table, role, function, invoke permission, triggers, pool and alarms.

    Exit status: 0 when every check passes (warnings allowed), 1 when one fails, 2 when
    doctor could not run (no credentials, no access, no such pool).
    """
    try:
        stack, target, clients = _where(local_dir, user_pool_id, region)
        reads = doctor.Reads()
        results = doctor.run(target, clients, local=stack, probe=probe, reads=reads)
    except (LivekartUsersError, ClientError, BotoCoreError) as exc:
        _cannot_run(exc, as_json)
    fixed: list[Any] | None = None
    refused: dict[str, str] = {}
    if not as_json:
        render.print_doctor(console, results, _heading(target, stack is not None))
        if not fix and stack is None and doctor.exit_status(results):
            console.print(f"`{doctor.fix_command(target)}` carries out deploy's fixes")
    if fix and stack is not None:
        if not as_json:
            console.print("--fix changes AWS: `livekart-users local up` repairs the local stack")
    elif fix and any(r.status in (doctor.Status.FAIL, doctor.Status.WARN) for r in results):
        fixed, refused, results = _fix(target, clients, reads, probe, quiet=as_json)
    status = doctor.exit_status(results)
    if refused:
        status = max(status, 1)  # --fix could not carry out deploy's plan in full
    if as_json:
        where = {**doctor.describe_target(target), "local": stack is not None}
        click.echo(
            render.doctor_json(
                results, exit_code=status, target=where, fixed=fixed, refused=refused
            )
        )
    sys.exit(status)


def _where(
    local_dir: Path | None, user_pool_id: str | None, region: str | None
) -> tuple[LocalStack | None, Target, Clients]:
    """The local stack (pointing this process's clients at it), or AWS."""
    stack = doctor.find_local_stack(local_dir)
    if stack is not None:
        stack.use()
        return (stack, *doctor.local_target(stack, user_pool_id))
    if not user_pool_id:
        raise click.UsageError("--user-pool-id is needed (outside the local stack)")
    return (None, *doctor.aws_target(user_pool_id, aws.resolve_region(region, user_pool_id)))


def _fix(
    target: Target, clients: Clients, reads: doctor.Reads, probe: bool, *, quiet: bool
) -> tuple[list[Any], dict[str, str], list[doctor.Result]]:
    plan = doctor.plan_fixes(target, clients, reads)
    if not quiet:
        render.print_fix_plan(console, plan.steps, plan.refused)
        if plan.refused:
            console.print(f"to replace them too: [bold]{doctor.force_command(target)}[/bold]")
    done: list[Any] = []
    doctor.apply_fixes(plan, clients, report=done.append)
    results = doctor.run(target, clients, probe=probe)
    if not quiet:
        render.print_doctor(console, results, "after --fix")
    return done, dict(plan.refused), results


def _heading(target: Target, local: bool) -> str:
    where = "the local stack" if local else f"account {target.account}, {target.region}"
    return f"livekart-users doctor: pool {target.user_pool_id} in {where}"


def _cannot_run(exc: Exception, as_json: bool) -> NoReturn:
    """Exit status 2 and one line: doctor could not look, so it says nothing about the setup."""
    if debugging():
        raise exc
    message = explain(exc)
    if as_json:
        click.echo(json_error(message, CANNOT_RUN))
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    sys.exit(CANNOT_RUN)
