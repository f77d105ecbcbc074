"""The Lambda entry point for the Cognito Post Confirmation and Post Authentication triggers.

`handler(event, context)` dispatches on `triggerSource`:
- `PostConfirmation_ConfirmSignUp`: create the user's row (a replay changes nothing);
- `PostConfirmation_ConfirmForgotPassword`: create the row only if it is missing;
- `PostAuthentication_Authentication`: refresh identity and `lastLoginAt`, or create the row;
- anything else: logged and passed through.

It always returns the event: an exception here would fail the user's sign-up or sign-in, and
a failed write is healed by the next sign-in or by reconcile. All DynamoDB work shares one
deadline (at most 2.5 s) so the invocation, cold start included, ends inside Cognito's 5 s.
Logs carry the user id, trigger source, outcome and error code, never email, name or phone.

Only what a trigger needs is imported here, to keep the Lambda zip and its cold start small.
"""

from __future__ import annotations

import gc
import os
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.cognito_user_pool_event import (
    PostAuthenticationTriggerEvent,
    PostConfirmationTriggerEvent,
)

from livekart_users import aws, schema
from livekart_users.exceptions import InvalidExtraFields, InvalidRecord
from livekart_users.table import DEFAULT_TABLE, Outcome, UsersTable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

SERVICE = "livekart-users"
METRICS_NAMESPACE = "LiveKartUsers"
BUDGET_SECONDS = 2.5
# Kept back from the function's own remaining time, for logging and the reply to Cognito.
RESERVE_SECONDS = 0.3

CONFIRM_SIGN_UP = "PostConfirmation_ConfirmSignUp"
CONFIRM_FORGOT_PASSWORD = "PostConfirmation_ConfirmForgotPassword"
AUTHENTICATION = "PostAuthentication_Authentication"

FAILED = "failed"
IGNORED = "ignored"
METRIC_NAMES = {
    Outcome.CREATED: "UserCreated",
    Outcome.ALREADY_EXISTS: "UserAlreadyExisted",
    Outcome.REFRESHED: "UserRefreshed",
    FAILED: "UserWriteFailed",
}

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
# What the imports built lives as long as the container: move it out of the collector's way,
# so a cold start's first invocation does not pay for a full collection of it (≈ 35 ms, see
# docs/performance.md).
gc.freeze()


@lru_cache(maxsize=4)
def _users_table(name: str, endpoint: str | None, region: str) -> UsersTable:
    """Built once per container (the environment does not change inside one)."""
    del endpoint  # part of the cache key only: boto3 reads AWS_ENDPOINT_URL_DYNAMODB itself
    return UsersTable(aws.client("dynamodb", config=aws.TRIGGER_CONFIG, region_name=region), name)


@lru_cache(maxsize=4)
def _extra_fields(text: str | None) -> dict[str, Any]:
    return schema.parse_extra_fields(text)


def _budget(context: Any) -> float:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        try:
            return max(0.0, min(BUDGET_SECONDS, float(remaining_ms()) / 1000 - RESERVE_SECONDS))
        except Exception:  # a context we do not understand must not cost the sign-up
            pass
    return BUDGET_SECONDS


def handler(event: Any, context: LambdaContext | None) -> Any:
    """Write or refresh the user's row; always return the event to Cognito."""
    started = time.monotonic()
    source = event.get("triggerSource") if isinstance(event, dict) else None
    log: dict[str, Any] = {"trigger_source": source if isinstance(source, str) else None}
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log["request_id"] = request_id
    outcome: str
    try:
        outcome = _dispatch(event, context, log)
    except Exception as exc:  # never break a sign-up or sign-in: heal later instead
        outcome = FAILED
        log["error_code"] = aws.error_code(exc)
        if isinstance(exc, aws.DeadlineExceeded) and exc.last_error is not None:
            log["last_error_code"] = aws.error_code(exc.last_error)
    log["outcome"] = str(outcome)
    log["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    _report(outcome, log)
    return event


def _dispatch(event: Any, context: Any, log: dict[str, Any]) -> str:
    source = log["trigger_source"]
    if source not in (CONFIRM_SIGN_UP, CONFIRM_FORGOT_PASSWORD, AUTHENTICATION):
        return IGNORED
    typed = (
        PostAuthenticationTriggerEvent(event)
        if source == AUTHENTICATION
        else PostConfirmationTriggerEvent(event)
    )
    attributes = typed.request.user_attributes
    if not isinstance(attributes, dict):
        raise InvalidRecord(["request.userAttributes: must be a map"])
    uid = schema.user_id(attributes)
    log["user_id"] = uid
    username = typed.get("userName")
    # userName is always there from Cognito; without it the row is keyed and named by sub.
    username = username if isinstance(username, str) and username else (uid or "")

    claimed = attributes.get("custom:role")
    if schema.role_was_downgraded(claimed):
        # Which role was asked for, but only from the known names: free text stays out of logs.
        asked = str(claimed).strip().lower()
        log["requested_role"] = asked if asked in schema.ROLES else "unknown"
        log["role_assigned"] = schema.CUSTOMER

    extra = _configured_extra_fields(log)
    # The deadline starts before the client is built: a cold start's client build counts too.
    deadline = aws.Deadline(_budget(context))
    table = _users_table(
        os.environ.get("USERS_TABLE") or DEFAULT_TABLE,
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL"),
        aws.region(),
    )
    timestamp = schema.now()

    if source == AUTHENTICATION:
        return table.record_sign_in(
            attributes, username, timestamp=timestamp, extra_fields=extra, deadline=deadline
        )
    # A password reset is not a sign-up: it creates the row only if a sign-up write was lost.
    item = schema.new_record(attributes, username, timestamp=timestamp, extra_fields=extra)
    created = table.create_if_absent(item, deadline=deadline)
    return Outcome.CREATED if created else Outcome.ALREADY_EXISTS


def _configured_extra_fields(log: dict[str, Any]) -> dict[str, Any]:
    """USERS_EXTRA_FIELDS, or none when it is invalid: bad configuration never fails a sign-up."""
    try:
        return _extra_fields(os.environ.get("USERS_EXTRA_FIELDS"))
    except InvalidExtraFields:
        log["config_error"] = "InvalidExtraFields"
        return {}


def _report(outcome: str, log: dict[str, Any]) -> None:
    """One log line per invocation, and one metric; neither may raise."""
    try:
        if outcome == FAILED:
            logger.error("user record not written", extra=log)
        elif outcome == IGNORED:
            logger.info("trigger source not handled; passed through", extra=log)
        else:
            logger.info("user record " + outcome.replace("_", " "), extra=log)
        if "config_error" in log:
            logger.error(
                "USERS_EXTRA_FIELDS is invalid and was ignored; run "
                "`livekart-users deploy` to validate it",
                extra=log,
            )
        metric = METRIC_NAMES.get(outcome)
        if metric:
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=1)
            metrics.flush_metrics()
    except Exception:  # logging must never cost a sign-up
        pass
