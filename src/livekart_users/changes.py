"""The Lambda entry point for changes made in the pool: deletions, attribute edits, enable/disable.

Cognito has no trigger for these. It logs its API calls to CloudTrail, and EventBridge hands
them to this function as `detail-type: "AWS API Call via CloudTrail"`, `source:
aws.cognito-idp` (only where a trail logs management write events in the pool's region; best
effort, usually within minutes). `handler(event, context)`:

1. **parses** the event (`ChangeEvent.parse`): a call we handle, that succeeded, naming a
   user `sub` (`detail.additionalEventData.sub`: CloudTrail logs the sub, not the user name,
   and hides sensitive request parameters, so nothing else in the event is trusted), and, when
   the event names a pool, the configured one. Anything else is logged without personal data
   and dropped: a bad event never fails the invocation, so it is never retried in a loop;
2. **asks Cognito** for the user as they are now (`pool_users.find_user`: AdminGetUser by
   the row's user name, ListUsers by sub only when the row names none or another user), never
   the event: events arrive late, twice, or out of order, and the current state is the only
   one worth writing;
3. **writes** the row, only if it is this pool's (`userPoolId`; several pools may share the
   table, and token calls such as `DeleteUser` name no pool, so every pool's handler gets
   them): a deletion confirmed by Cognito → the erasure policy (`erasure.erase`); user
   present → identity and `cognitoEnabled` refreshed as a sign-in refreshes identity
   (`schema.identity`), without `lastLoginAt`, the app's `status` or any app data, and only
   if the row changed since it was read and is not marked deleted. Another pool's row, or a
   user this pool does not have, changes nothing (`other_pool`, `not_in_pool`); an attribute
   event never erases. A row is never created here (sign-in and reconcile do that): a late
   event must not resurrect a deleted user.

A replay reads the same state and writes nothing. AWS errors (throttling, an unreachable
table) are raised: Lambda retries the event, then hands it to the failure destination.
Logs carry the event name, event id, user id and outcome, never email, name or phone.

Only what this needs is imported here, as for the trigger, to keep the cold start small.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from livekart_users import aws, erasure, pool_users, schema
from livekart_users.contract import (
    CHANGE_DETAIL_TYPE,
    CHANGE_DROPPED_METRIC,
    CHANGE_SOURCE,
    FUNCTION_DIMENSION,
    METRICS_NAMESPACE,
)
from livekart_users.contract import DELETIONS as DELETIONS
from livekart_users.contract import HANDLED as HANDLED
from livekart_users.contract import SERVICE as SERVICE
from livekart_users.contract import USER_POOL_SETTING as USER_POOL_SETTING
from livekart_users.exceptions import MissingSetting
from livekart_users.table import DEFAULT_TABLE, UsersTable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# Shared with deploy, which builds the EventBridge rule from them.
DETAIL_TYPE = CHANGE_DETAIL_TYPE
SOURCE = CHANGE_SOURCE
EVENT_SOURCE = "cognito-idp.amazonaws.com"

# Outcomes besides erasure's own (`erasure.Erased`).
REFRESHED = "refreshed"
UNCHANGED = "unchanged"
DROPPED = "dropped"
STILL_IN_POOL = "still_in_pool"
# Nothing changed: the row is another pool's, or the user is not this pool's.
OTHER_POOL = "other_pool"
NOT_IN_POOL = "not_in_pool"
IGNORED_OUTCOMES = frozenset({STILL_IN_POOL, OTHER_POOL, NOT_IN_POOL})

# A refresh that lost a race to another write reads the row again: a few times at most.
REFRESH_ATTEMPTS = 3
_SUB = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_POOL_ARN = re.compile(r":userpool/([\w-]+_[0-9a-zA-Z]+)$")

logger = Logger(service=SERVICE)
# A dropped event is acknowledged (never retried), so a log line alone would lose it unseen:
# each one is counted, and deploy's alarm on the count says events are being lost.
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
metrics.set_default_dimensions(
    **{FUNCTION_DIMENSION: os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or "local"}
)


class Malformed(Exception):
    """An event this function cannot or must not act on; the reason holds no personal data."""


class StillChanging(Exception):
    """The row kept changing under every refresh attempt: Lambda retries the event later."""


@dataclass(frozen=True)
class ChangeEvent:
    """The few trusted facts of one CloudTrail event of a Cognito user pool call."""

    name: str
    sub: str
    user_pool_id: str | None  # None for calls made with an access token (DeleteUser, …)
    event_id: str | None

    @classmethod
    def parse(cls, event: Any, user_pool_id: str) -> ChangeEvent:
        """Raises Malformed saying why the event is not one to act on."""
        if not isinstance(event, dict) or event.get("detail-type") != DETAIL_TYPE:
            raise Malformed("not a CloudTrail API call event")
        detail = event.get("detail")
        if event.get("source") != SOURCE or not isinstance(detail, dict):
            raise Malformed("not a Cognito user pool API call")
        if detail.get("eventSource") != EVENT_SOURCE:
            raise Malformed("not a Cognito user pool API call")
        name = detail.get("eventName")
        if name not in HANDLED:
            raise Malformed("not a call this function handles")
        if detail.get("errorCode"):
            # CloudTrail records failed calls too: nothing changed in the pool.
            raise Malformed("the call failed")
        extra = detail.get("additionalEventData")
        sub = extra.get("sub") if isinstance(extra, dict) else None
        if not isinstance(sub, str) or not _SUB.match(sub):
            raise Malformed("no user sub in additionalEventData")
        named = _pool_named_in(detail)
        if named is not None and named != user_pool_id:
            raise Malformed("another user pool")
        event_id = detail.get("eventID")
        return cls(str(name), sub, named, event_id if isinstance(event_id, str) else None)


def _pool_named_in(detail: Mapping[str, Any]) -> str | None:
    """The pool the event names, if it names one (admin calls do; token calls may not)."""
    parameters = detail.get("requestParameters")
    if isinstance(parameters, dict):
        pool = parameters.get("userPoolId")
        if isinstance(pool, str) and pool:
            return pool
    for resource in detail.get("resources") or []:
        arn = resource.get("ARN") if isinstance(resource, dict) else None
        found = _POOL_ARN.search(arn) if isinstance(arn, str) else None
        if found:
            return found.group(1)
    return None


@dataclass(frozen=True)
class Settings:
    """What the function is configured with (its environment)."""

    user_pool_id: str
    table: str
    policy: erasure.Policy

    @classmethod
    def from_environment(cls) -> Settings:
        """Raises MissingSetting / InvalidErasurePolicy: the event then fails and is retried,
        and kept by the failure destination until the deployment is fixed, not dropped."""
        pool = (os.environ.get(USER_POOL_SETTING) or "").strip()
        if not pool:
            raise MissingSetting(USER_POOL_SETTING)
        return cls(
            pool,
            os.environ.get("USERS_TABLE") or DEFAULT_TABLE,
            erasure.parse_policy(os.environ.get(erasure.ENVIRONMENT_VARIABLE)),
        )


@lru_cache(maxsize=4)
def _clients(region: str, dynamodb_endpoint: str | None, cognito_endpoint: str | None) -> Any:
    """Built once per container (the endpoints are part of the key only)."""
    del dynamodb_endpoint, cognito_endpoint  # boto3 reads AWS_ENDPOINT_URL_* itself
    return (
        aws.client("cognito-idp", config=aws.CHANGES_CONFIG, region_name=region),
        aws.client("dynamodb", config=aws.CHANGES_CONFIG, region_name=region),
    )


def clients() -> Any:
    """(cognito-idp, dynamodb) for this environment: built on first use, then reused (the
    local endpoint builds them at its start, as Lambda's init would)."""
    return _clients(
        aws.region(),
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"),
        os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER"),
    )


def handler(event: Any, context: LambdaContext | None) -> dict[str, Any]:
    """Bring the user's row in step with the pool; returns what it did (for logs and tests)."""
    log: dict[str, Any] = {}
    try:
        settings = Settings.from_environment()
    except Exception as exc:
        logger.error(str(exc), extra={"outcome": "failed", "error_code": aws.error_code(exc)})
        raise
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log["request_id"] = request_id
    try:
        change = ChangeEvent.parse(event, settings.user_pool_id)
    except Malformed as exc:
        log["event_name"] = _safe_event_name(event)
        log["reason"] = str(exc)
        log["outcome"] = DROPPED
        logger.warning("change event dropped", extra=log)
        _count_dropped()
        return {"outcome": DROPPED, "reason": str(exc)}
    log.update(event_name=change.name, user_id=change.sub, event_id=change.event_id)
    cognito, dynamodb = clients()
    table = UsersTable(dynamodb, settings.table)
    try:
        outcome = apply_change(change, cognito, table, settings)
    except Exception as exc:
        log["outcome"] = "failed"
        log["error_code"] = aws.error_code(exc)
        logger.error("change not applied; the event will be retried", extra=log)
        raise
    log["outcome"] = outcome
    logger.info("change ignored" if outcome in IGNORED_OUTCOMES else "change applied", extra=log)
    return {"outcome": outcome, "user_id": change.sub, "event_name": change.name}


def _count_dropped() -> None:
    try:
        metrics.add_metric(name=CHANGE_DROPPED_METRIC, unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
    except Exception:  # the count must never turn a dropped event into a retried one
        logger.exception("could not count a dropped event")


def _safe_event_name(event: Any) -> str | None:
    """The event's call name when it is one we know: free text stays out of logs."""
    detail = event.get("detail") if isinstance(event, dict) else None
    name = detail.get("eventName") if isinstance(detail, dict) else None
    return name if isinstance(name, str) and name in HANDLED else None


def apply_change(change: ChangeEvent, cognito: Any, table: UsersTable, settings: Settings) -> str:
    """Read the user from Cognito and the row from the table, and write what differs.

    Only this pool's users are acted on: token calls name no pool, so every pool's handler in
    the account receives them. A row another pool owns is never touched; a user this pool
    does not have changes nothing unless the event is a deletion that Cognito confirms and
    the row is this pool's (or records no pool: the deletion of that `sub` succeeded, and a
    `sub` is unique across pools). Every write repeats these conditions in its own request.
    """
    pool = settings.user_pool_id
    for _ in range(REFRESH_ATTEMPTS):
        row = table.get(change.sub)
        owner = schema.pool_of(row) if row else None
        if owner is not None and owner != pool:
            return OTHER_POOL  # another pool's user: that pool's handler deals with it
        if row is not None and schema.is_deleted(row):
            return str(erasure.Erased.ALREADY_ERASED)  # and it stays so, whatever the event
        hint = row.get("username") if row else None
        user = pool_users.find_user(
            cognito, pool, change.sub, username_hint=hint if isinstance(hint, str) else None
        )
        if user is None:
            if change.name not in DELETIONS:
                # Not this pool's user (an attribute edit in another pool), or a deletion whose
                # own event will come: an attribute event never erases.
                return NOT_IN_POOL
            if row is None and change.user_pool_id != pool:
                return NOT_IN_POOL  # a token call of a user we never had: nothing to say
            return str(
                erasure.erase(
                    table,
                    change.sub,
                    settings.policy,
                    user_pool_id=pool,
                    adopt_legacy=True,
                    # The event named this pool: a sign-up in flight must not recreate it.
                    tombstone_if_absent=change.user_pool_id == pool,
                )
            )
        if change.name in DELETIONS:
            return STILL_IN_POOL  # the deletion did not happen here; nothing to erase
        if row is None:
            return str(erasure.Erased.NO_ROW)  # sign-in or reconcile creates it, never we
        identity = schema.identity(user.attributes, user.username)
        if owner == pool and _in_step(row, identity, user.enabled):
            return UNCHANGED
        if table.refresh_identity(
            change.sub,
            identity,
            user_pool_id=pool,
            read_updated_at=row.get("updatedAt"),
            timestamp=schema.now(),
            enabled=user.enabled,
        ):
            return REFRESHED
        # Someone wrote to the row between our read and our write: read both again.
    raise StillChanging(change.sub)


def _in_step(row: Mapping[str, Any], identity: Mapping[str, Any], enabled: bool) -> bool:
    if row.get(schema.COGNITO_ENABLED) != enabled:
        return False
    if ("email" in row) != ("email" in identity):
        return False
    return all(row.get(f) == identity.get(f) for f in schema.IDENTITY_FIELDS if f in identity)
