"""The setup guide's checklist and troubleshooting as checks, each with a result and a fix.

Stages: `Reads` reads each AWS resource at most once per run (checks that run at the same
time share one read) → every `Check` turns what was read into a `Result` (pass / warn / fail /
skip, a one-line finding, and the fix where it is not a pass) → `run` returns the results in
the checklist's order. Checks are independent, so they run concurrently. Nothing here
prints; nothing here changes anything except `--probe`'s synthetic row, which it removes.
`--fix` is deploy's own plan → apply (`plan_fixes`), so a fix can never do what deploy would not.

Against the local stack the checks without a local counterpart (IAM, Lambda, CloudWatch,
point-in-time recovery, the pool's `LambdaConfig`) are skipped, and the triggers are checked
in cognito-local's config file instead, which is where cognito-local takes them from.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from threading import Lock
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from livekart_users import aws
from livekart_users.deploy import models
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.exceptions import LivekartUsersError, PoolNotFound
from livekart_users.table import EMAIL_INDEX, PoolCensus, UsersTable

if TYPE_CHECKING:
    from pathlib import Path

    from livekart_users.deploy.plan import Plan
    from livekart_users.local.stack import LocalStack

T = TypeVar("T")
LOCAL_ACCOUNT = "000000000000"
LOG_WINDOW_SECONDS = 24 * 3600
LOG_PAGES = 10  # at most this many pages of failed writes are read for their error codes
METRIC_PAGES = 10  # GetMetricData pages; more than this and the count is reported incomplete
METRIC_PERIOD = 3600
FAILED_WRITES_PATTERN = '{ $.outcome = "failed" }'
# With JSON logs, Lambda's own report of each invocation: "success", "failure", "timeout" or
# "error" (the Telemetry API's platform.report record). A timed-out or crashed invocation
# emits none of the handler's metrics, and leaves a confirmed user without a row.
FAILED_REPORTS_PATTERN = '{ $.type = "platform.report" && $.record.status != "success" }'
LAMBDA_NAMESPACE = "AWS/Lambda"
LAMBDA_ERRORS, LAMBDA_THROTTLES = "Errors", "Throttles"
# Reads that may be throttled (FilterLogEvents allows 5 requests/s per account and region,
# shared): retried this many times, then the check that needed them says it is incomplete.
READ_ATTEMPTS = 4
THROTTLED_CODES = frozenset(
    {"ThrottlingException", "TooManyRequestsException", "LimitExceededException", "Throttling"}
)
PROBE_PREFIX = "livekart-doctor-probe-"
# Past their end of support in Lambda (the original guide used nodejs18.x).
NODE = ("", "4.3", "4.3-edge", "6.10", "8.10", "10.x", "12.x", "14.x", "16.x", "18.x")
DEPRECATED_RUNTIMES = frozenset(
    [f"nodejs{v}" for v in NODE]
    + [f"python{v}" for v in ("2.7", "3.6", "3.7", "3.8", "3.9")]
    + [f"dotnetcore{v}" for v in ("1.0", "2.0", "2.1", "3.1")]
    + ["dotnet5.0", "dotnet6", "dotnet7", "ruby2.5", "ruby2.7", "java8", "go1.x", "provided"]
)
# Runtimes our handler runs on, though deploy builds for models.RUNTIME.
COMPATIBLE_RUNTIMES = frozenset({"python3.11", "python3.12"})
NEEDED_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")


class Status(StrEnum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Result:
    """What one check found: its status, one line saying what, and the fix unless it passed."""

    name: str
    status: Status
    finding: str
    fix: str | None = None


class CannotRun(LivekartUsersError):
    """doctor could not read what it checks (no access, or the service did not answer)."""

    def __init__(self, exc: Exception) -> None:
        code = aws.error_code(exc)
        if isinstance(exc, NoCredentialsError):
            message = "no AWS credentials found: configure a profile or set AWS_PROFILE"
        elif isinstance(exc, ClientError):
            operation = getattr(exc, "operation_name", "a read")
            message = f"doctor could not run: {operation} was refused ({code})"
            if "denied" in code.lower() or "unauthorized" in code.lower():
                message += ": it needs read access to DynamoDB, IAM, Lambda, Cognito, CloudWatch"
                message += " and CloudWatch Logs"
        else:
            message = f"doctor could not run: {code}: {exc}"
        super().__init__(message)


class ReadThrottled(LivekartUsersError):
    """A read stayed throttled through every retry: the check that needed it is incomplete."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        super().__init__(f"{operation} stayed throttled after {READ_ATTEMPTS} attempts")


# --- reading each resource once ---------------------------------------------------------


