"""The scheduled reconcile: a Lambda function that keeps the table converging by itself.

A schedule (an EventBridge rule, `rate(15 minutes)`) invokes it; each invocation:
1. **is a run due?** A run in progress (a checkpoint in the state table) always goes on; else
   a new one starts once the last complete run ended `RECONCILE_EVERY_SECONDS` ago or more;
2. **works** through the pool as `livekart-users reconcile --apply` does (the same
   `Reconciler`), checkpointing after each page into the state table, and stops after the
   page that leaves less than `STOP_MARGIN_MS` of the invocation's time: the next invocation,
   15 minutes later at most, goes on from there. A 10 M-user pool (≈ 2.3 h of listing at
   20 requests/s) takes about a dozen invocations; each also reads the users table again;
3. **reports** one log line of counts per invocation and, when a run completes, what it
   created, refreshed and found orphaned as metrics (namespace `LiveKartUsers`, dimension
   `function_name`, `ReconcileRunCompleted` = 1); ids never, personal data never.
It never deletes or erases a row unless `RECONCILE_ERASE_ORPHANS` names an erasure policy,
and then only rows whose user `AdminGetUser` confirms gone. Its reserved concurrency is 1,
so two invocations never work on one run at once.

Why a function and a rule, not Step Functions: the work is one loop with one piece of state,
which a table item carries; a state machine would add a service, a role and a price per
transition for nothing the checkpoint does not already give.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from livekart_users import aws, erasure, reconcile, schema
from livekart_users.checkpoint import TableCheckpoints
from livekart_users.contract import FUNCTION_DIMENSION, METRICS_NAMESPACE, SERVICE
from livekart_users.table import DEFAULT_TABLE, UsersTable

STOP_MARGIN_MS = 120_000  # room for the last page's writes, its checkpoint and the report
DEFAULT_EVERY_SECONDS = 24 * 3600
DEFAULT_RATE = 10.0  # half the CLI's: a run in the background leaves the quota to the rest
REPORTED = {
    "ReconcileListed": "pool_users",
    "ReconcileCreated": "created",
    "ReconcileRefreshed": "refreshed",
    "ReconcileOrphans": "orphans",
    "ReconcileErased": "orphans_erased",
    "ReconcileThrottled": "throttled",
}

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
metrics.set_default_dimensions(
    **{FUNCTION_DIMENSION: os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "local"}
)


def settings(environ: Any = os.environ) -> dict[str, Any]:
    """The function's settings, from its environment (deploy writes them)."""
    erase = (environ.get("RECONCILE_ERASE_ORPHANS") or "").strip()
    return {
        "user_pool_id": environ["USER_POOL_ID"],
        "table": environ.get("USERS_TABLE") or DEFAULT_TABLE,
        "state_table": environ["RECONCILE_STATE_TABLE"],
        "every": int(environ.get("RECONCILE_EVERY_SECONDS") or DEFAULT_EVERY_SECONDS),
        "rate": float(environ.get("RECONCILE_RATE") or DEFAULT_RATE),
        "erase": erasure.parse_policy(erase) if erase else None,
        "extra_fields": schema.parse_extra_fields(environ.get("USERS_EXTRA_FIELDS")),
    }


def handler(event: Any, context: Any) -> dict[str, Any]:
    """One invocation of the schedule: go on with a run, start one if due, or do nothing."""
    options = settings()
    region = os.environ.get("AWS_REGION") or aws.resolve_region(None, options["user_pool_id"])
    cognito, dynamodb = reconcile.clients(region)
    state_client = aws.client("dynamodb", region_name=region)
    return run(
        cognito,
        dynamodb,
        state_client,
        options,
        remaining_ms=context.get_remaining_time_in_millis,
    )


def run(
    cognito: Any,
    dynamodb: Any,
    state_client: Any,
    options: dict[str, Any],
    *,
    remaining_ms: Any,
    now: Any = None,
    **reconciler_options: Any,
) -> dict[str, Any]:
    """The invocation's work, its clients and clock given (tests call this directly)."""
    now = now or (lambda: datetime.now(UTC))
    store = TableCheckpoints(
        state_client, options["state_table"], options["user_pool_id"], options["table"], True
    )
    if store.load() is None and not _due(store, options["every"], now()):
        logger.info("reconcile not due", extra={"outcome": "not_due"})
        return {"outcome": "not_due"}
    reconciler = reconcile.Reconciler(
        cognito,
        UsersTable(dynamodb, options["table"]),
        options["user_pool_id"],
        rate=options["rate"],
        extra_fields=options["extra_fields"],
        checkpoints=store,
        out_of_time=lambda: remaining_ms() < STOP_MARGIN_MS,
        **reconciler_options,
    )
    policy = options["erase"]
    report = reconciler.run(
        apply=True,
        erase_orphans=policy,
        confirm_delete=(lambda _: True) if policy is not None else None,
    )
    if report.complete:
        store.finished(schema.format_timestamp(now()))
    summary = {
        "outcome": "complete" if report.complete else "continues",
        "resumed_at_page": report.resumed_at_page,
        **{name: getattr(report, field) for name, field in REPORTED.items()},
        "to_create": report.to_create,
        "to_refresh": report.to_refresh,
        "invalid": report.invalid,
        "listing_restarts": report.listing_restarts,
    }
    if report.complete:
        # The whole run's counts (a checkpoint carries them across invocations), once.
        metrics.add_metric(name="ReconcileRunCompleted", unit=MetricUnit.Count, value=1)
        for name, field in REPORTED.items():
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=getattr(report, field))
        metrics.flush_metrics()
    logger.info("reconcile " + summary["outcome"], extra=summary)
    return summary


def _due(store: TableCheckpoints, every: int, moment: datetime) -> bool:
    last = store.last_finished()
    if last is None:
        return True
    ended = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return (moment - ended).total_seconds() >= every
