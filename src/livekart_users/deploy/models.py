"""What should exist on AWS: plain data, no I/O, for every resource deploy manages.

- the sign-up trigger: its table, role, function, invoke permission, log group and alarm;
- the change handler (deletions, attribute edits and enable/disable reach the table without a
  sign-in, see `livekart_users.changes`): its own role and function, an EventBridge rule on
  this pool's CloudTrail events, a dead-letter queue, its invoke permission and an alarm on
  the events it drops.

Each function and each role is described the same way (`FunctionModel`, `RoleModel`) so one
planner handles both. The planner compares these with what it reads; the CloudFormation
template and `doctor` use the same definitions, so there is one statement of least privilege.
Nothing here imports a Lambda entry module: the names both sides share are in `contract`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from livekart_users import contract, erasure, schema
from livekart_users.aws import partition_of
from livekart_users.contract import FUNCTION_DIMENSION, METRICS_NAMESPACE, SERVICE
from livekart_users.table import DEFAULT_TABLE, EMAIL_INDEX

DEFAULT_FUNCTION = "livekart-post-confirmation-trigger"
DEFAULT_ROLE = "livekart-cognito-trigger-role"
POLICY_NAME = "livekart-users-trigger"
PERMISSION_ID = "livekart-users-cognito-invoke"
# The pool's triggers name this alias, never the bare function: deploy updates `$LATEST`,
# publishes it as a version once it is complete, then moves the alias in one call, so Cognito
# never invokes half-updated code (see docs/deploy.md, "No downtime").
ALIAS = "live"
HANDLER = contract.TRIGGER_HANDLER
RUNTIME = "python3.13"
DEFAULT_ARCHITECTURE = "arm64"
# Cognito gives a trigger 5 s including the cold start; the handler's own deadline is 2.5 s.
TIMEOUT_SECONDS = 4
# Lambda gives CPU in proportion to memory (1,769 MB = one vCPU), and a cold sign-up is CPU
# work (imports, the client's models): measured as Lambda runs it (bench/lambda_cold.py,
# docs/performance.md), 256 MB took ≈ 2.8 s, past the 1 s a sign-up may spend starting, and
# this size meets it. docs/deploy.md says what it costs and how to choose another.
MEMORY_MB = 1024
MEMORY_RANGE = (128, 10240)  # what Lambda accepts, in MB
LOG_RETENTION_DAYS = 30
# CloudWatch Logs accepts only these retention periods (PutRetentionPolicy refuses others).
RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip
OWNER_TAG = ("managed-by", "livekart-users")
# The CloudFormation template tags its resources with the stack's name: `destroy` never
# deletes what a stack owns (deleting the stack does, after `livekart-users detach`).
STACK_TAG = "livekart-users:stack"
# The alarm counts writes that certainly did not land (refused, or never sent); writes whose
# answer never came (UNKNOWN_METRIC) may have landed and are reported beside it, not alarmed.
FAILED_METRIC = contract.WRITE_FAILED_METRIC
UNKNOWN_METRIC = contract.WRITE_UNKNOWN_METRIC
NAMESPACE = METRICS_NAMESPACE
TRIGGER_SLOTS = ("PostConfirmation", "PostAuthentication")
# Lambda refuses these in a function's environment (the original guide set AWS_REGION).
RESERVED_VARIABLES = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_LAMBDA_RUNTIME_API",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
    }
)


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Target:
    """Where deploy works and the names it uses (flag > environment variable > default)."""

    user_pool_id: str
    region: str
    account: str
    table: str = field(default_factory=lambda: _env("USERS_TABLE", DEFAULT_TABLE))
    function: str = field(default_factory=lambda: _env("LIVEKART_FUNCTION", DEFAULT_FUNCTION))
    role: str = field(default_factory=lambda: _env("LIVEKART_ROLE", DEFAULT_ROLE))
    architecture: str = DEFAULT_ARCHITECTURE
    memory_mb: int = MEMORY_MB
    log_retention_days: int = LOG_RETENTION_DAYS
    extra_fields: str | None = None
    alarm_topic_arn: str | None = None
    # How many days point-in-time recovery keeps (DynamoDB's RecoveryPeriodInDays, 1-35):
    # an erased user's data stays restorable that long. None: the table's own (35 on a new
    # table, DynamoDB's default), left as it is.
    recovery_period_days: int | None = None
    # What the change handler does to a deleted user's row (livekart_users.erasure).
    erasure_policy: str = field(default_factory=lambda: _env("USERS_ERASURE_POLICY", "anonymize"))
    # The change handler's names start with this and carry the pool id (`ChangeNames`); the
    # CloudFormation template has a prefix of its own, so a stack never collides with deploy.
    change_prefix: str = "livekart-users-changes"
    # The scheduled reconcile (`deploy --reconcile-every`): how often a complete run starts,
    # in seconds (None: not deployed by this run), and whether it erases confirmed orphans
    # by `erasure_policy` (never unless asked).
    reconcile_every_seconds: int | None = None
    reconcile_erase_orphans: bool = False
    reconcile_prefix: str = "livekart-users-reconcile"

    @property
    def partition(self) -> str:
        return partition_of(self.region)

    @property
    def pool_arn(self) -> str:
        return (
            f"arn:{self.partition}:cognito-idp:{self.region}:{self.account}:"
            f"userpool/{self.user_pool_id}"
        )

    @property
    def table_arn(self) -> str:
        return f"arn:{self.partition}:dynamodb:{self.region}:{self.account}:table/{self.table}"

    @property
    def function_arn(self) -> str:
        return f"arn:{self.partition}:lambda:{self.region}:{self.account}:function:{self.function}"

    @property
    def alias_arn(self) -> str:
        """What the pool's triggers point at."""
        return f"{self.function_arn}:{ALIAS}"

    @property
    def permission_id(self) -> str:
        """One invoke-permission statement per pool, so pools sharing the function are
        independent (statement ids allow letters, digits, - and _; a pool id has only those)."""
        return f"{PERMISSION_ID}-{self.user_pool_id}"

    @property
    def role_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:role/{self.role}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function}"

    @property
    def log_group_arn(self) -> str:
        return f"arn:{self.partition}:logs:{self.region}:{self.account}:log-group:{self.log_group}"

    @property
    def alarm_name(self) -> str:
        return f"{self.function}-failed-writes"