class Reads:
    """Each read of one run, made once: concurrent checks that need it wait for one answer."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._answers: dict[Hashable, Future[Any]] = {}

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        with self._lock:
            answer = self._answers.get(key)
            first = answer is None
            if answer is None:
                answer = self._answers[key] = Future()
        if first:
            try:
                answer.set_result(read())
            except BaseException as exc:
                answer.set_exception(exc)
        result: T = answer.result()
        return result


@dataclass
class Context:
    """What the checks of one run share: where to look, the clients, and the reads."""

    target: Target
    clients: Clients
    local: LocalStack | None = None
    probe: bool = False
    now: Callable[[], float] = time.time
    reads: Reads = field(default_factory=Reads)
    sleep: Callable[[float], None] = time.sleep

    def patiently(self, read: Callable[[], T]) -> T:
        """`read()`, again after a pause while it is throttled (`ReadThrottled` at the end)."""
        for attempt in range(READ_ATTEMPTS):
            try:
                return read()
            except ClientError as exc:
                if aws.error_code(exc) not in THROTTLED_CODES:
                    raise
                if attempt == READ_ATTEMPTS - 1:
                    raise ReadThrottled(getattr(exc, "operation_name", "a read")) from exc
            self.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def deploy(self) -> str:
        return f"livekart-users deploy --user-pool-id {self.target.user_pool_id}"

    @property
    def reconcile(self) -> str:
        return f"livekart-users reconcile --user-pool-id {self.target.user_pool_id} --apply"

    # DynamoDB
    def table(self) -> dict[str, Any] | None:
        t = self.target
        answer = self.reads.get(
            ("table", t.table),
            lambda: aws.unless_missing(
                lambda: self.clients.dynamodb.describe_table(TableName=t.table)
            ),
        )
        return None if answer is None else dict(answer["Table"])

    def pool_census(self) -> PoolCensus:
        """Whose rows the table holds (a bounded scan of `userPoolId`)."""
        t = self.target
        return self.reads.get(
            ("census", t.table), lambda: UsersTable(self.clients.dynamodb, t.table).pool_census()
        )

    def point_in_time_recovery(self) -> str:
        t = self.target
        answer = self.reads.get(
            ("backups", t.table),
            lambda: self.clients.dynamodb.describe_continuous_backups(TableName=t.table),
        )
        description = answer["ContinuousBackupsDescription"]
        pitr = description.get("PointInTimeRecoveryDescription") or {}
        return str(pitr.get("PointInTimeRecoveryStatus", "DISABLED"))

    # IAM
    def role(self) -> dict[str, Any] | None:
        name = self.target.role
        answer = self.reads.get(
            ("role", name),
            lambda: aws.unless_missing(lambda: self.clients.iam.get_role(RoleName=name)),
        )
        return None if answer is None else dict(answer["Role"])

    def managed_policies(self) -> list[dict[str, Any]]:
        name = self.target.role
        return list(
            self.reads.get(
                ("attached", name),
                lambda: _pages(
                    self.clients.iam,
                    "list_attached_role_policies",
                    "AttachedPolicies",
                    RoleName=name,
                ),
            )
        )

    def statements(self) -> list[tuple[str, dict[str, Any]]]:
        """Every statement the role's policies hold, with the policy it came from."""
        return list(self.reads.get(("statements", self.target.role), self._read_statements))

    def _read_statements(self) -> list[tuple[str, dict[str, Any]]]:
        iam, name = self.clients.iam, self.target.role
        found: list[tuple[str, dict[str, Any]]] = []
        for policy in _pages(iam, "list_role_policies", "PolicyNames", RoleName=name):
            document = iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            found += [(f"inline policy {policy}", s) for s in _statements(document)]
        for attached in self.managed_policies():
            arn = attached["PolicyArn"]
            version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
            label = f"managed policy {attached['PolicyName']}"
            found += [(label, s) for s in _statements(document["Document"])]
        return found

    # Lambda
    def qualifier(self) -> str | None:
        """The alias (or version) of our function the pool's triggers name; None for the bare
        function. What runs, and who may invoke it, is read there: deploy points the pool at
        the alias `live`, whose version and permissions are not $LATEST's."""
        if self.local is not None:
            return None
        config = self.pool().get("LambdaConfig") or {}
        prefix = self.target.function_arn + ":"
        for slot in models.TRIGGER_SLOTS:
            arn = str(config.get(slot) or "")
            if arn.startswith(prefix) and arn[len(prefix) :] != "$LATEST":
                return arn[len(prefix) :]
        return None

    def function(self) -> dict[str, Any] | None:
        return self.function_at(self.target.function, self.qualifier())

    def function_at(self, name: str, qualifier: str | None = None) -> dict[str, Any] | None:
        """A function's configuration (of `qualifier`), None when it does not exist."""
        kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
        answer = self.reads.get(
            ("function", name, qualifier),
            lambda: aws.unless_missing(
                lambda: self.clients.lambda_.get_function_configuration(**kwargs)
            ),
        )
        return None if answer is None else dict(answer)

    def invoke_statements(self) -> list[dict[str, Any]]:
        name, qualifier = self.target.function, self.qualifier()
        kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
        answer = self.reads.get(
            ("function policy", name, qualifier),
            lambda: aws.unless_missing(lambda: self.clients.lambda_.get_policy(**kwargs)),
        )
        if answer is None:
            return []
        arn = self.target.function_arn + (f":{qualifier}" if qualifier else "")
        # Each qualifier has its own policy on AWS (moto shares one): keep this one's.
        return [s for s in _statements(answer["Policy"]) if s.get("Resource", [arn]) == [arn]]

    # Cognito
    def pool(self) -> dict[str, Any]:
        pool_id = self.target.user_pool_id
        answer = self.reads.get(
            ("pool", pool_id),
            lambda: aws.unless_missing(
                lambda: self.clients.cognito.describe_user_pool(UserPoolId=pool_id)
            ),
        )
        if answer is None:
            raise PoolNotFound(pool_id, self.target.region)
        return dict(answer["UserPool"])

    def app_clients(self) -> list[dict[str, Any]]:
        pool_id, cognito = self.target.user_pool_id, self.clients.cognito

        def read() -> list[dict[str, Any]]:
            listed = _pages(
                cognito, "list_user_pool_clients", "UserPoolClients", UserPoolId=pool_id
            )
            return [
                cognito.describe_user_pool_client(UserPoolId=pool_id, ClientId=c["ClientId"])[
                    "UserPoolClient"
                ]
                for c in listed
            ]

        return list(self.reads.get(("app clients", pool_id), read))

    # CloudWatch
    def alarm(self) -> dict[str, Any] | None:
        name = self.target.alarm_name
        alarms = self.reads.get(
            ("alarm", name),
            lambda: self.clients.cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"],
        )
        return dict(alarms[0]) if alarms else None

    def write_counts(self) -> dict[str, float] | None:
        """Sums over the window of the metrics the alarm's dimensions name, by metric name:
        the failed writes it counts and the writes of unknown outcome it does not. None when
        CloudWatch's answer was not complete (a partial count is no count)."""
        return self.reads.get(("write counts", self.target.function), self._read_write_counts)

    def _read_write_counts(self) -> dict[str, float] | None:
        # The handler's own metrics, and Lambda's for the function (every version and alias):
        # a timeout, a crash at init or a throttle emits none of the handler's.
        ours = models.metric_dimensions(self.target)
        function = [{"Name": "FunctionName", "Value": self.target.function}]
        metrics = [
            (models.FAILED_METRIC, models.NAMESPACE, ours),
            (models.UNKNOWN_METRIC, models.NAMESPACE, ours),
            (LAMBDA_ERRORS, LAMBDA_NAMESPACE, function),
            (LAMBDA_THROTTLES, LAMBDA_NAMESPACE, function),
        ]
        names = tuple(name for name, _, _ in metrics)
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                    "Period": METRIC_PERIOD,
                    "Stat": "Sum",
                },
            }
            for i, (name, namespace, dims) in enumerate(metrics)
        ]
        ends = datetime.fromtimestamp(self.now(), UTC)
        kwargs: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": ends - timedelta(seconds=LOG_WINDOW_SECONDS),
            "EndTime": ends,
        }
        totals = dict.fromkeys(names, 0.0)
        for _ in range(METRIC_PAGES):
            answer = self.patiently(lambda: self.clients.cloudwatch.get_metric_data(**kwargs))
            statuses = set()
            for result in answer.get("MetricDataResults", []):
                totals[names[int(result["Id"][1:])]] += sum(result.get("Values") or [])
                statuses.add(result.get("StatusCode"))
            token = answer.get("NextToken")
            if not token:
                # "PartialData" without a token, or "InternalError"/"Forbidden": not measured.
                return totals if statuses <= {"Complete"} else None
            kwargs["NextToken"] = token
        return None

    def failed_writes(self) -> tuple[Counter[str], bool] | None:
        """Error codes of the failed writes logged in the window (None: no log group), and
        whether there were more than were counted."""
        return self.reads.get(("failed writes", self.target.log_group), self._read_failed_writes)

    def _read_failed_writes(self) -> tuple[Counter[str], bool] | None:
        kwargs: dict[str, Any] = {
            "logGroupName": self.target.log_group,
            "filterPattern": FAILED_WRITES_PATTERN,
            "startTime": int((self.now() - LOG_WINDOW_SECONDS) * 1000),
        }
        codes: Counter[str] = Counter()
        for _ in range(LOG_PAGES):
            answer = self.patiently(
                lambda: aws.unless_missing(lambda: self.clients.logs.filter_log_events(**kwargs))
            )
            if answer is None:
                return None
            for event in answer.get("events", []):
                line = _json_object(event.get("message", ""))
                # Checked again here: the pattern is the service's job, but not every
                # implementation honours JSON patterns (moto returns every event).
                if line.get("outcome") == "failed":
                    codes[str(line.get("error_code") or "unknown")] += 1
            if not answer.get("nextToken"):
                return codes, False
            kwargs["nextToken"] = answer["nextToken"]
        return codes, True

    def failed_reports(self) -> tuple[Counter[str], bool] | None:
        """Lambda's reports of invocations that did not succeed in the window, by status
        (timeout, error, failure), and whether there were more than were counted; None when
        the function does not log JSON (the plain-text REPORT line carries no status)."""
        config = self.function() or {}
        if (config.get("LoggingConfig") or {}).get("LogFormat") != "JSON":
            return None
        return self.reads.get(("failed reports", self.target.log_group), self._read_reports)

    def _read_reports(self) -> tuple[Counter[str], bool]:
        kwargs: dict[str, Any] = {
            "logGroupName": self.target.log_group,
            "filterPattern": FAILED_REPORTS_PATTERN,
            "startTime": int((self.now() - LOG_WINDOW_SECONDS) * 1000),
        }
        statuses: Counter[str] = Counter()
        for _ in range(LOG_PAGES):
            answer = self.patiently(
                lambda: aws.unless_missing(lambda: self.clients.logs.filter_log_events(**kwargs))
            )
            if answer is None:
                return statuses, False
            for event in answer.get("events", []):
                line = _json_object(event.get("message", ""))
                record = line.get("record") if isinstance(line.get("record"), dict) else {}
                status = str((record or {}).get("status") or "")
                if line.get("type") == "platform.report" and status and status != "success":
                    statuses[status] += 1
            if not answer.get("nextToken"):
                return statuses, False
            kwargs["nextToken"] = answer["nextToken"]
        return statuses, True

    # the local stack
    def cognito_local_config(self) -> dict[str, Any] | None:
        assert self.local is not None
        path = self.local.dir / "cognito" / ".cognito" / "config.json"

        def read() -> dict[str, Any] | None:
            try:
                return dict(json.loads(path.read_text()))
            except (OSError, ValueError):
                return None

        return self.reads.get(("cognito-local config", str(path)), read)

    def local_endpoint(self) -> str | None:
        """The function the local Invoke endpoint serves, or None when it does not answer."""
        assert self.local is not None
        url = self.local.endpoints()["lambda"]

        def read() -> str | None:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # the loopback endpoint
                    return str(json.loads(answer.read()).get("function"))
            except (OSError, ValueError):
                return None

        return self.reads.get(("local endpoint", url), read)


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    for page in client.get_paginator(operation).paginate(**kwargs):
        items += page.get(key, [])
    return items


