"""The Lambda entry point for the Cognito Post Confirmation and Post Authentication triggers.

`handler(event, context)` dispatches on `triggerSource`:
- `PostConfirmation_ConfirmSignUp`: create the user's row (a replay changes nothing);
- `PostConfirmation_ConfirmForgotPassword`: create the row only if it is missing;
- `PostAuthentication_Authentication`: refresh identity and `lastLoginAt`, or create the row;
- anything else: logged and passed through.

It always returns the event: an exception here would fail the user's sign-up or sign-in, and
a failed write is healed by the next sign-in or by reconcile. All DynamoDB work shares one
deadline (at most 2.5 s) so the invocation, cold start included, ends inside Cognito's 5 s.
Cognito's clock runs through the container's start too, which the context's remaining time
leaves out: the first invocation of an on-demand cold start (Lambda says so in
`AWS_LAMBDA_INITIALIZATION_TYPE`) that follows init at once is charged the time since the
process started. The DynamoDB client is built at init (its objects then join the
`gc.freeze()` below); where that failed, or the environment changed, it is built once for all
concurrent invocations, each waiting for it only within its deadline.

A write ends `failed` when it was refused or never sent (nothing was written), or `unknown`
when an attempt was sent and its answer never came (the conditional write may have landed).
Each outcome is one log line and one EMF metric (`UserWriteFailed`, `UserWriteUnknown`, ...)
with the function's name as a dimension, so two deployments' alarms count their own.
Logs carry the user id, trigger source, outcome and error code, never email, name or phone.

Only what a trigger needs is imported here, to keep the Lambda zip and its cold start small.
"""

# ruff: noqa: E402 (the collector is switched off before the imports it would slow down)
from __future__ import annotations

import gc

# Init builds what lives as long as the container (modules, the client and its models), and
# the collector's passes over it during init are wasted work (≈ 10 % of init's CPU, measured:
# docs/performance.md). Off until init ends, where it is frozen and the collector comes back.
gc.disable()

import contextlib
import os
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from livekart_users import aws, schema
from livekart_users.contract import FUNCTION_DIMENSION as FUNCTION_DIMENSION
from livekart_users.contract import METRICS_NAMESPACE as METRICS_NAMESPACE
from livekart_users.contract import SERVICE as SERVICE
from livekart_users.contract import WRITE_FAILED_METRIC, WRITE_UNKNOWN_METRIC
from livekart_users.exceptions import InvalidExtraFields, InvalidRecord
from livekart_users.table import DEFAULT_TABLE, Outcome, UsersTable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

# The handler returns within this (from the container's start, on a cold start).
BUDGET_SECONDS = 2.5
# Kept back from the function's own remaining time, for logging and the reply to Cognito.
RESERVE_SECONDS = 0.3
# Kept back from the budget for what follows the writes: the log line and the metric.
WRAP_UP_SECONDS = 0.1

CONFIRM_SIGN_UP = "PostConfirmation_ConfirmSignUp"
CONFIRM_FORGOT_PASSWORD = "PostConfirmation_ConfirmForgotPassword"
AUTHENTICATION = "PostAuthentication_Authentication"

# Lambda's own word on how this environment started: only "on-demand" has a caller waiting
# through init (not "provisioned-concurrency" or "snap-start"; not a test or a local endpoint,
# where the variable is unset). Even on demand, Lambda may start an environment ahead of
# traffic: a first invocation that comes later than this after init did not wait for it.
INITIALIZATION_TYPE = "AWS_LAMBDA_INITIALIZATION_TYPE"
ON_DEMAND = "on-demand"
INIT_FOLLOWED_WITHIN = 0.5

FAILED = "failed"  # refused, or never sent: nothing was written
UNKNOWN = "unknown"  # sent, and no answer came: the write may have landed
IGNORED = "ignored"
METRIC_NAMES = {
    Outcome.CREATED: "UserCreated",
    Outcome.ALREADY_EXISTS: "UserAlreadyExisted",
    Outcome.REFRESHED: "UserRefreshed",
    Outcome.NOT_REFRESHED: "UserNotRefreshed",
    FAILED: WRITE_FAILED_METRIC,
    UNKNOWN: WRITE_UNKNOWN_METRIC,
}
LOCAL_FUNCTION = "local"

# `<region>_<id>` as Cognito makes them (cognito-local's `local_…` too), bounded in length.
_POOL_ID = re.compile(r"^[\w-]{1,50}_[0-9A-Za-z]{1,60}$")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
metrics.set_default_dimensions(
    **{FUNCTION_DIMENSION: os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or LOCAL_FUNCTION}
)

