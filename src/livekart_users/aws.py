"""The one place that builds AWS clients, and the trigger's deadline-bound retry.

Endpoints come only from the standard `AWS_ENDPOINT_URL_<SERVICE>` variables (boto3 reads
them itself), so the same code runs against AWS and the local emulators.

botocore's defaults (60 s timeouts, up to 10 attempts for DynamoDB) would blow Cognito's 5 s
trigger limit, and the Lambda runtime's boto3 version is unpublished, so the trigger does not
lean on botocore's retries at all: its client makes one attempt per call with tight timeouts,
and `call_within` retries inside what is left of one deadline.

A write that did not succeed either failed (DynamoDB refused it, or it never left: no
connection) or has an unknown outcome (it was sent and the answer never came: a conditional
write may have landed). `DeadlineExceeded.may_have_landed` says which, so that an alarm on
failed writes does not fire for writes that were stored.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError

from livekart_users.exceptions import LivekartUsersError, WrongRegion

DEFAULT_REGION = "us-east-1"

# One attempt can take at most connect + read timeout, and is waited for only until the
# deadline, so the deadline holds whatever the endpoint does. An attempt starts while
# MIN_ATTEMPT is left: a PutItem answers in milliseconds, and a cold start that spent most of
# its budget in init should still try once rather than give up (a write cut short by the
# deadline is reported as of unknown outcome, not as failed).
TRIGGER_CONNECT_TIMEOUT = 0.5
TRIGGER_READ_TIMEOUT = 1.0
ATTEMPT_WORST_CASE = TRIGGER_CONNECT_TIMEOUT + TRIGGER_READ_TIMEOUT
MIN_ATTEMPT = 0.25
TRIGGER_CONFIG = Config(
    connect_timeout=TRIGGER_CONNECT_TIMEOUT,
    read_timeout=TRIGGER_READ_TIMEOUT,
    retries={"mode": "standard", "total_max_attempts": 1},
)
# The change handler runs asynchronously (EventBridge), with no one waiting: a few patient
# attempts, then the error is raised so Lambda retries the event and, at last, hands it to the
# failure destination. Bounded so one invocation stays well inside its function timeout.
CHANGES_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3}
)
# Commands run by a person or a script: botocore's standard retries, and timeouts such that
# one call ends within a budget when the endpoint accepts and never answers (botocore's 60 s
# defaults and 3 attempts made `users get` wait 120 s in silence).
CLI_BUDGET_ENV = "LIVEKART_AWS_TIMEOUT"
DEFAULT_CLI_BUDGET = 25.0  # with interpreter start and the error line: a command ends in < 30 s
CLI_ATTEMPTS = 2
CLI_CONNECT_TIMEOUT = 2.0
# botocore's standard mode (botocore/retries/standard.py, ExponentialBackoff) sleeps at most
# min(2**i, 20) s before retry i+1 (a 1 s base for throttling, 50 ms for the rest; counted at
# 1 s). It may add up to 5 s when an answer carries `x-amz-retry-after`: an endpoint that does
# not answer sends no such header, so that is not part of the bound.
_MAX_BACKOFF = 20.0

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TooManyRequestsException",
    }
)

T = TypeVar("T")


def region() -> str:
    """The region from the environment (Lambda sets AWS_REGION), else the default."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def resolve_region(flag: str | None = None, user_pool_id: str | None = None) -> str:
    """`--region` > AWS_REGION / AWS_DEFAULT_REGION / the profile's > the pool id's prefix.

    A pool id names its region (`us-east-1_AbC123`): one from another region is an error here,
    not a confusing "pool not found" later. Emulators (an AWS_ENDPOINT_URL_* override) use
    their own pool ids and are not checked.
    """
    pool_region = user_pool_id.split("_", 1)[0] if user_pool_id and "_" in user_pool_id else None
    chosen = (
        flag
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or _profile_region()
        or pool_region
        or DEFAULT_REGION
    )
    emulated = os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    if pool_region and pool_region != chosen and not emulated:
        raise WrongRegion(user_pool_id or "", chosen)
    return chosen


class BadTimeout(LivekartUsersError):
    """The AWS time budget setting is not a number of seconds."""

    def __init__(self, value: str) -> None:
        super().__init__(
            f"{CLI_BUDGET_ENV}={value!r} is not a number of seconds between 1 and 300: "
            f"unset it (default {DEFAULT_CLI_BUDGET:g} s) or give e.g. {CLI_BUDGET_ENV}=20"
        )