def _statements(document: Any) -> list[dict[str, Any]]:
    """A policy's statements in normalise_policy's form, each keeping its Sid (to name it)."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    found = document.get("Statement", []) if isinstance(document, dict) else []
    return [
        {**models.normalise_policy(s), **({"Sid": s["Sid"]} if "Sid" in s else {})}
        for s in (found if isinstance(found, list) else [found])
        if isinstance(s, dict)
    ]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --- the checks --------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    status: Status
    finding: str
    fix: str | None = None


def passed(finding: str) -> Verdict:
    return Verdict(Status.PASS, finding)


def warned(finding: str, fix: str) -> Verdict:
    return Verdict(Status.WARN, finding, fix)


def failed(finding: str, fix: str) -> Verdict:
    return Verdict(Status.FAIL, finding, fix)


def skipped(because: str) -> Verdict:
    return Verdict(Status.SKIP, because)


@dataclass(frozen=True)
class Check:
    """One item of the checklist. `local` says why it is skipped against the local stack."""

    name: str
    run: Callable[[Context], Verdict]
    local: str | None = None


CHECKS: list[Check] = []


CheckFunction = Callable[[Context], Verdict]


def check(name: str, *, local: str | None = None) -> Callable[[CheckFunction], CheckFunction]:
    """Add the decorated function to the checklist, under `name`."""

    def register(run: CheckFunction) -> CheckFunction:
        CHECKS.append(Check(name, run, local))
        return run

    return register


NO_IAM = "IAM has no local counterpart"
NO_LAMBDA = "Lambda has no local counterpart (the local Invoke endpoint runs the handler)"
NO_CLOUDWATCH = "CloudWatch has no local counterpart (see invocations.jsonl)"


def _no_table(ctx: Context) -> Verdict | None:
    return None if ctx.table() else skipped(f"table {ctx.target.table} does not exist")


def _no_role(ctx: Context) -> Verdict | None:
    return None if ctx.role() else skipped(f"role {ctx.target.role} does not exist")


def _no_function(ctx: Context) -> Verdict | None:
    return None if ctx.function() else skipped(f"function {ctx.target.function} does not exist")


def _local_fix(ctx: Context) -> str:
    assert ctx.local is not None
    return f"livekart-users local up --dir {ctx.local.dir}"


@check("table")
def table_is_active(ctx: Context) -> Verdict:
    name = ctx.target.table
    fix = _local_fix(ctx) if ctx.local else ctx.deploy
    table = ctx.table()
    if table is None:
        return failed(f"table {name} does not exist: every trigger write fails", fix)
    status = table.get("TableStatus")
    if status == "ACTIVE":
        return passed(f"{name} is ACTIVE")
    if status in ("CREATING", "UPDATING"):
        return warned(f"{name} is {status}", "wait a minute, then run doctor again")
    return failed(f"{name} is {status}: writes fail", fix)


@check("table.key")
def table_key(ctx: Context) -> Verdict:
    if (skip := _no_table(ctx)) is not None:
        return skip
    table = ctx.table() or {}
    keys = [(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])]
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    if keys == [("user_id", "HASH")] and types.get("user_id") == "S":
        return passed("partition key user_id (S), no sort key")
    shown = ", ".join(f"{n} ({types.get(n, '?')}, {kind})" for n, kind in keys)
    return failed(
        f"key is {shown}, not partition key user_id (S) alone: the trigger's writes are refused",
        f"use a table keyed on user_id (S): USERS_TABLE=<new table> {ctx.deploy}",
    )


@check("table.email-index")
def table_email_index(ctx: Context) -> Verdict:
    if (skip := _no_table(ctx)) is not None:
        return skip
    table = ctx.table() or {}
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    index = next(
        (i for i in table.get("GlobalSecondaryIndexes", []) if i["IndexName"] == EMAIL_INDEX),
        None,
    )
    fix = _local_fix(ctx) if ctx.local else ctx.deploy
    if index is None:
        return failed(f"no GSI {EMAIL_INDEX}: users cannot be found by email", fix)
    keys = [(k["AttributeName"], k["KeyType"]) for k in index.get("KeySchema", [])]
    projection = (index.get("Projection") or {}).get("ProjectionType")
    if keys == [("email", "HASH")] and types.get("email") == "S" and projection == "ALL":
        return passed(f"GSI {EMAIL_INDEX} on email (S), projection ALL")
    return failed(
        f"GSI {EMAIL_INDEX} is on {keys}, projection {projection}: not on email (S) with "
        "projection ALL",
        f"delete the index (UpdateTable GlobalSecondaryIndexUpdates Delete {EMAIL_INDEX}), "
        f"then {ctx.deploy}",
    )


@check("table.point-in-time-recovery", local="DynamoDB Local has no point-in-time recovery")
def table_point_in_time_recovery(ctx: Context) -> Verdict:
    if (skip := _no_table(ctx)) is not None:
        return skip
    if ctx.point_in_time_recovery() == "ENABLED":
        return passed("point-in-time recovery is on")
    return warned(
        "point-in-time recovery is off: a bad write or a deleted row cannot be undone",
        ctx.deploy,
    )


@check("table.deletion-protection", local="a local table is disposable (local down --wipe)")
def table_deletion_protection(ctx: Context) -> Verdict:
    if (skip := _no_table(ctx)) is not None:
        return skip
    if (ctx.table() or {}).get("DeletionProtectionEnabled"):
        return passed("deletion protection is on")
    return warned("deletion protection is off: one DeleteTable loses every user's data", ctx.deploy)


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")


@check("table.pools")
def table_pools(ctx: Context) -> Verdict:
    """Rows of other pools are a count, not a fault: each row records its pool and no pool
    changes another's. Rows recording no pool are adopted only by their own pool's writes."""
    if (skip := _no_table(ctx)) is not None:
        return skip
    census = ctx.pool_census()
    pool = ctx.target.user_pool_id
    others = census.others(pool)
    read = "" if census.complete else f" (of the first {census.rows:,} rows read)"
    mine = census.pools.get(pool, 0)
    shared = ", ".join(f"{n:,} of pool {p}" for p, n in sorted(others.items()))
    finding = _rows(mine) + " of this pool" + (f", {shared}" if shared else "") + read
    if census.no_pool:
        record = "records" if census.no_pool == 1 else "record"
        return warned(
            f"{finding}; {_rows(census.no_pool)} {record} no pool (written before rows did): "
            "reconcile reports them apart and never erases them unasked",
            f"{ctx.reconcile} (adopts the rows of this pool's users; run it for each pool "
            "sharing the table)",
        )
    return passed(finding + (": the table is shared, each row records its pool" if shared else ""))


@check("role", local=NO_IAM)
def role_trusts_only_lambda(ctx: Context) -> Verdict:
    role = ctx.role()
    if role is None:
        return failed(f"role {ctx.target.role} does not exist", ctx.deploy)
    others: list[str] = []
    for statement in _statements(role.get("AssumeRolePolicyDocument") or {}):
        if statement.get("Effect") != "Allow":
            continue
        principal = statement.get("Principal")
        if _services(principal) != ["lambda.amazonaws.com"] or len(principal or {}) != 1:
            others.append(json.dumps(principal, sort_keys=True))
        elif set(statement.get("Action", [])) - {"sts:AssumeRole"}:
            others.append("actions " + ", ".join(statement["Action"]))
    if others:
        return failed(
            f"role {ctx.target.role} trusts more than Lambda: {'; '.join(others)}", ctx.deploy
        )
    return passed(f"role {ctx.target.role} exists and trusts only lambda.amazonaws.com")


def _glob(pattern: str, *, ignore_case: bool) -> re.Pattern[str]:
    """An IAM wildcard (`*`, `?`) as a regular expression."""
    body = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(body, re.IGNORECASE if ignore_case else 0)


def _covers(statement: Mapping[str, Any], action: str, resource: str) -> bool:
    def match(key: str, value: str, ignore_case: bool) -> bool | None:
        if key in statement:
            return any(_glob(p, ignore_case=ignore_case).fullmatch(value) for p in statement[key])
        if "Not" + key in statement:
            return not any(
                _glob(p, ignore_case=ignore_case).fullmatch(value) for p in statement["Not" + key]
            )
        return None

    return bool(match("Action", action, True)) and bool(match("Resource", resource, False))


def _allowed(statements: Iterable[Mapping[str, Any]], action: str, resource: str) -> bool:
    allows = denies = False
    for s in statements:
        if _covers(s, action, resource):
            allows |= s.get("Effect") == "Allow"
            denies |= s.get("Effect") == "Deny"
    return allows and not denies


@check("role.grants", local=NO_IAM)
def role_grants(ctx: Context) -> Verdict:
    if (skip := _no_role(ctx)) is not None:
        return skip
    t = ctx.target
    statements = [s for _, s in ctx.statements()]
    stream = f"{t.log_group_arn}:log-stream:2025/01/01/[$LATEST]0123456789abcdef"
    needs = [(a, t.table_arn, f"{a.split(':')[1]} on {t.table}") for a in NEEDED_ACTIONS]
    needs += [(a, stream, f"{a.split(':')[1]} on its log streams") for a in LOG_ACTIONS]
    missing = [label for action, arn, label in needs if not _allowed(statements, action, arn)]
    if missing:
        return failed(f"role {t.role} cannot {', '.join(missing)}", ctx.deploy)
    return passed(f"role {t.role} can PutItem and UpdateItem on {t.table} and write its logs")


@check("role.least-privilege", local=NO_IAM)
def role_least_privilege(ctx: Context) -> Verdict:
    if (skip := _no_role(ctx)) is not None:
        return skip
    t = ctx.target
    broad = [f"managed policy {p['PolicyName']}" for p in ctx.managed_policies()]
    extra: list[str] = []
    needed = {a.lower() for a in (*NEEDED_ACTIONS, *LOG_ACTIONS)}
    own_streams = {f"{t.log_group_arn}:log-stream:*", f"{t.log_group_arn}:*"}
    ours = {t.table_arn, *own_streams}
    for source, statement in ctx.statements():
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            broad.append(f"NotAction/NotResource in {source}")
        for action in statement.get("Action", []):
            if "*" in action or "?" in action:
                broad.append(f"wildcard action {action}")
            elif action.lower() not in needed:
                extra.append(action)
        for resource in statement.get("Resource", []):
            if ("*" in resource or "?" in resource) and resource not in own_streams:
                broad.append(f"wildcard resource {resource} in {source}")
            elif resource not in ours:
                extra.append(f"resource {resource}")
    if broad:
        return failed(f"broader than the trigger needs: {'; '.join(_unique(broad))}", ctx.deploy)
    if extra:
        return warned(f"more than the trigger needs: {', '.join(_unique(extra))}", ctx.deploy)
    return passed("only PutItem/UpdateItem on the table and its own log streams")


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@check("function", local=NO_LAMBDA)
def function_is_active(ctx: Context) -> Verdict:
    config = ctx.function()
    name = ctx.target.function
    if config is None:
        return failed(f"function {name} does not exist", ctx.deploy)
    state, update = config.get("State", "Active"), config.get("LastUpdateStatus", "Successful")
    if state == "Failed" or update == "Failed":
        reason = config.get("StateReasonCode") or config.get("LastUpdateStatusReasonCode") or ""
        return failed(f"function {name} is {state}, last update {update} {reason}", ctx.deploy)
    if state != "Active":
        return warned(f"function {name} is {state}", "wait a minute, then run doctor again")
    return passed(f"function {name} is Active")


@check("function.runtime", local=NO_LAMBDA)
def function_runtime(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    runtime = str((ctx.function() or {}).get("Runtime"))
    if runtime == models.RUNTIME:
        return passed(f"runtime {runtime}")
    if runtime in COMPATIBLE_RUNTIMES:
        return warned(f"runtime {runtime}: deploy builds for {models.RUNTIME}", ctx.deploy)
    deprecated = "a deprecated runtime" if runtime in DEPRECATED_RUNTIMES else "not our runtime"
    return failed(
        f"runtime {runtime} is {deprecated}; the trigger needs {models.RUNTIME}", ctx.deploy
    )


@check("function.handler", local=NO_LAMBDA)
def function_handler(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    handler = (ctx.function() or {}).get("Handler")
    if handler == models.HANDLER:
        return passed(f"handler {handler}")
    return failed(f"handler {handler} is not {models.HANDLER}", ctx.deploy)


@check("function.role", local=NO_LAMBDA)
def function_role(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    role = str((ctx.function() or {}).get("Role", ""))
    if role.rsplit("/", 1)[-1] == ctx.target.role:
        return passed(f"runs as role {ctx.target.role}")
    return failed(f"runs as role {role}, not {ctx.target.role}", ctx.deploy)


def _variables(ctx: Context) -> dict[str, str]:
    return dict(((ctx.function() or {}).get("Environment") or {}).get("Variables") or {})


@check("function.environment", local=NO_LAMBDA)
def function_environment(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    table = _variables(ctx).get("USERS_TABLE")
    if table == ctx.target.table:
        return passed(f"USERS_TABLE={table}")
    shown = f"USERS_TABLE={table}" if table is not None else "USERS_TABLE is not set"
    return failed(f"{shown}, not {ctx.target.table}", ctx.deploy)


@check("function.reserved-variables", local=NO_LAMBDA)
def function_reserved_variables(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    reserved = sorted(set(_variables(ctx)) & models.RESERVED_VARIABLES)
    if not reserved:
        return passed("no reserved variable is set")
    return failed(
        f"sets {', '.join(reserved)}, reserved by Lambda (it rejects the function's next update)",
        ctx.deploy,
    )


@check("function.timeout", local=NO_LAMBDA)
def function_timeout(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    timeout = int((ctx.function() or {}).get("Timeout", 3))
    if timeout <= models.TIMEOUT_SECONDS:
        return passed(f"timeout {timeout} s")
    return failed(
        f"timeout {timeout} s: Cognito gives a trigger 5 s including the cold start, so at most "
        f"{models.TIMEOUT_SECONDS} s",
        ctx.deploy,
    )


def _services(principal: Any) -> list[str]:
    """The service principals of a statement ({"Service": "x"} or {"Service": ["x", …]})."""
    if not isinstance(principal, dict):
        return []
    value = principal.get("Service", [])
    return sorted(value if isinstance(value, list) else [value])


def _condition(statement: Mapping[str, Any], key: str) -> list[str]:
    """The values a statement's condition gives `key` (condition keys ignore case)."""
    values: list[str] = []
    for operator in (statement.get("Condition") or {}).values():
        for name, value in (operator or {}).items():
            if name.lower() == key.lower():
                values += value if isinstance(value, list) else [value]
    return values