def trust_policy(account: str | None = None) -> dict[str, Any]:
    """Only Lambda may assume the role; with `account`, only on behalf of this account
    (the confused-deputy condition AWS recommends for service roles)."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    if account is not None:
        statement["Condition"] = {"StringEquals": {"aws:SourceAccount": account}}
    return {"Version": "2012-10-17", "Statement": [statement]}


def role_policy(target: Target) -> dict[str, Any]:
    """Exactly what the trigger does: two conditional writes, and its own log streams."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "WriteUserRecords",
                "Effect": "Allow",
                "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
                "Resource": target.table_arn,
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{target.log_group_arn}:log-stream:*",
            },
        ],
    }


def environment(target: Target) -> dict[str, str]:
    """The function's variables: only what it needs, never a reserved one.

    Raises InvalidExtraFields before a bad configuration can reach a sign-up.
    """
    variables = {"USERS_TABLE": target.table, "POWERTOOLS_SERVICE_NAME": SERVICE}
    if target.extra_fields:
        parsed = schema.parse_extra_fields(target.extra_fields)
        # Stored compact and sorted, so the planner compares like with like.
        variables["USERS_EXTRA_FIELDS"] = json.dumps(
            parsed, sort_keys=True, separators=(",", ":"), default=str
        )
    return variables


def function_settings(target: Target) -> dict[str, Any]:
    """The function configuration the planner compares (code aside)."""
    return {
        "Runtime": RUNTIME,
        "Handler": HANDLER,
        "Role": target.role_arn,
        "Timeout": TIMEOUT_SECONDS,
        "MemorySize": target.memory_mb,
        "Architectures": [target.architecture],
        "Environment": {"Variables": environment(target)},
    }


def invoke_permission(target: Target) -> dict[str, Any]:
    """Cognito, from this pool of this account only (the guide's wildcard account is a gap)."""
    return {
        "StatementId": target.permission_id,
        "Action": "lambda:InvokeFunction",
        "Principal": "cognito-idp.amazonaws.com",
        "SourceArn": target.pool_arn,
        "SourceAccount": target.account,
    }


def metric_dimensions(target: Target) -> list[dict[str, str]]:
    """The dimensions of this deployment's metrics: the function's name tells two apart."""
    return [
        {"Name": FUNCTION_DIMENSION, "Value": target.function},
        {"Name": "service", "Value": SERVICE},
    ]