# What a client is built from that the environment may change between invocations of one
# process (tests, the local endpoint; on Lambda none of it changes): the endpoint override,
# the region and the credentials' identity (DynamoDB Local keeps tables per access key).
ClientKey = tuple[str | None, str, str | None, str | None]


class ClientNotReady(Exception):
    """The DynamoDB client was still being built when the deadline ran out."""


def _client_key() -> ClientKey:
    return (
        # Part of the key only: boto3 reads these variables itself.
        os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL"),
        aws.region(),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        os.environ.get("AWS_PROFILE"),
    )


def _build_client(key: ClientKey) -> Any:
    return aws.client("dynamodb", config=aws.TRIGGER_CONFIG, region_name=key[1])


_clients: dict[ClientKey, Future[Any]] = {}
_clients_lock = threading.Lock()
# Builds that outlast an invocation's deadline finish here, for the next one.
_builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="livekart-users-client")


def _users_table(deadline: aws.Deadline) -> UsersTable:
    """The table the environment names, on a client built once and shared by concurrent
    invocations, waited for only within `deadline` (raises DeadlineExceeded, with nothing
    sent, when it is not ready in time)."""
    key = _client_key()
    with _clients_lock:
        build = _clients.get(key)
        if build is None or (build.done() and build.exception() is not None):
            build = _builder.submit(_build_client, key)  # a failed build is tried again
            _clients[key] = build
    try:
        client = build.result(timeout=deadline.remaining())
    except FutureTimeout:
        raise aws.DeadlineExceeded(ClientNotReady()) from None
    return UsersTable(client, os.environ.get("USERS_TABLE") or DEFAULT_TABLE)


def _build_at_init() -> None:
    """Build the client the environment names, now: an on-demand init reportedly runs on a
    full vCPU whatever the memory size (AWS, "Effectively running Java on Serverless: utilize
    initialization phase", serverlessland.com), ahead of demand it costs no caller anything,
    and either way its objects join the `gc.freeze()` below. A failure here must not fail
    init (that would fail the sign-up): the first invocation tries again."""
    key = _client_key()
    try:
        client = _build_client(key)
    except Exception:
        return
    built: Future[Any] = Future()
    built.set_result(client)
    _clients[key] = built


def _process_started() -> float:
    """When this process started, on the `time.monotonic()` clock (Linux: from /proc; the
    runtime starts the process when Lambda starts the container). Elsewhere: now."""
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        started_ticks = int(fields[19])  # field 22, counted from after the command name
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return time.monotonic()
    return time.monotonic() - max(0.0, age)


_build_at_init()
# What the imports and the client built lives as long as the container: move it out of the
# collector's way, so a cold start's first invocation does not pay for a full collection of
# it (≈ 35 ms, see docs/performance.md). Then collect as usual.
gc.freeze()
gc.enable()
_INIT_STARTED = _process_started()
_INIT_ENDED = time.monotonic()
_first_invocation = threading.Lock()


@lru_cache(maxsize=4)
def _extra_fields(text: str | None) -> dict[str, Any]:
    return schema.parse_extra_fields(text)


def _init_charge(started: float) -> float:
    """The time this invocation's caller already spent waiting for the container to start:
    since the process started, for the first invocation when it follows init at once; else 0.
    """
    if not _first_invocation.acquire(blocking=False):
        return 0.0  # not the first: its caller did not wait through init
    if os.environ.get(INITIALIZATION_TYPE) != ON_DEMAND:
        return 0.0
    if started - _INIT_ENDED > INIT_FOLLOWED_WITHIN:
        return 0.0
    return max(0.0, started - _INIT_STARTED)


def _budget(context: Any, charged: float) -> float:
    budget = BUDGET_SECONDS - WRAP_UP_SECONDS - charged
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        # A context we do not understand must not cost the sign-up.
        with contextlib.suppress(Exception):
            budget = min(budget, float(remaining_ms()) / 1000 - RESERVE_SECONDS)
    return max(0.0, budget)