def _from_cognito(statement: Mapping[str, Any]) -> bool:
    services = _services(statement.get("Principal"))
    actions = {str(a).lower() for a in statement.get("Action", [])}
    return (
        statement.get("Effect") == "Allow"
        and "cognito-idp.amazonaws.com" in services
        and bool(actions & {"lambda:invokefunction", "lambda:*", "*"})
    )


@check("permission", local=NO_LAMBDA)
def invoke_permission(ctx: Context) -> Verdict:
    if (skip := _no_function(ctx)) is not None:
        return skip
    t = ctx.target
    applies, gaps, elsewhere = False, [], []
    for statement in filter(_from_cognito, ctx.invoke_statements()):
        sources, accounts = (
            _condition(statement, "aws:SourceArn"),
            _condition(statement, "aws:SourceAccount"),
        )
        sid = statement.get("Sid", "?")
        if accounts and t.account not in accounts:
            elsewhere.append(f"account {', '.join(accounts)}")
            continue
        if sources and not any(_glob(s, ignore_case=False).fullmatch(t.pool_arn) for s in sources):
            elsewhere += sources
            continue
        applies = True
        if not sources:
            gaps.append(f"{sid} has no SourceArn: any user pool may invoke it")
        elif any(s.split(":")[4:5] == ["*"] for s in sources):
            gaps.append(
                f"{sid} allows pool {t.user_pool_id} of any account (SourceArn {sources[0]})"
            )
        elif any("*" in s or "?" in s for s in sources):
            gaps.append(f"{sid} has a wildcard SourceArn {sources[0]}")
        if not accounts:
            gaps.append(f"{sid} has no SourceAccount")
    if not applies:
        also = f" (it allows only {', '.join(elsewhere)})" if elsewhere else ""
        return failed(
            f"no permission lets cognito-idp.amazonaws.com invoke {t.function} from "
            f"{t.user_pool_id}{also}: every sign-up fails with AccessDeniedException",
            ctx.deploy,
        )
    if gaps:
        return warned("; ".join(gaps), ctx.deploy)
    return passed(f"Cognito may invoke it from {t.user_pool_id} in account {t.account} only")