def cli_budget() -> float:
    """Seconds one AWS call of a command may take in all, from LIVEKART_AWS_TIMEOUT."""
    text = os.environ.get(CLI_BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_CLI_BUDGET
    try:
        seconds = float(text)
    except ValueError:
        raise BadTimeout(text) from None
    if not 1 <= seconds <= 300:
        raise BadTimeout(text)
    return seconds


def _backoff_bound(attempts: int) -> float:
    return sum(min(2.0**i, _MAX_BACKOFF) for i in range(attempts - 1))


def cli_config(*, attempts: int = CLI_ATTEMPTS, **options: Any) -> Config:
    """The config of a command's clients: `attempts` attempts that end within the budget."""
    budget = cli_budget()
    connect = min(CLI_CONNECT_TIMEOUT, budget / 10)
    read = (budget - _backoff_bound(attempts)) / attempts - connect
    return Config(
        connect_timeout=connect,
        read_timeout=max(read, 0.2),
        retries={"mode": "standard", "total_max_attempts": attempts},
        **options,
    )


def worst_case_seconds(config: Config) -> float:
    """How long one call with `config` can wait for an endpoint that never answers.

    Each attempt waits at most its connect and read timeouts (botocore's read timeout bounds
    each read: an endpoint that trickles bytes is not bounded by it), and the retries sleep.
    """
    retries = config.retries or {}
    if "total_max_attempts" in retries:
        attempts = int(retries["total_max_attempts"])
    else:  # botocore's default: 3 in standard mode (legacy mode: 5)
        attempts = 1 + int(retries.get("max_attempts", 2))
    per_attempt = float(config.connect_timeout) + float(config.read_timeout)
    return attempts * per_attempt + _backoff_bound(attempts)


# One session for every client a command builds: botocore loads and parses each service
# model, and resolves credentials, once per session. Sessions are not safe to build clients
# from concurrently, hence the lock; the clients themselves are.
_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


@contextlib.contextmanager
def one_session(prepare: Callable[[Any], None] | None = None) -> Iterator[None]:
    """Inside, `client()` builds every client from one session, made on first use.

    `prepare(session)` runs once when it is made (the CLI hooks its progress display there).
    Outside, each client gets a session of its own, as before.
    """
    with _shared_lock:
        outer = dict(_shared)
        if "active" not in _shared:
            _shared.update(active=True, session=None, prepare=prepare)
    try:
        yield
    finally:
        with _shared_lock:
            _shared.clear()
            _shared.update(outer)


def client(
    service: str,
    *,
    config: Config | None = None,
    region_name: str | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
) -> Any:
    """A boto3 client for `service`; every client in this package is built here.

    Without `config`, a command's: bounded by `cli_budget()`. Without `session`, the one of
    `one_session()` if inside it, else a new one. `endpoint_url` only for the local stack's own
    plumbing (one emulator behind another); everything else reaches its endpoint through
    AWS_ENDPOINT_URL_<SERVICE>.
    """
    config = config or cli_config()
    with _shared_lock:
        chosen = session or _shared_session()
        if chosen is not None:
            return chosen.client(
                service,
                region_name=region_name or region(),
                config=config,
                endpoint_url=endpoint_url,
            )
    return boto3.session.Session().client(
        service, region_name=region_name or region(), config=config, endpoint_url=endpoint_url
    )


def current_session() -> Any:
    """The session of `one_session()` when inside it, else a new one."""
    with _shared_lock:
        return _shared_session() or boto3.session.Session()


def _profile_region() -> str | None:
    with _shared_lock:
        session = _shared_session() or boto3.session.Session()
        return session.region_name  # type: ignore[no-any-return]


def _shared_session() -> Any:
    """The session of `one_session()`, made on first use; None outside it (lock held)."""
    if "active" not in _shared:
        return None
    if _shared["session"] is None:
        _shared["session"] = boto3.session.Session()
        if _shared["prepare"] is not None:
            _shared["prepare"](_shared["session"])
    return _shared["session"]


def error_code(exc: BaseException) -> str:
    """A short, data-free name for an error: the AWS error code or the exception's class.

    Never the message: DynamoDB and botocore messages can quote the values sent.
    """
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


NOT_FOUND_CODES = frozenset({"ResourceNotFoundException", "NoSuchEntity", "NoSuchEntityException"})


def unless_missing(read: Callable[[], T]) -> T | None:
    """The answer of a read, or None when the resource it names does not exist."""
    try:
        return read()
    except ClientError as exc:
        if error_code(exc) in NOT_FOUND_CODES:
            return None
        raise


def was_sent_unanswered(exc: BaseException) -> bool:
    """The request may have reached the service, whose answer never came.

    botocore raises its `ConnectionError` family (refused, connect timeout, TLS handshake,
    proxy) before a request leaves, and its `HTTPClientError` family (read timeout, connection
    closed mid-answer) after; an attempt we stopped waiting for had been running for longer
    than a connect can take. A `ClientError` is an answer: the write was refused.
    """
    return isinstance(exc, HTTPClientError | AttemptTimedOut)


def may_have_landed(exc: BaseException) -> bool:
    """A write that raised `exc` may nonetheless have been stored."""
    return isinstance(exc, DeadlineExceeded) and exc.may_have_landed


def is_retryable(exc: BaseException) -> bool:
    """Transient: worth another attempt if time allows."""
    if isinstance(exc, ClientError):
        return error_code(exc) in RETRYABLE_CODES
    return isinstance(exc, BotoCoreError)


class DeadlineExceeded(Exception):
    """No time was left in the deadline for another attempt."""

    def __init__(self, last_error: BaseException | None, *, may_have_landed: bool = False) -> None:
        self.last_error = last_error
        # True when an attempt was sent and never answered: the write's outcome is unknown.
        self.may_have_landed = may_have_landed
        super().__init__(error_code(last_error) if last_error else "no time left")


class Deadline:
    """A point in time that all the calls of one invocation share."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ends = clock() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends - self._clock())


class AttemptTimedOut(Exception):
    """An attempt was still running when its share of the deadline ran out."""


class AttemptNotStarted(Exception):
    """An attempt was still waiting for a free worker when its time ran out: never sent."""


# botocore's read timeout bounds each socket read, not the whole answer: an endpoint that
# trickles bytes could hold a call for ever. So each attempt runs on a worker thread and is
# waited for only as long as the deadline allows; one that overruns is abandoned (its thread
# ends with botocore's own timeouts) and the handler returns on time. A bounded pool: a stuck
# attempt must not cost a thread per invocation; 16 serve the local endpoint's 16 concurrent
# invocations (on Lambda a process serves one at a time). An attempt still queued when its
# time ran out was never sent, and is reported so.
_attempts = ThreadPoolExecutor(max_workers=16, thread_name_prefix="livekart-users-attempt")


def call_within(
    deadline: Deadline,
    operation: Callable[..., T],
    /,
    *,
    attempt_worst_case: float = ATTEMPT_WORST_CASE,
    min_attempt: float = MIN_ATTEMPT,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> T:
    """Call `operation(**kwargs)`, retrying transient errors while the deadline allows.

    An attempt starts only while `min_attempt` is left, is waited for at most
    `attempt_worst_case` (its own timeouts' sum), and never past the deadline. Non-transient
    errors (a failed condition, say) are raised at once. Raises DeadlineExceeded when the
    deadline has passed, saying whether any attempt was sent and left unanswered (then the
    operation may have taken effect).
    """
    last: BaseException | None = None
    unanswered = False
    backoff = 0.05
    while deadline.remaining() >= min_attempt:
        attempt = _attempts.submit(operation, **kwargs)
        try:
            return attempt.result(timeout=min(deadline.remaining(), attempt_worst_case))
        except FutureTimeout:
            # Cancelled means it never ran; otherwise it is abandoned to botocore's timeouts.
            last = AttemptNotStarted() if attempt.cancel() else AttemptTimedOut()
        except (ClientError, BotoCoreError) as exc:
            if not is_retryable(exc):
                raise
            last = exc
        unanswered = unanswered or was_sent_unanswered(last)
        # Full jitter, and never sleep into the time the next attempt needs.
        pause = min(random.uniform(0, backoff), deadline.remaining() - min_attempt)
        if pause > 0:
            sleep(pause)
        backoff = min(backoff * 2, 0.4)
    raise DeadlineExceeded(last, may_have_landed=unanswered)


@functools.lru_cache(maxsize=16)
def partition_of(region: str) -> str:
    """The ARN partition of a region, from botocore's own partition data (aws, aws-cn,
    aws-us-gov, the ISO partitions aws-iso, -iso-b, -iso-e, -iso-f, the European Sovereign
    Cloud's aws-eusc, and whatever a newer botocore adds); "aws" for a name it does not know
    (the local stack's)."""
    from botocore.exceptions import UnknownRegionError
    from botocore.session import get_session

    try:
        return str(get_session().get_partition_for_region(region))
    except UnknownRegionError:  # no partition's pattern matches it
        return "aws"
