"""`livekart-users logs`: the trigger's recent invocations, from CloudWatch Logs or the local
stack's record; `--follow` keeps printing new ones until Ctrl-C."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import click

from livekart_users import aws, logs
from livekart_users.cli import render
from livekart_users.cli.common import (
    console,
    errors,
    friendly_errors,
    function_option,
    json_option,
    local_dir_option,
    region_option,
    user_pool_option,
)

KNOWN = ", ".join((*logs.KNOWN_OUTCOMES, logs.TIMEOUT, logs.FUNCTION_ERROR))


@click.command("logs")
@user_pool_option()
@function_option
@region_option
@local_dir_option()
@click.option(
    "--since",
    default=logs.DEFAULT_SINCE,
    show_default=True,
    help="How far back: 15m, 2h, 1d…",
)
@click.option(
    "--outcome",
    "outcomes",
    multiple=True,
    metavar="OUTCOME",
    help=f"Only these outcomes (repeatable): {KNOWN}, or any other the trigger logs.",
)
@click.option("--user-id", metavar="SUB", help="Only this user's invocations (the Cognito sub).")
@click.option(
    "--limit",
    type=click.IntRange(1, sys.maxsize),
    default=logs.DEFAULT_LIMIT,
    show_default=True,
    help="Stop after this many invocations (oldest first); says so when more remain.",
)
@json_option("Print JSON Lines, one per invocation.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new invocations until Ctrl-C.")
@click.option(
    "--interval",
    type=click.FloatRange(1.0, 86_400.0),  # time.sleep refuses an infinite wait
    default=logs.POLL_SECONDS,
    show_default=True,
    help="With --follow: seconds between two reads of the log group (FilterLogEvents allows "
    "5 requests/s per account and region, shared by every caller).",
)
@click.option(
    "--live-tail",
    is_flag=True,
    help="With --follow: stream through CloudWatch Logs Live Tail instead (billed per minute "
    "of session; needs logs:StartLiveTail); polls when Live Tail is refused.",
)
@friendly_errors
def logs_command(
    user_pool_id: str | None,
    function_name: str | None,
    region: str | None,
    local_dir: Path | None,
    since: str,
    outcomes: tuple[str, ...],
    user_id: str | None,
    limit: int,
    as_json: bool,
    follow: bool,
    interval: float,
    live_tail: bool,
) -> None:
    """Show what the trigger did: time, trigger source, outcome, user id, error code,
    duration and init duration (a cold start), newest last.

    Reads the function's log group (`/aws/lambda/NAME`), or the local stack's invocation
    record when the stack is in use. Only the trigger's own lines are shown, never personal
    data; Lambda's START / END / REPORT lines become the duration columns.
    """
    if live_tail and not follow:
        raise click.UsageError("--live-tail goes with --follow")
    window_length = logs.parse_since(since)
    filters = logs.Filters(frozenset(outcomes), user_id)
    source, arn = _source(user_pool_id, function_name, region, local_dir, follow and live_tail)
    try:
        window = source.read(window_length, filters, limit)
        render.print_logs_window(console, errors, window, as_json=as_json, follow=follow)
        if follow:
            _follow(source, filters, interval, as_json, arn)
    except KeyboardInterrupt:
        errors.print("stopped", style="dim")


def _follow(
    source: logs.CloudWatchLogs | logs.LocalRecord,
    filters: logs.Filters,
    interval: float,
    as_json: bool,
    live_tail_arn: str | None,
) -> None:
    if isinstance(source, logs.CloudWatchLogs):
        how = "through Live Tail" if live_tail_arn else f"a read every {interval:g} s"
        errors.print(f"following: {how}; Ctrl-C stops", style="dim")
        invocations = source.follow(
            filters,
            interval,
            live_tail_arn=live_tail_arn,
            note=lambda text: errors.print(text, style="dim", highlight=False),
        )
    else:
        errors.print("following the local record; Ctrl-C stops", style="dim")
        invocations = source.follow(filters)
    for invocation in invocations:
        render.print_log_invocation(console, invocation, as_json=as_json)


def _source(
    user_pool_id: str | None,
    function_name: str | None,
    region: str | None,
    local_dir: Path | None,
    live_tail: bool,
) -> tuple[logs.CloudWatchLogs | logs.LocalRecord, str | None]:
    """The local stack's record when it is in use (found as doctor finds it), else the
    function's log group (and its ARN, which Live Tail takes)."""
    from livekart_users.deploy.models import Target
    from livekart_users.local import current

    stack = current.in_use(local_dir)
    if stack is not None:
        return logs.LocalRecord(stack.record_file), None
    if not (user_pool_id or function_name):
        raise click.UsageError(
            "--user-pool-id or --function-name is needed (outside the local stack)"
        )
    chosen = aws.resolve_region(region, user_pool_id)
    target = Target(user_pool_id=user_pool_id or "", region=chosen, account="")
    target = replace(target, function=function_name or target.function)
    source = logs.CloudWatchLogs(aws.client("logs", region_name=chosen), target.log_group, chosen)
    if not live_tail:
        return source, None
    account = aws.client("sts", region_name=chosen).get_caller_identity()["Account"]
    return source, replace(target, account=str(account)).log_group_arn