TRIGGER_NAMES = {
    "PostConfirmation": "Post Confirmation",
    "PostAuthentication": "Post Authentication",
}
WITHOUT_TRIGGER = {
    "PostConfirmation": "sign-ups write no row",
    "PostAuthentication": "sign-ins neither refresh nor heal rows",
}


def _trigger(slot: str) -> Callable[[Context], Verdict]:
    def run(ctx: Context) -> Verdict:
        return _local_trigger(ctx, slot) if ctx.local else _pool_trigger(ctx, slot)

    return run


def _function_name(arn: str) -> str:
    parts = arn.split(":")
    return parts[6] if len(parts) > 6 and parts[5] == "function" else arn


def _pool_trigger(ctx: Context, slot: str) -> Verdict:
    t = ctx.target
    arn = str((ctx.pool().get("LambdaConfig") or {}).get(slot) or "")
    label = TRIGGER_NAMES[slot]
    if not arn:
        return failed(f"no {label} trigger: {WITHOUT_TRIGGER[slot]}", ctx.deploy)
    if arn == t.function_arn or arn.startswith(t.function_arn + ":"):
        if ctx.function() is None:
            return failed(f"{label} → {arn}, which does not exist: every sign-up fails", ctx.deploy)
        return passed(f"{label} → {arn.split(':function:', 1)[-1]}")
    other = _function_name(arn)
    other = arn if other == t.function else other
    if _missing_function(ctx, arn):
        return failed(
            f"{label} runs {other}, which does not exist: every "
            f"{'sign-up' if slot == 'PostConfirmation' else 'sign-in'} fails",
            f"{ctx.deploy} --force (replaces the missing {other})",
        )
    return failed(
        f"{label} runs {other}, not {t.function}",
        f"{ctx.deploy} --force (replaces {other}'s trigger)",
    )