def alarm(target: Target) -> dict[str, Any]:
    """Any failed write in 5 minutes: the trigger swallows errors, so this is how one learns."""
    actions = [target.alarm_topic_arn] if target.alarm_topic_arn else []
    return {
        "AlarmName": target.alarm_name,
        "AlarmDescription": (
            f"{target.function} could not write a user record: DynamoDB refused the write or "
            f"it was never sent ({FAILED_METRIC}). Writes sent and never answered may have "
            f"landed and are not counted here ({UNKNOWN_METRIC}). The sign-up or sign-in "
            "still succeeded; the next sign-in or `livekart-users reconcile` heals it"
        ),
        "Namespace": METRICS_NAMESPACE,
        "MetricName": FAILED_METRIC,
        "Dimensions": metric_dimensions(target),
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": actions,
        "OKActions": [],
    }


def table_spec(target: Target) -> dict[str, Any]:
    """The users table as CreateTable takes it."""
    return {
        "TableName": target.table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "user_id", "AttributeType": "S"},
            {"AttributeName": "email", "AttributeType": "S"},
        ],
        "KeySchema": [{"AttributeName": "user_id", "KeyType": "HASH"}],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": EMAIL_INDEX,
                "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        "DeletionProtectionEnabled": True,
        "Tags": [{"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}],
    }


# --- each function and each role, described alike (one planner for both) ------------------


@dataclass(frozen=True)
class RoleModel:
    """A function's execution role: trusts Lambda for this account only, one inline policy."""

    name: str
    policy_name: str
    policy: dict[str, Any]
    description: str
    summary: str  # what the policy allows, for the plan


@dataclass(frozen=True)
class FunctionModel:
    """A function's desired `$LATEST`: settings compared one by one, and its code."""

    name: str
    arn: str
    settings: dict[str, Any]  # as CreateFunction takes them, code aside
    description: str
    summary: str
    log_group: str
    # Lambda's reserved concurrency: a ceiling on this function, and a floor no other takes.
    reserved_concurrency: int | None = None


def trigger_role(target: Target) -> RoleModel:
    return RoleModel(
        name=target.role,
        policy_name=POLICY_NAME,
        policy=role_policy(target),
        description="livekart-users Cognito trigger",
        summary=f"PutItem/UpdateItem on {target.table}, own log streams",
    )


def trigger_function(target: Target) -> FunctionModel:
    return FunctionModel(
        name=target.function,
        arn=target.function_arn,
        settings=function_settings(target),
        description="livekart-users: Cognito → DynamoDB users table",
        summary=f"{RUNTIME}, {target.architecture}, {TIMEOUT_SECONDS} s, {target.memory_mb} MB",
        log_group=target.log_group,
    )


# --- the change handler -------------------------------------------------------------------

CHANGE_HANDLER = contract.CHANGE_HANDLER
# Asynchronous, no one waiting: room for a few patient Cognito and DynamoDB calls.
CHANGE_TIMEOUT_SECONDS = 60
CHANGE_MEMORY_MB = 256
# The change handler's reserved concurrency: at most this many events at once. A bulk admin
# script fans out one invocation per event; unbounded, they would take the account's
# concurrency from the synchronous triggers (Cognito fails a sign-up or sign-in whose trigger
# cannot run) and its ListUsers quota (30 requests/s per account and region, not adjustable,
# shared with every caller) from everything else. An event costs one Cognito read (AdminGetUser,
# UserRead quota 120/s; ListUsers only when the row names no user) and takes ≈ 0.1-0.3 s, so 2
# at once is at most ≈ 20 Cognito reads/s, under both quotas with room for the app's own calls.
# Events beyond it wait in Lambda's asynchronous queue (retried up to 6 h), none is lost.
# docs/deploy.md, "Change handler concurrency".
CHANGE_CONCURRENCY = 2
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum
CHANGE_POLICY_NAME = "livekart-users-changes"
CHANGE_PERMISSION_ID = "livekart-users-events-invoke"
CHANGE_TARGET_ID = "livekart-users-change-handler"
# EventBridge retries a failed delivery to Lambda for up to 24 h by default; say so.
TARGET_RETRY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}


def _named_after_pool(prefix: str, pool: str) -> str:
    # Lambda and IAM names stop at 64 characters: a pool id too long for that (real ones are
    # about 20) is replaced by a digest of it.
    if len(pool) > 32:
        pool = hashlib.blake2b(pool.encode(), digest_size=8).hexdigest()
    return f"{prefix}-{pool}"


