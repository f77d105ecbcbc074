"""`deploy`, `destroy`, `attach` and `detach`: parse options, plan, show the plan, apply it."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from livekart_users import aws
from livekart_users.cli import render
from livekart_users.cli.common import (
    F,
    console,
    erasure_policy_option,
    extra_fields_option,
    friendly_errors,
    function_option,
    region_option,
    table_option,
    user_pool_option,
)
from livekart_users.deploy import executor, models, package, planner, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.destroy import plan_destroy
from livekart_users.deploy.models import Target
from livekart_users.deploy.plan import Plan, Step


def target_options(command: F) -> F:
    options = [
        user_pool_option(required=True, local=False),
        region_option,
        table_option(local=False),
        function_option,
        click.option(
            "--role-name",
            default=None,
            envvar="LIVEKART_ROLE",
            help=f"The trigger function's role [env LIVEKART_ROLE; default {models.DEFAULT_ROLE}]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the plan and what was done as JSON."
    )(command)


def _reading(as_json: bool) -> contextlib.AbstractContextManager[Any]:
    """A spinner while the plan is read; none when stdout carries JSON."""
    return contextlib.nullcontext() if as_json else console.status("reading what exists…")


def _target(
    clients: Clients,
    user_pool_id: str,
    table: str | None,
    function_name: str | None,
    role_name: str | None,
    **settings: Any,
) -> Target:
    chosen: dict[str, Any] = {"table": table, "function": function_name, "role": role_name}
    chosen.update(settings)
    return Target(
        user_pool_id=user_pool_id,
        region=clients.region,
        account=clients.account(),
        **{k: v for k, v in chosen.items() if v is not None},
    )


_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _period(value: str | None) -> int | None:
    """`--reconcile-every`: a number and a unit (m, h, d), at least an hour, in seconds."""
    if value is None:
        return None
    text = value.strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    try:
        seconds = int(float(text[:-1]) * unit) if unit else int(text)
    except ValueError:
        seconds = 0
    if seconds < 3600:
        raise click.BadParameter(
            f"{value!r} is not a period of at least an hour: give e.g. 6h or 1d "
            "(a run of a large pool takes hours; the schedule goes on with it every 15 minutes)"
        )
    return seconds


def _clients(region: str | None, user_pool_id: str) -> Clients:
    return Clients.create(aws.resolve_region(region, user_pool_id))


@click.command()
@target_options
@click.option(
    "--architecture", type=click.Choice(["arm64", "x86_64"]), default="arm64", show_default=True
)
@click.option(
    "--memory",
    "memory_mb",
    type=click.IntRange(*models.MEMORY_RANGE),
    default=models.MEMORY_MB,
    show_default=True,
    metavar="MB",
    help="The function's memory; Lambda's CPU, and so the cold start, scale with it "
    "(docs/deploy.md).",
)
@click.option(
    "--log-retention-days",
    # Only the periods CloudWatch Logs accepts: anything else would fail mid-deploy.
    type=click.Choice([str(d) for d in models.RETENTION_DAYS]),
    callback=lambda _ctx, _param, value: int(value),
    default=str(models.LOG_RETENTION_DAYS),
    show_default=True,
    metavar="DAYS",
    help="One of CloudWatch Logs' periods: " + ", ".join(map(str, models.RETENTION_DAYS)),
)
@extra_fields_option
@click.option("--alarm-topic-arn", default=None, help="SNS topic the failed-write alarm notifies.")
@erasure_policy_option
@click.option(
    "--recovery-period-days",
    type=click.IntRange(1, 35),
    default=None,
    metavar="DAYS",
    help="Days the table's point-in-time recovery keeps (1-35; DynamoDB's default is 35): "
    "an erased user's data stays restorable that long. Default: leave the table's as it is.",
)
@click.option(
    "--reconcile-every",
    "reconcile_every_seconds",
    default=None,
    metavar="PERIOD",
    callback=lambda _ctx, _param, value: _period(value),
    help="Also deploy the scheduled reconcile: a complete run of the pool every PERIOD "
    "(e.g. 6h, 1d; at least 1h), in invocations under Lambda's 15 minutes.",
)
@click.option(
    "--reconcile-erase-orphans",
    is_flag=True,
    help="With --reconcile-every: the scheduled reconcile applies the erasure policy to rows "
    "whose user AdminGetUser confirms gone (without it, it only reports them).",
)
@click.option("--force", is_flag=True, help="Replace trigger slots that hold another function.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@json_option
@friendly_errors
def deploy(
    user_pool_id: str,
    region: str | None,
    force: bool,
    dry_run: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Deploy the trigger onto an existing user pool: table, role, function, permission,
    alarm and the pool's Post Confirmation / Post Authentication triggers; and the change
    handler (its own role and function, an EventBridge rule for this pool's CloudTrail
    events, a dead-letter queue). Without a CloudTrail trail it still deploys, and says so.

    Safe on a production pool: every other pool setting is sent back unchanged; the pool
    names the function's alias `live`, moved in one call once a new version is complete, so
    sign-ups never hit half-updated code; a trigger slot that holds another function is left
    alone unless --force (the other slot is attached, and the exit status is 1). Run it again
    any time: a second deploy plans no changes."""
    clients = _clients(region, user_pool_id)
    target = _target(clients, user_pool_id, **options)
    with _reading(as_json):
        code = package.build_zip(target.architecture).data
        plan = planner.plan_deploy(target, clients, code=code, force=force)
    _run(plan, clients, dry_run, "deploy", as_json)
    if as_json:  # warnings and refusals are in the JSON's notices and refused
        if plan.refused:
            sys.exit(1)
        return
    for notice in plan.notices:
        console.print(f"[yellow]warning: {notice.resource}:[/yellow] {notice.message}")
        if notice.fix:
            console.print(f"  fix: {notice.fix}")
    if plan.refused:
        # Everything else was done; the plan was not carried out in full, so exit non-zero.
        for slot, arn in sorted(plan.refused.items()):
            console.print(f"[yellow]refused:[/yellow] {slot} runs {arn}, another function")
        console.print(
            f"Not attached: {', '.join(sorted(plan.refused))}. To replace: "
            f"livekart-users deploy --user-pool-id {user_pool_id} --force"
        )
        sys.exit(1)