def _missing_function(ctx: Context, arn: str) -> bool:
    """The function `arn` names does not exist (one we may not read is not called missing)."""
    try:
        return ctx.function_at(arn) is None
    except ClientError as exc:
        if "denied" in aws.error_code(exc).lower():
            return False
        raise


def _local_trigger(ctx: Context, slot: str) -> Verdict:
    assert ctx.local is not None
    t, fix, label = ctx.target, _local_fix(ctx), TRIGGER_NAMES[slot]
    config = ctx.cognito_local_config()
    if config is None:
        return failed(f"cognito-local has no config file in {ctx.local.dir}: no triggers", fix)
    wired = (config.get("TriggerFunctions") or {}).get(slot)
    if not wired:
        return failed(
            f"cognito-local's config has no {label} trigger: {WITHOUT_TRIGGER[slot]}", fix
        )
    if wired != t.function:
        return failed(f"cognito-local's config runs {wired} for {label}, not {t.function}", fix)
    endpoint = ctx.local.endpoints()["lambda"]
    if (config.get("LambdaClient") or {}).get("endpoint") != endpoint:
        return failed(f"cognito-local calls Lambda elsewhere than {endpoint}", fix)
    served = ctx.local_endpoint()
    if served != t.function:
        state = "does not answer" if served is None else f"serves {served}"
        return failed(f"the local Invoke endpoint {endpoint} {state}", fix)
    return passed(f"{label} → {t.function} (cognito-local's config, endpoint {endpoint})")


check("triggers.post-confirmation")(_trigger("PostConfirmation"))
check("triggers.post-authentication")(_trigger("PostAuthentication"))


def _role_attribute(ctx: Context) -> dict[str, Any] | None:
    attributes = ctx.pool().get("SchemaAttributes") or []
    return next((a for a in attributes if a.get("Name") == "custom:role"), None)


@check("pool.role-attribute")
def pool_role_attribute(ctx: Context) -> Verdict:
    if _role_attribute(ctx) is not None:
        return passed("the pool has custom:role")
    return warned(
        "the pool has no custom:role attribute: every user becomes a customer",
        f"aws cognito-idp add-custom-attributes --user-pool-id {ctx.target.user_pool_id} "
        "--custom-attributes 'Name=role,AttributeDataType=String,Mutable=false,"
        "StringAttributeConstraints={MinLength=1,MaxLength=32}'",
    )


@check("pool.role-writable")
def pool_role_writable(ctx: Context) -> Verdict:
    attribute = _role_attribute(ctx)
    if attribute is None:
        return skipped("the pool has no custom:role attribute")
    if not attribute.get("Mutable", True):
        return passed("custom:role is immutable: chosen once, at sign-up")
    # An app client without WriteAttributes writes the standard attributes only.
    writers = [
        str(c.get("ClientName") or c.get("ClientId"))
        for c in ctx.app_clients()
        if "custom:role" in (c.get("WriteAttributes") or [])
    ]
    if not writers:
        return passed("custom:role is mutable, but no app client can write it")
    return warned(
        f"custom:role is mutable and app client {', '.join(writers)} can write it: a user can "
        "change the role claim in their own ID token, so the app must authorize from the "
        "table's role, never the token's",
        f"remove custom:role from the WriteAttributes of app client {', '.join(writers)} "
        "(UpdateUserPoolClient, sending its other settings back)",
    )


@check("alarm", local=NO_CLOUDWATCH)
def failed_write_alarm(ctx: Context) -> Verdict:
    t = ctx.target
    alarm = ctx.alarm()
    if alarm is None:
        return failed(
            f"no alarm {t.alarm_name}: a failed write is silent (the trigger never fails a "
            "sign-up)",
            ctx.deploy,
        )
    wanted = models.alarm(t)
    watched = (alarm.get("Namespace"), alarm.get("MetricName"))
    if watched != (wanted["Namespace"], wanted["MetricName"]):
        return failed(f"alarm {t.alarm_name} watches {'/'.join(map(str, watched))}", ctx.deploy)
    dimensions = {d.get("Name"): d.get("Value") for d in alarm.get("Dimensions") or []}
    if dimensions != {d["Name"]: d["Value"] for d in wanted["Dimensions"]}:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(dimensions.items())) or "none"
        return failed(
            f"alarm {t.alarm_name} watches dimensions {shown}, not the ones {t.function} "
            "emits: it cannot fire",
            ctx.deploy,
        )
    if alarm.get("StateValue") == "ALARM":
        return warned(
            f"alarm {t.alarm_name} is in ALARM: writes failed in the last 5 minutes",
            f"{ctx.reconcile} (creates the rows the failed writes missed)",
        )
    if not alarm.get("AlarmActions") or alarm.get("ActionsEnabled") is False:
        why = "its actions are disabled" if alarm.get("AlarmActions") else "it has no actions"
        return warned(
            f"alarm {t.alarm_name} notifies nobody ({why}): failed writes change its state "
            "and no one hears of it",
            f"{ctx.deploy} --alarm-topic-arn "
            f"arn:{t.partition}:sns:{t.region}:{t.account}:TOPIC (an SNS topic someone is "
            "subscribed to)",
        )
    return passed(
        f"alarm {t.alarm_name} counts {models.FAILED_METRIC} of {t.function} (writes refused "
        f"or never sent; not {models.UNKNOWN_METRIC}, writes that may have landed)"
    )


