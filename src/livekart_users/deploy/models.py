"""What should exist on AWS for the trigger: plain data, no I/O.

The planner compares these with what it reads; the CloudFormation template and `doctor` use
the same definitions, so there is one statement of least privilege.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from livekart_users import schema
from livekart_users.table import DEFAULT_TABLE, EMAIL_INDEX
from livekart_users.triggers import (
    FAILED,
    FUNCTION_DIMENSION,
    METRIC_NAMES,
    METRICS_NAMESPACE,
    SERVICE,
    UNKNOWN,
)

DEFAULT_FUNCTION = "livekart-post-confirmation-trigger"
DEFAULT_ROLE = "livekart-cognito-trigger-role"
POLICY_NAME = "livekart-users-trigger"
PERMISSION_ID = "livekart-users-cognito-invoke"
# The pool's triggers name this alias, never the bare function: deploy updates `$LATEST`,
# publishes it as a version once it is complete, then moves the alias in one call, so Cognito
# never invokes half-updated code (see docs/deploy.md, "No downtime").
ALIAS = "live"
HANDLER = "livekart_users.triggers.handler"
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
FAILED_METRIC = METRIC_NAMES[FAILED]
UNKNOWN_METRIC = METRIC_NAMES[UNKNOWN]
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
    # What the change handler does to a deleted user's row (livekart_users.erasure).
    erasure_policy: str = field(default_factory=lambda: _env("USERS_ERASURE_POLICY", "anonymize"))

    @property
    def partition(self) -> str:
        if self.region.startswith("cn-"):
            return "aws-cn"
        return "aws-us-gov" if self.region.startswith("us-gov-") else "aws"

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