@dataclass(frozen=True)
class ChangeNames:
    """The change handler's resources for one target: each name carries the pool id, so two
    pools of one account and region never share one."""

    target: Target

    @property
    def stem(self) -> str:
        return _named_after_pool(self.target.change_prefix, self.target.user_pool_id)

    @property
    def function(self) -> str:
        return self.stem

    @property
    def role(self) -> str:
        return f"{self.stem}-role"

    @property
    def queue(self) -> str:
        return f"{self.stem}-dlq"

    @property
    def rule(self) -> str:
        return self.stem

    def _arn(self, service: str, resource: str) -> str:
        t = self.target
        return f"arn:{t.partition}:{service}:{t.region}:{t.account}:{resource}"

    @property
    def function_arn(self) -> str:
        return self._arn("lambda", f"function:{self.function}")

    @property
    def role_arn(self) -> str:
        return f"arn:{self.target.partition}:iam::{self.target.account}:role/{self.role}"

    @property
    def queue_arn(self) -> str:
        return self._arn("sqs", self.queue)

    @property
    def rule_arn(self) -> str:
        return self._arn("events", f"rule/{self.rule}")

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function}"

    @property
    def log_group_arn(self) -> str:
        return self._arn("logs", f"log-group:{self.log_group}")

    @property
    def alarm(self) -> str:
        return f"{self.function}-dropped-events"


def event_pattern(target: Target) -> dict[str, Any]:
    """Exactly the calls the handler handles, that succeeded, of this pool where one is named."""
    admin = sorted(contract.HANDLED - contract.TOKEN_CALLS)
    return {
        "source": [contract.CHANGE_SOURCE],
        "detail-type": [contract.CHANGE_DETAIL_TYPE],
        "detail": {
            "eventSource": ["cognito-idp.amazonaws.com"],
            "errorCode": [{"exists": False}],
            "$or": [
                {"eventName": admin, "requestParameters": {"userPoolId": [target.user_pool_id]}},
                {"eventName": sorted(contract.TOKEN_CALLS)},
            ],
        },
    }


def change_role_policy(target: Target) -> dict[str, Any]:
    """Exactly what the change handler does, on this pool and this table only."""
    names = ChangeNames(target)
    # PutItem writes tombstones (the `delete` policy's, and any policy's for a user confirmed
    # gone who has no row); no policy deletes an item, so that a late write cannot recreate it.
    writes = ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadPoolUsers",
                "Effect": "Allow",
                "Action": ["cognito-idp:ListUsers", "cognito-idp:AdminGetUser"],
                "Resource": target.pool_arn,
            },
            {
                "Sid": "WriteUserRecords",
                "Effect": "Allow",
                "Action": writes,
                "Resource": target.table_arn,
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{names.log_group_arn}:log-stream:*",
            },
            {
                "Sid": "DeadLetters",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": names.queue_arn,
            },
        ],
    }


def queue_policy(target: Target) -> dict[str, Any]:
    """EventBridge may put the rule's undeliverable events in the queue; nothing else may."""
    names = ChangeNames(target)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RuleDeadLetters",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": names.queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": names.rule_arn}},
            }
        ],
    }


def change_function_settings(target: Target) -> dict[str, Any]:
    names = ChangeNames(target)
    return {
        "Runtime": RUNTIME,
        "Handler": CHANGE_HANDLER,
        "Role": names.role_arn,
        "Timeout": CHANGE_TIMEOUT_SECONDS,
        "MemorySize": CHANGE_MEMORY_MB,
        "Architectures": [target.architecture],
        "Environment": {
            "Variables": {
                "USERS_TABLE": target.table,
                contract.USER_POOL_SETTING: target.user_pool_id,
                erasure.ENVIRONMENT_VARIABLE: str(erasure.parse_policy(target.erasure_policy)),
                "POWERTOOLS_SERVICE_NAME": SERVICE,
            }
        },
        "DeadLetterConfig": {"TargetArn": names.queue_arn},
    }


def change_role(target: Target) -> RoleModel:
    names = ChangeNames(target)
    return RoleModel(
        name=names.role,
        policy_name=CHANGE_POLICY_NAME,
        policy=change_role_policy(target),
        description="livekart-users change handler",
        summary="reads this pool's users, updates this table's rows, own logs, its DLQ",
    )