@check("logs.failed-writes", local=NO_CLOUDWATCH)
def failed_writes(ctx: Context) -> Verdict:
    """Counted from the metric the alarm watches: log pages may come back empty while more
    remain, so their absence of failures proves nothing; the logs only say which errors."""
    found = ctx.failed_writes()
    if found is None:
        return warned(
            f"no log group {ctx.target.log_group}: the function has never run, or its logs are "
            "lost (its role may not create log groups), and with them its metrics",
            ctx.deploy,
        )
    counts = ctx.write_counts()
    if counts is None:
        return warned(
            f"failed writes not counted: CloudWatch returned incomplete data for "
            f"{models.FAILED_METRIC} over the last 24 h",
            "run doctor again in a few minutes",
        )
    failures, unknown = (round(counts[m]) for m in (models.FAILED_METRIC, models.UNKNOWN_METRIC))
    errors, throttles = (round(counts.get(m, 0)) for m in (LAMBDA_ERRORS, LAMBDA_THROTTLES))
    reports = ctx.failed_reports()
    if not (failures or unknown or errors or throttles or (reports and reports[0])):
        reported = "; no failed invocation in its JSON logs" if reports is not None else ""
        return passed(
            f"no failed writes in the last 24 h ({models.FAILED_METRIC} and "
            f"{models.UNKNOWN_METRIC} of {ctx.target.function}: 0; {LAMBDA_NAMESPACE} "
            f"{LAMBDA_ERRORS} and {LAMBDA_THROTTLES}: 0{reported})"
        )
    parts = []
    if failures:
        codes, more = found
        why = ", ".join(f"{code} x{n}" for code, n in codes.most_common())
        seen = f"; in the logs read{', at least' if more else ''}: {why}" if why else ""
        parts.append(f"{failures} failed writes ({models.FAILED_METRIC}{seen})")
    if unknown:
        parts.append(
            f"{unknown} writes of unknown outcome, sent and never answered "
            f"({models.UNKNOWN_METRIC}: they may have landed)"
        )
    if errors or throttles:
        # Each may be a confirmed user without a row: a timeout or a crash at init emits
        # none of the handler's metrics, and a throttled trigger never ran.
        parts.append(
            f"{errors} failed and {throttles} throttled invocations ({LAMBDA_NAMESPACE} "
            f"{LAMBDA_ERRORS}/{LAMBDA_THROTTLES}, timeouts and crashes included)"
        )
    if reports and reports[0]:
        statuses, more = reports
        shown = ", ".join(f"{status} x{n}" for status, n in statuses.most_common())
        parts.append(f"invocations reported {shown}{' at least' if more else ''} (platform.report)")
    return warned(
        f"{' and '.join(parts)} in the last 24 h",
        f"{ctx.reconcile} (creates the rows the failed writes missed)",
    )


NO_CLOUDTRAIL = (
    "CloudTrail and EventBridge have no local counterpart (the stack's Cognito endpoint emits "
    "the change events itself)"
)


@check("changes.trail", local=NO_CLOUDTRAIL)
def change_events_trail(ctx: Context) -> Verdict:
    """EventBridge sees Cognito's calls only through a trail logging management writes."""
    from livekart_users.deploy.trail import find_trail, trail_fix

    region = ctx.target.region
    trail = ctx.reads.get(
        ("trail", region), lambda: find_trail(ctx.clients.cloudtrail, region, ctx.target.account)
    )
    if trail.found:
        return passed(trail.describe(region))
    return warned(
        f"no CloudTrail trail logs management write events in {region}: deletions, attribute "
        "changes and enable/disable reach the table only at the next sign-in or reconcile",
        trail_fix(region),
    )


@check("changes.rule", local=NO_CLOUDTRAIL)
def change_events_rule(ctx: Context) -> Verdict:
    """The rule that sends this pool's user changes to the change handler."""
    names = models.ChangeNames(ctx.target)
    rule = aws.unless_missing(lambda: ctx.clients.events.describe_rule(Name=names.rule))
    if rule is None:
        return failed(
            f"no EventBridge rule {names.rule}: deletions and attribute changes never reach "
            "the table without a sign-in",
            ctx.deploy,
        )
    if json.loads(rule.get("EventPattern") or "{}") != models.event_pattern(ctx.target):
        return failed(f"rule {names.rule} does not match exactly this pool's calls", ctx.deploy)
    if rule.get("State") != "ENABLED":
        return failed(f"rule {names.rule} is disabled", ctx.deploy)
    targets = ctx.clients.events.list_targets_by_rule(Rule=names.rule).get("Targets", [])
    if not any(t.get("Arn") == names.function_arn for t in targets):
        return failed(f"rule {names.rule} does not send to {names.function}", ctx.deploy)
    return passed(f"rule {names.rule} sends this pool's user changes to {names.function}")


@check(
    "reconcile.last-run",
    local="the scheduled reconcile runs in AWS only (deploy --reconcile-every)",
)
def scheduled_reconcile(ctx: Context) -> Verdict:
    """The scheduled reconcile, where deployed: when its last complete run ended."""
    names = models.ReconcileNames(ctx.target)
    config = ctx.function_at(names.function)
    if config is None:
        return skipped(
            f"no scheduled reconcile for this pool ({ctx.deploy} --reconcile-every 1d adds one)"
        )
    variables = (config.get("Environment") or {}).get("Variables") or {}
    every = int(variables.get("RECONCILE_EVERY_SECONDS") or 24 * 3600)
    run_key = f"{ctx.target.user_pool_id}#{ctx.target.table}#apply#finished"
    answer = aws.unless_missing(
        lambda: ctx.clients.dynamodb.get_item(
            TableName=names.state_table,
            Key={"run": {"S": run_key}, "part": {"N": "0"}},
            ConsistentRead=True,
        )
    )
    at = ((answer or {}).get("Item") or {}).get("at", {}).get("S")
    logs = f"livekart-users logs --function-name {names.function} (log group {names.log_group})"
    if not at:
        return warned(
            f"the scheduled reconcile {names.function} has not completed a run yet",
            f"a run of a large pool takes hours, in 15-minute invocations; if it stays so, "
            f"see {logs}",
        )
    ended = datetime.fromisoformat(str(at).replace("Z", "+00:00"))
    ago = ctx.now() - ended.timestamp()
    hours = ago / 3600
    # A run starts a period after the last one ended and may take a few hours itself.
    if ago > 2 * every + 6 * 3600:
        return warned(
            f"the scheduled reconcile {names.function} last completed {hours:.1f} h ago; "
            f"it should every {every / 3600:g} h",
            f"see {logs}",
        )
    return passed(
        f"the scheduled reconcile {names.function} last completed {hours:.1f} h ago "
        f"(a run every {every / 3600:g} h)"
    )