def handler(event: Any, context: LambdaContext | None) -> Any:
    """Write or refresh the user's row; always return the event to Cognito."""
    started = time.monotonic()
    # Taken first, before anything can fail: the budget must count from the call's start.
    charged = _init_charge(started)
    deadline = aws.Deadline(_budget(context, charged))
    source = event.get("triggerSource") if isinstance(event, dict) else None
    log: dict[str, Any] = {"trigger_source": source if isinstance(source, str) else None}
    if charged:
        log["init_ms"] = round(charged * 1000, 1)  # spent of the budget before the call
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log["request_id"] = request_id
    outcome: str
    try:
        outcome = _dispatch(event, deadline, log)
    except Exception as exc:  # never break a sign-up or sign-in: heal later instead
        outcome = UNKNOWN if aws.may_have_landed(exc) else FAILED
        log["error_code"] = aws.error_code(exc)
        if isinstance(exc, aws.DeadlineExceeded) and exc.last_error is not None:
            log["last_error_code"] = aws.error_code(exc.last_error)
    log["outcome"] = str(outcome)
    log["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
    _report(outcome, log)
    return event


class CognitoTriggerEvent:
    """The parts of a Cognito Post Confirmation or Post Authentication event the trigger reads.

    `triggerSource`: PostConfirmation_ConfirmSignUp, PostConfirmation_ConfirmForgotPassword or
    PostAuthentication_Authentication. Our own view rather than powertools' event classes:
    importing those runs their package's `__init__`, which imports every event class
    powertools has (≈ 15 ms of a full CPU, ≈ 2.5 % of a cold sign-up at 1,024 MB; see
    docs/performance.md). Sensitive attributes stay out of `repr`.
    """

    def __init__(self, raw: dict[str, Any]) -> None:
        self._raw = raw

    def __repr__(self) -> str:
        return f"CognitoTriggerEvent(trigger_source={self.trigger_source!r})"

    @property
    def trigger_source(self) -> Any:
        """What fired the trigger."""
        return self._raw.get("triggerSource")

    @property
    def user_pool_id(self) -> Any:
        """The pool the user belongs to (`userPoolId`): Cognito always sends it."""
        return self._raw.get("userPoolId")

    @property
    def user_name(self) -> Any:
        """The user's Cognito user name (`userName`)."""
        return self._raw.get("userName")

    @property
    def user_attributes(self) -> Any:
        """`request.userAttributes`, as sent: a map of attribute name to string, if valid."""
        request = self._raw.get("request")
        return request.get("userAttributes") if isinstance(request, dict) else None


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)


def _dispatch(event: Any, deadline: aws.Deadline, log: dict[str, Any]) -> str:
    source = log["trigger_source"]
    if source not in (CONFIRM_SIGN_UP, CONFIRM_FORGOT_PASSWORD, AUTHENTICATION):
        return IGNORED
    typed = CognitoTriggerEvent(event)
    attributes = typed.user_attributes
    if not isinstance(attributes, dict):
        raise InvalidRecord(["request.userAttributes: must be a map"])
    uid = schema.user_id(attributes)
    # Cognito's sub is always a UUID; anything else was put in the event by hand (a test
    # event, a forged call) and may be an email: it is not logged as given.
    log["user_id"] = uid if uid is None or _UUID.fullmatch(uid) else "not-a-uuid"
    pool = typed.user_pool_id
    if not isinstance(pool, str) or not _POOL_ID.match(pool):
        # Every write is conditioned on the row's pool: without one, write nothing.
        raise InvalidRecord(["userPoolId: must be a user pool id"])
    username = typed.user_name
    # userName is always there from Cognito; without it the row is keyed and named by sub.
    username = username if isinstance(username, str) and username else (uid or "")

    claimed = attributes.get("custom:role")
    if schema.role_was_downgraded(claimed):
        # Which role was asked for, but only from the known names: free text stays out of logs.
        asked = str(claimed).strip().lower()
        log["requested_role"] = asked if asked in schema.ROLES else "unknown"
        log["role_assigned"] = schema.CUSTOMER

    extra = _configured_extra_fields(log)
    table = _users_table(deadline)
    timestamp = schema.now()

    if source == AUTHENTICATION:
        return table.record_sign_in(
            attributes,
            username,
            user_pool_id=pool,
            timestamp=timestamp,
            extra_fields=extra,
            deadline=deadline,
        )
    # A password reset is not a sign-up: it creates the row only if a sign-up write was lost.
    # A replayed sign-up after an erasure finds the erased row (or its tombstone) and writes
    # nothing: creation is conditioned on there being no row at all.
    item = schema.new_record(
        attributes, username, timestamp=timestamp, extra_fields=extra, user_pool_id=pool
    )
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
        elif outcome == UNKNOWN:
            logger.warning("user record write sent, no answer: it may have landed", extra=log)
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