def change_function(target: Target) -> FunctionModel:
    names = ChangeNames(target)
    return FunctionModel(
        name=names.function,
        arn=names.function_arn,
        settings=change_function_settings(target),
        description="livekart-users: pool changes (CloudTrail via EventBridge) → table",
        summary=f"{CHANGE_HANDLER}, {CHANGE_TIMEOUT_SECONDS} s, at most "
        f"{CHANGE_CONCURRENCY} at once, erasure policy "
        f"{erasure.parse_policy(target.erasure_policy)}",
        log_group=names.log_group,
        reserved_concurrency=CHANGE_CONCURRENCY,
    )


def change_alarm(target: Target) -> dict[str, Any]:
    """Any change event dropped in 5 minutes: through the rule, every event should be one the
    handler acts on, so a drop means events are being lost (say, CloudTrail records a call
    without the user's sub, which AWS documents only in general terms)."""
    names = ChangeNames(target)
    actions = [target.alarm_topic_arn] if target.alarm_topic_arn else []
    return {
        "AlarmName": names.alarm,
        "AlarmDescription": (
            f"{names.function} dropped a change event it could not act on "
            f"({contract.CHANGE_DROPPED_METRIC}; its log line says why). The user's row "
            "catches up at their next sign-in or `livekart-users reconcile --apply`"
        ),
        "Namespace": METRICS_NAMESPACE,
        "MetricName": contract.CHANGE_DROPPED_METRIC,
        "Dimensions": [
            {"Name": FUNCTION_DIMENSION, "Value": names.function},
            {"Name": "service", "Value": SERVICE},
        ],
        "Statistic": "Sum",
        "Period": 300,
        "EvaluationPeriods": 1,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "AlarmActions": actions,
        "OKActions": [],
    }


def rule_target(target: Target) -> dict[str, Any]:
    names = ChangeNames(target)
    return {
        "Id": CHANGE_TARGET_ID,
        "Arn": names.function_arn,
        "RetryPolicy": TARGET_RETRY,
        "DeadLetterConfig": {"Arn": names.queue_arn},
    }


def change_invoke_permission(target: Target) -> dict[str, Any]:
    names = ChangeNames(target)
    return {
        "StatementId": CHANGE_PERMISSION_ID,
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": names.rule_arn,
    }