@click.command()
@target_options
@click.option(
    "--delete-table",
    is_flag=True,
    help="Also delete the table and every user record in it (asks you to type its name).",
)
@click.option("--delete-logs", is_flag=True, help="Also delete the function's log group.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@json_option
@friendly_errors
def destroy(
    user_pool_id: str,
    region: str | None,
    delete_table: bool,
    delete_logs: bool,
    dry_run: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Undo deploy: detach our triggers (every other setting and trigger stays) and remove the
    permission, alarm, function and role tagged as ours. The table (user data) and the log
    group are kept unless asked."""
    clients = _clients(region, user_pool_id)
    target = _target(clients, user_pool_id, **options)
    if delete_table and not dry_run:
        typed = click.prompt(
            f"This deletes every user record in {target.table}. Type the table name to confirm",
            default="",
            show_default=False,
            err=as_json,  # stdout carries only the JSON
        )
        if typed != target.table:
            raise click.ClickException("the name did not match: nothing was changed")
    with _reading(as_json):
        plan = plan_destroy(target, clients, delete_table=delete_table, delete_logs=delete_logs)
    _run(plan, clients, dry_run, "destroy", as_json)


def _pool_options(command: F) -> F:
    for option in reversed((user_pool_option(required=True, local=False), function_option)):
        command = option(command)
    return region_option(command)


def _pool_target(clients: Clients, user_pool_id: str, function_name: str | None) -> Target:
    return Target(
        user_pool_id=user_pool_id,
        region=clients.region,
        account=clients.account(),
        function=function_name or models.DEFAULT_FUNCTION,
    )


@click.command()
@_pool_options
@click.option("--force", is_flag=True, help="Replace trigger slots that hold another function.")
@click.option(
    "--allow-unmanaged",
    is_flag=True,
    help="Attach a function that livekart-users does not manage (no managed-by tag).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was attached as JSON.")
@friendly_errors
def attach(
    user_pool_id: str,
    function_name: str | None,
    region: str | None,
    force: bool,
    allow_unmanaged: bool,
    as_json: bool,
) -> None:
    """Point the pool's Post Confirmation and Post Authentication triggers at the function
    (its alias `live` when it has one), sending every other pool setting back unchanged: the
    step CloudFormation cannot take. Refuses a function that does not exist, is not ours, or
    that Cognito may not invoke from this pool. Exit status 1 when a slot was refused."""
    clients = _clients(region, user_pool_id)
    target = _pool_target(clients, user_pool_id, function_name)
    arn = planner.attach_arn(clients, target, allow_unmanaged=allow_unmanaged)
    settings = pool.describe(clients.cognito, user_pool_id)
    refused = (
        {} if force else pool.foreign_slots(settings, models.TRIGGER_SLOTS, target.function_arn)
    )
    slots = tuple(s for s in models.TRIGGER_SLOTS if s not in refused)
    changed = pool.attach(
        clients.cognito, user_pool_id, arn, slots, force=force, owner_arn=target.function_arn
    )
    if as_json:
        click.echo(render.attach_json(target, arn, changed, refused))
        sys.exit(1 if refused else 0)
    console.print(
        f"{', '.join(changed)} → {arn.split(':function:', 1)[1]}"
        if changed
        else f"no change: {' and '.join(slots) or 'no slot'} already point at the function"
    )
    for slot, other in sorted(refused.items()):
        console.print(f"[yellow]refused:[/yellow] {slot} runs {other}; --force replaces it")
    if refused:
        sys.exit(1)


@click.command()
@_pool_options
@click.option("--json", "as_json", is_flag=True, help="Print what was detached as JSON.")
@friendly_errors
def detach(user_pool_id: str, function_name: str | None, region: str | None, as_json: bool) -> None:
    """Empty the pool's trigger slots that name the function (or its alias), sending every
    other setting and trigger back unchanged: the reverse of attach. Run it before deleting
    a CloudFormation stack, or every sign-up fails once its function is gone."""
    clients = _clients(region, user_pool_id)
    target = _pool_target(clients, user_pool_id, function_name)
    emptied = pool.detach(clients.cognito, user_pool_id, target.function_arn, models.TRIGGER_SLOTS)
    if as_json:
        click.echo(render.detach_json(target, emptied))
        return
    console.print(
        f"detached {', '.join(emptied)} from {target.function}; every other setting unchanged"
        if emptied
        else f"no change: no trigger of pool {user_pool_id} names {target.function}"
    )


def _run(plan: Plan, clients: Clients, dry_run: bool, verb: str, as_json: bool) -> None:
    if as_json:
        _run_quietly(plan, clients, dry_run, verb)
        return
    title = f"{verb} plan ({plan.target.region}, account {plan.target.account})"
    render.print_plan(console, plan, title)
    if not plan.changes:
        console.print("no changes")
        return
    if dry_run:
        console.print(f"dry run: {len(plan.changes)} change(s) planned, nothing changed")
        return
    executor.apply(
        plan,
        clients,
        report=lambda step: console.print(f"[green]✓[/green] {step.action} {step.resource}"),
    )
    console.print(f"{verb}: {len(plan.changes)} change(s) made")


def _run_quietly(plan: Plan, clients: Clients, dry_run: bool, verb: str) -> None:
    """`_run` for scripts: one JSON object on stdout, also when a step fails (then exit 1)."""
    if dry_run or not plan.changes:
        click.echo(render.plan_json(plan, command=verb, dry_run=dry_run))
        return
    done: list[Step] = []
    try:
        executor.apply(plan, clients, report=done.append)
    except Exception as exc:
        error = str(exc)
        click.echo(render.plan_json(plan, command=verb, dry_run=False, applied=done, error=error))
        raise
    click.echo(render.plan_json(plan, command=verb, dry_run=False, applied=done))