@check("probe")
def probe_invocation(ctx: Context) -> Verdict:
    """Invoke the function with a synthetic sign-up, read the row back, then remove it."""
    if not ctx.probe:
        return skipped("run with --probe to invoke the function with a synthetic sign-up")
    if not ctx.local and (skip := _no_function(ctx)) is not None:
        return skip
    t = ctx.target
    fix = _local_fix(ctx) if ctx.local else ctx.deploy
    if ctx.table() is None:
        return skipped(f"table {t.table} does not exist")
    user_id = f"{PROBE_PREFIX}{uuid.uuid4()}"
    key = {"user_id": {"S": user_id}}
    # What Cognito calls: the alias the pool's triggers name (deploy's `live`), not $LATEST.
    qualifier = ctx.qualifier()
    try:
        answer = ctx.clients.lambda_.invoke(
            FunctionName=t.function,
            Payload=json.dumps(probe_event(t, user_id)).encode(),
            **({"Qualifier": qualifier} if qualifier else {}),
        )
        body = _json_object(answer["Payload"].read().decode() or "{}")
        if answer.get("FunctionError"):
            kind = body.get("errorType") or answer["FunctionError"]
            return failed(f"the probe invocation failed ({kind})", fix)
        row = ctx.clients.dynamodb.get_item(TableName=t.table, Key=key, ConsistentRead=True)
    finally:
        ctx.clients.dynamodb.delete_item(TableName=t.table, Key=key)
    if "Item" not in row:
        return failed(
            "the function answered but wrote no row: see role.grants and logs.failed-writes",
            fix,
        )
    called = f" through {t.function}:{qualifier}" if qualifier else ""
    return passed(f"a synthetic sign-up{called} wrote its row (read back, then removed)")


def probe_event(target: Target, user_id: str) -> dict[str, Any]:
    """A Post Confirmation sign-up of a user with no personal data at all."""
    return {
        "version": "1",
        "region": target.region,
        "userPoolId": target.user_pool_id,
        "userName": user_id,
        "callerContext": {"awsSdkVersion": "livekart-users-doctor", "clientId": "doctor"},
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": {
            "userAttributes": {"sub": user_id, "cognito:user_status": "CONFIRMED"},
            "clientMetadata": {},
        },
        "response": {},
    }


# --- running them ------------------------------------------------------------------------


def run(
    target: Target,
    clients: Clients,
    *,
    local: LocalStack | None = None,
    probe: bool = False,
    max_workers: int = 8,
    now: Callable[[], float] = time.time,
    reads: Reads | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Result]:
    """Every check's result, in the checklist's order.

    Raises PoolNotFound when the pool does not exist, and CannotRun when a read is refused
    or a service does not answer. Pass `reads` to reuse what this run read (`fix_target`).
    """
    ctx = Context(
        target, clients, local=local, probe=probe, now=now, reads=reads or Reads(), sleep=sleep
    )
    _guarded(ctx.pool)  # fails fast, and once, when the pool is not there

    def one(item: Check) -> Result:
        if local is not None and item.local:
            verdict = skipped(f"local stack: {item.local}")
        else:
            try:
                verdict = _guarded(lambda: item.run(ctx))
            except ReadThrottled as exc:
                # This check could not finish; the others go on.
                verdict = warned(
                    f"incomplete: {exc.operation} stayed throttled (its quota is shared by "
                    "the account)",
                    "run doctor again in a minute",
                )
        return Result(item.name, verdict.status, verdict.finding, verdict.fix)

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        futures = [pool.submit(one, item) for item in CHECKS]
    return [f.result() for f in futures]


def _guarded(call: Callable[[], T]) -> T:
    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        raise CannotRun(exc) from exc


def exit_status(results: Iterable[Result]) -> int:
    """0 when nothing failed (warnings allowed), 1 when something did."""
    return 1 if any(r.status == Status.FAIL for r in results) else 0


# --- where to look -----------------------------------------------------------------------


def aws_target(user_pool_id: str, region: str) -> tuple[Target, Clients]:
    """The target on AWS (the account from STS) and its clients."""
    clients = Clients.create(region)
    account = _guarded(clients.account)
    return Target(user_pool_id=user_pool_id, region=region, account=account), clients


def describe_target(target: Target) -> dict[str, str]:
    """Where doctor looked, by name (for the JSON report)."""
    return {
        "user_pool_id": target.user_pool_id,
        "region": target.region,
        "account": target.account,
        "table": target.table,
        "function": target.function,
        "role": target.role,
    }


def local_target(stack: LocalStack, user_pool_id: str | None = None) -> tuple[Target, Clients]:
    """The target in a running local stack (its environment must be in use)."""
    state = stack.status()
    region = stack.settings.region
    target = Target(
        user_pool_id=user_pool_id or str(state.user_pool_id),
        region=region,
        account=LOCAL_ACCOUNT,
        table=state.table or stack.settings.table,
        function=stack.settings.function,
    )
    return target, Clients.create(region)


def find_local_stack(
    directory: Path | None = None, environ: Mapping[str, str] | None = None
) -> LocalStack | None:
    """The local stack doctor should look at: `directory`'s, or the one the environment's
    endpoints belong to; None when the environment points at AWS (see local/current.py)."""
    from livekart_users.local import current

    return current.in_use(directory, environ)


# --- fixing: deploy's own plan and apply -------------------------------------------------


def fix_target(target: Target, clients: Clients, reads: Reads | None = None) -> Target:
    """The deploy target that keeps what is configured now: the function's extra fields and
    memory size, and the alarm's topic (deploy would otherwise reset them)."""
    ctx = Context(target, clients, reads=reads or Reads())
    extra = os.environ.get("USERS_EXTRA_FIELDS") or _guarded(
        lambda: _variables(ctx).get("USERS_EXTRA_FIELDS")
    )
    memory = (_guarded(ctx.function) or {}).get("MemorySize")
    alarm = _guarded(ctx.alarm) or {}
    topic = target.alarm_topic_arn or next(iter(alarm.get("AlarmActions") or []), None)
    return replace(
        target,
        extra_fields=extra or target.extra_fields,
        memory_mb=memory if isinstance(memory, int) else target.memory_mb,
        alarm_topic_arn=topic,
    )


def plan_fixes(target: Target, clients: Clients, reads: Reads | None = None) -> Plan:
    """What deploy would change (it never replaces another function's trigger: those slots
    are in `plan.refused`, for `deploy --force`)."""
    from livekart_users.deploy.package import build_zip
    from livekart_users.deploy.planner import plan_deploy

    fixed = fix_target(target, clients, reads)
    return plan_deploy(fixed, clients, code=build_zip(fixed.architecture).data, force=False)


def apply_fixes(plan: Plan, clients: Clients, report: Callable[[Any], None]) -> None:
    from livekart_users.deploy.executor import apply

    apply(plan, clients, report=report)


def fix_command(target: Target) -> str:
    return f"livekart-users doctor --user-pool-id {target.user_pool_id} --fix"


def force_command(target: Target) -> str:
    return f"livekart-users deploy --user-pool-id {target.user_pool_id} --force"