def normalise_policy(document: Any) -> Any:
    """A policy document in one canonical form: parsed (IAM returns it URL-encoded), single
    values as lists, lists sorted, statement ids dropped (they change nothing allowed)."""
    if isinstance(document, str):
        document = json.loads(unquote(document))
    return _canonical(document)


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            inner = _canonical(inner)
            if key in ("Action", "NotAction", "Resource", "NotResource", "Statement") and (
                isinstance(inner, str | dict)
            ):
                inner = [inner]
            out[key] = inner
        if "Effect" in out:
            out.pop("Sid", None)
        return out
    if isinstance(value, list):
        return sorted((_canonical(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


# --- the scheduled reconcile (livekart_users.scheduled) -----------------------------------

RECONCILE_HANDLER = contract.RECONCILE_HANDLER
# Lambda's most: each invocation stops itself 2 minutes before (scheduled.STOP_MARGIN_MS).
RECONCILE_TIMEOUT_SECONDS = 900
# The index of a 10 M-row table takes ≈ 0.75 GB (bench/reconcile_memory.py); CPU scales with
# memory (1,769 MB = one vCPU), and the digests of every row are CPU-bound.
RECONCILE_MEMORY_MB = 2048
# How often the function is invoked: it goes on with a run in progress, or starts one once
# the period has passed since the last complete run. A rule, not EventBridge Scheduler: a
# rule needs no role of its own to invoke the function (a resource policy on the function
# names the rule), and deploy already manages rules.
RECONCILE_SCHEDULE = "rate(15 minutes)"
RECONCILE_RATE = 10.0  # ListUsers requests/s: half the CLI's default, the quota is shared
RECONCILE_POLICY_NAME = "livekart-users-reconcile"
RECONCILE_PERMISSION_ID = "livekart-users-schedule-invoke"
RECONCILE_TARGET_ID = "livekart-users-reconcile"


@dataclass(frozen=True)
class ReconcileNames(ChangeNames):
    """The scheduled reconcile's resources for one target, named after its pool; its
    checkpoint table (`state_table`) has the function's name."""

    @property
    def stem(self) -> str:
        return _named_after_pool(self.target.reconcile_prefix, self.target.user_pool_id)

    @property
    def state_table(self) -> str:
        return self.stem

    @property
    def state_table_arn(self) -> str:
        return self._arn("dynamodb", f"table/{self.state_table}")


def reconcile_role_policy(target: Target) -> dict[str, Any]:
    """What the scheduled reconcile does: read this pool, scan and heal this table, keep its
    checkpoint in its own table, write its own logs. Deleting or erasing rows only when
    configured to (and then only the erasure policy's own calls: no DeleteItem ever)."""
    names = ReconcileNames(target)
    table_actions = ["dynamodb:Scan", "dynamodb:DescribeTable", "dynamodb:PutItem"]
    table_actions += ["dynamodb:UpdateItem"]
    if target.reconcile_erase_orphans:
        # Erasure reads the row, then anonymizes or marks it (UpdateItem) or, for the `delete`
        # policy, writes a tombstone (PutItem): no policy deletes an item (docs/permissions.md).
        table_actions += ["dynamodb:GetItem"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadPoolUsers",
                "Effect": "Allow",
                "Action": [
                    "cognito-idp:DescribeUserPool",
                    "cognito-idp:ListUsers",
                    *(["cognito-idp:AdminGetUser"] if target.reconcile_erase_orphans else []),
                ],
                "Resource": target.pool_arn,
            },
            {
                "Sid": "HealUserRecords",
                "Effect": "Allow",
                "Action": table_actions,
                "Resource": target.table_arn,
            },
            {
                "Sid": "OwnCheckpoint",
                "Effect": "Allow",
                "Action": [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:Query",
                    "dynamodb:DeleteItem",
                ],
                "Resource": names.state_table_arn,
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{names.log_group_arn}:log-stream:*",
            },
        ],
    }


def reconcile_function_settings(target: Target) -> dict[str, Any]:
    names = ReconcileNames(target)
    variables = {
        "USERS_TABLE": target.table,
        "USER_POOL_ID": target.user_pool_id,
        "RECONCILE_STATE_TABLE": names.state_table,
        "RECONCILE_EVERY_SECONDS": str(target.reconcile_every_seconds or 24 * 3600),
        "RECONCILE_RATE": f"{RECONCILE_RATE:g}",
        "RECONCILE_ERASE_ORPHANS": (
            str(erasure.parse_policy(target.erasure_policy))
            if target.reconcile_erase_orphans
            else ""
        ),
        "POWERTOOLS_SERVICE_NAME": SERVICE,
    }
    if target.extra_fields:
        variables["USERS_EXTRA_FIELDS"] = target.extra_fields
    return {
        "Runtime": RUNTIME,
        "Handler": RECONCILE_HANDLER,
        "Role": names.role_arn,
        "Timeout": RECONCILE_TIMEOUT_SECONDS,
        "MemorySize": RECONCILE_MEMORY_MB,
        "Architectures": [target.architecture],
        "Environment": {"Variables": variables},
    }


def reconcile_role(target: Target) -> RoleModel:
    return RoleModel(
        name=ReconcileNames(target).role,
        policy_name=RECONCILE_POLICY_NAME,
        policy=reconcile_role_policy(target),
        description="livekart-users scheduled reconcile",
        summary="lists this pool, scans and heals this table, its own checkpoint table and logs",
    )


def reconcile_function(target: Target) -> FunctionModel:
    names = ReconcileNames(target)
    every = target.reconcile_every_seconds or 24 * 3600
    erase = (
        f"erases confirmed orphans ({erasure.parse_policy(target.erasure_policy)})"
        if target.reconcile_erase_orphans
        else "never erases"
    )
    return FunctionModel(
        name=names.function,
        arn=names.function_arn,
        settings=reconcile_function_settings(target),
        description="livekart-users: scheduled reconcile of the pool into the table",
        summary=f"{RECONCILE_HANDLER}, a run every {every} s, {erase}",
        log_group=names.log_group,
    )


def reconcile_rule_target(target: Target) -> dict[str, Any]:
    return {"Id": RECONCILE_TARGET_ID, "Arn": ReconcileNames(target).function_arn}


def reconcile_invoke_permission(target: Target) -> dict[str, Any]:
    names = ReconcileNames(target)
    return {
        "StatementId": RECONCILE_PERMISSION_ID,
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": names.rule_arn,
        "SourceAccount": target.account,
    }
