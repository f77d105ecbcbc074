"""Reconcile: read the user pool and the table side by side, then heal the table.

The stages (the shape of a deploy: find what differs, show it, then change it):
1. **index the table** (`UsersTable.pages`): per row a few bytes, never the record — a digest
   of its identity attributes, a digest of its email, and its `updatedAt`;
2. **list the pool** (`ListUsers`, 60 a page, paced below Cognito's quota, backing off when
   throttled) and sort each user: in step, to create, to refresh, unconfirmed (left alone);
   a user with no row whose email some row has is held back until step 4;
3. **write as it goes** (only with `apply`, on a few worker threads): creates through
   `create_if_absent`, exactly as the trigger does; refreshes through `refresh_identity`,
   which writes identity and `updatedAt` only, and only if the row has not changed since it
   was read, so it never overwrites app data or a sign-in that happened meanwhile;
4. **settle**: rows whose user never showed up are orphans, unless their email belongs to a
   user held back in step 2 — that user came back with a new `sub` (a pool restored
   elsewhere): reported as moved, never created. Users held back for nothing are created;
5. **orphans** are deleted (`--delete-orphans`) or erased by the erasure policy
   (`--erase-orphans`, which takes moved rows too: their user is gone, whoever has the
   email now) only when asked, confirmed, and Cognito still says they are gone
   (`AdminGetUser`, strongly consistent). Rows already marked deleted (`deletedAt`: erased
   by the change handler or `users delete`) are reported apart, never as orphans.

Several pools may share the table: only rows recording this pool (`userPoolId`) are this
run's. Another pool's rows are counted and never changed. Rows recording no pool (written
before rows recorded it) are adopted when their user is found in this pool; as orphans they
are counted apart and deleted or erased only when the caller names them
(`include_no_pool`, `--include-legacy-rows`). Every write is conditioned on the pool too.

Every write is conditional and idempotent, so an interrupted run loses nothing: the next run
reads both sides again and does only what is still to do.

Memory holds user ids, not records: ≈ 45 bytes of digests per row plus its id, and 8 bytes
per email; the pool is streamed a page at a time.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from livekart_users import aws, erasure, pool_users, schema
from livekart_users.checkpoint import (
    HELD,
    HELD_UNCONFIRMED,
    SEEN,
    Checkpoints,
    State,
    pack_key,
    record,
    records,
    unpack_key,
)
from livekart_users.exceptions import InvalidRecord, PoolNotFound
from livekart_users.table import UsersTable

# Cognito's ListUsers quota is 30 requests/s per account and region, shared by every caller
# and not adjustable: stay well below it by default, and never above it.
LIST_USERS_QUOTA = 30.0
DEFAULT_RATE = 20.0
PAGE_LIMIT = 60  # the most ListUsers returns in one page
DEFAULT_CONCURRENCY = 8
DEFAULT_EXAMPLES = 10
TABLE_PAGE_SIZE = 1000
UNCONFIRMED = "UNCONFIRMED"
MAX_RESTARTS = 3  # refused pagination tokens in one run before it gives up

# The categories of the report, in the order they are shown.
TO_CREATE = "to create"
TO_REFRESH = "to refresh"
ORPHAN = "orphan"
MOVED = "moved"
UNCONFIRMED_USER = "unconfirmed"
INVALID = "invalid"
ERASED = "marked deleted"
# Rows this run must not change unless told: another pool's (the table is shared), and
# orphans that record no pool (written before rows recorded it: maybe another pool's).
OTHER_POOL = "other pool"
NO_POOL_ORPHAN = "orphan, no pool recorded"
CATEGORIES = (
    TO_CREATE,
    TO_REFRESH,
    ORPHAN,
    MOVED,
    UNCONFIRMED_USER,
    INVALID,
    ERASED,
    NO_POOL_ORPHAN,
    OTHER_POOL,
)

# Cognito's server error is InternalErrorException; the rest are shared with the trigger.
TRANSIENT_CODES = aws.RETRYABLE_CODES | {"InternalErrorException", "LimitExceededException"}

T = TypeVar("T")


# --- pacing and patience -----------------------------------------------------------------

# The codes that say "too fast" (the others in TRANSIENT_CODES say "try again").
THROTTLING_CODES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)


class TokenBucket:
    """At most `rate` acquisitions a second, with bursts of at most `burst`.

    The rate adapts (additive increase, multiplicative decrease, as TCP does): each throttled
    call halves it, down to `floor`; each call that passes adds back one request/s per second
    of calls, up to the `rate` asked for. ListUsers' quota is shared with the change handler
    and the app: a run that keeps hitting it takes less, so theirs go through.
    `clock` and `sleep` are injectable so tests never wait.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        floor: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.target = rate
        self.rate = rate
        self.lowest = rate
        self.floor = min(floor, rate)
        self.burst = burst
        self.throttled_calls = 0
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Take one token, sleeping until there is one."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                self._sleep((1 - self._tokens) / self.rate)
                # The wait produced exactly the missing part of a token.
                self._last = max(self._last, self._clock())
                self._tokens = 1.0
            self._tokens -= 1

    def throttled(self) -> None:
        """A call was refused for its rate: halve ours."""
        with self._lock:
            self.throttled_calls += 1
            self.rate = max(self.floor, self.rate / 2)
            self.lowest = min(self.lowest, self.rate)

    def passed(self) -> None:
        """A call went through: creep back towards the rate asked for."""
        with self._lock:
            if self.rate < self.target:
                self.rate = min(self.target, self.rate + 1 / self.rate)


def is_throttling(exc: BaseException) -> bool:
    return isinstance(exc, ClientError) and aws.error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException, *, timeouts: bool = True) -> bool:
    """Throttling, a server error, a lost connection or (with `timeouts`) a timeout: worth
    another attempt.

    A run of hours meets each of these (a 10 M-user pool is ≈ 170,000 ListUsers calls):
    none of them may end it. An endpoint that cannot be reached at all (a wrong region or
    URL) is not retried: that is a setting to fix, said at once.
    """
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return aws.error_code(exc) in TRANSIENT_CODES or int(status) >= 500
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError):
        return timeouts
    if isinstance(exc, EndpointConnectionError):
        return False
    return isinstance(exc, BotoConnectionError | HTTPClientError)


class Backoff:
    """Retry transient errors with capped exponential backoff and full jitter."""

    def __init__(
        self,
        *,
        attempts: int = 10,
        base: float = 0.25,
        cap: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        self.retries = 0

    def call(
        self,
        operation: Callable[..., T],
        /,
        *,
        limiter: TokenBucket | None = None,
        timeouts: bool = True,
        **kwargs: Any,
    ) -> T:
        """`operation(**kwargs)`; each attempt waits its turn at `limiter`, and tells it when
        it was throttled or passed. Timeouts are retried only with `timeouts`."""
        for attempt in range(self.attempts):
            if limiter is not None:
                limiter.acquire()
            try:
                answer = operation(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                if limiter is not None and is_throttling(exc):
                    limiter.throttled()
                if attempt == self.attempts - 1 or not is_transient(exc, timeouts=timeouts):
                    raise
            else:
                if limiter is not None:
                    limiter.passed()
                return answer
            with self._lock:
                self.retries += 1
            self._sleep(self._jitter(0.0, min(self.cap, self.base * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover


class PatientClient:
    """A boto3 client whose every API call waits its turn and backs off when throttled.

    Wrapping the client (rather than each call site) gives the table's own methods — its
    scan, its conditional writes — the same patience. Errors that are not transient, such as
    a failed condition, pass straight through. A timeout is retried once the endpoint has
    answered in this run: before that, an endpoint that never answers is a setting to fix,
    said within the command's budget (tests/test_unanswered.py), not after ten waits.
    """

    def __init__(self, client: Any, backoff: Backoff, limiter: TokenBucket | None = None) -> None:
        self._client = client
        self._backoff = backoff
        self._limiter = limiter
        self.answered = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return attribute

        def call(**kwargs: Any) -> Any:
            answer = self._backoff.call(
                attribute, limiter=self._limiter, timeouts=self.answered, **kwargs
            )
            self.answered = True
            return answer

        return call


def clients(region: str, concurrency: int = DEFAULT_CONCURRENCY) -> tuple[Any, Any]:
    """Cognito and DynamoDB clients for reconcile: botocore does not retry, we do (paced)."""
    # One attempt each within the command's budget (aws.cli_budget): `Backoff` retries, so
    # every retry is paced, counted and backs off, whatever botocore's own modes would do.
    config = aws.cli_config(attempts=1, max_pool_connections=concurrency + 4)
    return (
        aws.client("cognito-idp", config=config, region_name=region),
        aws.client("dynamodb", config=config, region_name=region),
    )


# --- what is kept per row ----------------------------------------------------------------

_NO_EMAIL = 0
# What reconcile compares: the identity a sign-in refreshes, and Cognito's enabled flag.
COMPARED_FIELDS = (*schema.IDENTITY_FIELDS, schema.COGNITO_ENABLED)


def _encoded(value: Any) -> bytes:
    """A value's bytes for a digest: its repr for the types identity holds (the common case,
    ≈ 10x cheaper than JSON, which serves the rest); never the same bytes for two values."""
    if value is None or isinstance(value, str | bool):
        return repr(value).encode("utf-8", "surrogatepass")
    if isinstance(value, list):
        return b"[" + b",".join(_encoded(v) for v in value) + b"]"
    text = json.dumps(value, default=repr, separators=(",", ":"), sort_keys=True)
    return b"j" + text.encode("utf-8", "surrogatepass")


def _compared_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    compared = {f: row[f] for f in schema.IDENTITY_FIELDS if f in row}
    # Absent means enabled (docs/record.md): the trigger writes no flag.
    compared[schema.COGNITO_ENABLED] = row.get(schema.COGNITO_ENABLED) is not False
    return compared


def _compared_of_user(identity: Mapping[str, Any], enabled: bool) -> dict[str, Any]:
    return {**identity, schema.COGNITO_ENABLED: enabled}


def _identity_digest(compared: Mapping[str, Any]) -> bytes:
    # Field names and reprs joined by a byte no repr leaves unescaped: one digest a row.
    text = b"\x1f".join(
        f.encode() + b"=" + _encoded(compared[f]) for f in COMPARED_FIELDS if f in compared
    )
    return hashlib.blake2b(text, digest_size=8).digest()


def _email_digest(identity: Mapping[str, Any]) -> int:
    """A 64-bit digest of the (lower-cased) email, or 0 when there is none."""
    email = identity.get("email")
    if not isinstance(email, str) or not email:
        return _NO_EMAIL
    digest = hashlib.blake2b(email.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


# Per compared field, enough to name which fields differ in the report: with one byte, one
# changed field in 256 kept its hint and the report said only "identity".
HINT_BYTES = 2


def _hints(compared: Mapping[str, Any]) -> bytes:
    return b"".join(
        hashlib.blake2b(
            f.encode() + (b"=" + _encoded(compared[f]) if f in compared else b"!"),
            digest_size=HINT_BYTES,
        ).digest()
        for f in COMPARED_FIELDS
    )


def _differing(hints: bytes, compared: Mapping[str, Any]) -> list[str]:
    mine = _hints(compared)
    return [
        f
        for i, f in enumerate(COMPARED_FIELDS)
        if hints[i * HINT_BYTES : (i + 1) * HINT_BYTES]
        != mine[i * HINT_BYTES : (i + 1) * HINT_BYTES]
    ]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


_CANONICAL_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _packed_timestamp(value: Any) -> int | None:
    """`updatedAt` as milliseconds since 1970 when it is in the canonical form (which
    `_timestamp_text` gives back exactly); None for anything else."""
    if not isinstance(value, str) or not _CANONICAL_TIME.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value[:-1] + "+00:00")
    except ValueError:
        return None
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _timestamp_text(millis: int) -> str:
    return schema.format_timestamp(_EPOCH + timedelta(milliseconds=millis))


class TableIndex:
    """The table, as reconcile needs it: per row a fixed 53-byte record, never the row.

    A record packs the user id (a Cognito sub as its 16 UUID bytes), the digest of the compared
    fields (8), the email digest (8), two hint bytes per compared field (12), `updatedAt` as
    milliseconds (8) and a flags byte. Records sit end to end in one `bytearray`, found through
    an open-addressing table of 4-byte record numbers; email digests sit in a second one.
    Python objects per row (a dict entry, a `str`, a `bytes`) cost ≈ 230 bytes where this costs
    ≈ 75 at 10 M rows (bench/reconcile_memory.py). The rare id that is not a UUID, and an
    `updatedAt` that is not in the canonical form, are kept in small dictionaries beside.
    """

    _IDENT, _EMAIL, _HINTS = 16, 24, 32
    _UPDATED = _HINTS + HINT_BYTES * len(COMPARED_FIELDS)
    _FLAGS = _UPDATED + 8
    SIZE = _FLAGS + 1
    _SEEN, _ODD_TIME, _HAS_FLAG, _PACKED, _NO_POOL = 1, 2, 4, 8, 16
    _LOAD = 0.7

    def __init__(self, expected: int = 0, *, user_pool_id: str = "") -> None:
        # Only this pool's rows are indexed (and rows recording no pool, flagged): several
        # pools may share the table.
        self.user_pool_id = user_pool_id
        self._records = bytearray()
        self._number = 0  # records held
        self._slots = self._empty_slots(expected)
        self._emails = self._empty_emails(expected)
        self._email_count = 0
        self._odd_ids: dict[str, int] = {}  # ids that are not UUIDs → record number
        self._odd_names: dict[int, str] = {}
        self.odd_updated_at: dict[int, Any] = {}
        self.count = 0  # rows read, erased ones included
        # Rows marked deleted: counted, a few ids kept for the report, never indexed as users.
        self.erased = 0
        self.erased_examples: list[str] = []
        # Rows of other pools sharing the table: counted, never indexed, never changed.
        self.other_pool = 0
        self.other_pool_examples: list[str] = []

    @staticmethod
    def _capacity(expected: int) -> int:
        capacity = 1024
        while capacity * TableIndex._LOAD < expected:
            capacity *= 2
        return capacity

    def _empty_slots(self, expected: int) -> array[int]:
        return array("I", bytes(4 * self._capacity(expected)))

    def _empty_emails(self, expected: int) -> array[int]:
        return array("Q", bytes(8 * self._capacity(expected)))

    def __len__(self) -> int:
        return self._number

    # --- building --------------------------------------------------------------------

    def add(self, row: Mapping[str, Any]) -> None:
        uid = row.get("user_id")
        if not isinstance(uid, str):
            return
        self.count += 1
        owner = schema.pool_of(row)
        if owner is not None and owner != self.user_pool_id:
            self.other_pool += 1
            if len(self.other_pool_examples) < DEFAULT_EXAMPLES * 10:
                self.other_pool_examples.append(uid)
            return
        if schema.is_deleted(row):
            self.erased += 1
            if len(self.erased_examples) < DEFAULT_EXAMPLES * 10:
                self.erased_examples.append(uid)
            return
        compared = _compared_of_row(row)
        flags = self._HAS_FLAG if schema.COGNITO_ENABLED in row else 0
        if owner is None:
            flags |= self._NO_POOL  # adopted if its user is found here; never erased on a guess
        self.append(
            uid,
            _identity_digest(compared),
            _email_digest(compared),
            _hints(compared),
            row.get("updatedAt"),
            flags,
        )

    def append(
        self, uid: str, identity: bytes, email: int, hints: bytes, updated_at: Any, flags: int
    ) -> None:
        """Store one row's record (its digests already made: `add` makes them)."""
        millis = _packed_timestamp(updated_at)
        number = self._number
        if millis is None:
            flags |= self._ODD_TIME
            self.odd_updated_at[number] = updated_at
        key = pack_key(uid)
        if key is None:
            self._odd_ids[uid] = number
            self._odd_names[number] = uid
            key = bytes(16)
        else:
            flags |= self._PACKED
        self._records += (
            key
            + identity
            + email.to_bytes(8, "big")
            + hints
            + (millis or 0).to_bytes(8, "big", signed=True)
            + bytes((flags,))
        )
        self._number += 1
        if flags & self._PACKED:
            self._insert(key, number)
        if email != _NO_EMAIL:
            self._add_email(email)

    def seal(self) -> None:
        """Nothing left to do once every row is in (kept for callers that build in stages)."""

    def _insert(self, key: bytes, number: int) -> None:
        if self._number > len(self._slots) * self._LOAD:
            self._grow()
        mask = len(self._slots) - 1
        at = hash(key) & mask
        while self._slots[at]:
            at = (at + 1) & mask
        self._slots[at] = number + 1

    def _grow(self) -> None:
        self._slots = array("I", bytes(8 * len(self._slots)))
        mask = len(self._slots) - 1
        size, records = self.SIZE, self._records
        for number in range(self._number):
            start = number * size
            if records[start + self._FLAGS] & self._PACKED:
                at = hash(bytes(records[start : start + 16])) & mask
                while self._slots[at]:
                    at = (at + 1) & mask
                self._slots[at] = number + 1

    def _add_email(self, email: int) -> None:
        if self._email_count + 1 > len(self._emails) * self._LOAD:
            old = self._emails
            self._emails = array("Q", bytes(16 * len(old)))
            self._email_count = 0
            for known in old:
                if known:
                    self._add_email(known)
        mask = len(self._emails) - 1
        at = email & mask
        while self._emails[at]:
            if self._emails[at] == email:
                return
            at = (at + 1) & mask
        self._emails[at] = email
        self._email_count += 1

    # --- reading ---------------------------------------------------------------------

    def has_email(self, email: int) -> bool:
        if email == _NO_EMAIL:
            return False
        mask = len(self._emails) - 1
        at = email & mask
        while self._emails[at]:
            if self._emails[at] == email:
                return True
            at = (at + 1) & mask
        return False

    def find(self, uid: str) -> int | None:
        """The record number of the row of `uid`, or None when the table has none."""
        key = pack_key(uid)
        if key is None:
            return self._odd_ids.get(uid)
        mask = len(self._slots) - 1
        at = hash(key) & mask
        size = self.SIZE
        while slot := self._slots[at]:
            start = (slot - 1) * size
            if self._records[start : start + 16] == key:
                return slot - 1
            at = (at + 1) & mask
        return None

    def take(self, uid: str) -> int | None:
        """`find`, and mark the row seen: its user is in the pool, so it is no orphan."""
        number = self.find(uid)
        if number is not None:
            self._records[number * self.SIZE + self._FLAGS] |= self._SEEN
        return number

    def forget_seen(self) -> None:
        """Every row unseen again (a listing that starts over)."""
        for number in range(self._number):
            self._records[number * self.SIZE + self._FLAGS] &= ~self._SEEN & 0xFF

    def unseen(self) -> Iterator[tuple[str, int]]:
        """(user id, record number) of each row whose user was not listed."""
        size, records = self.SIZE, self._records
        for number in range(self._number):
            start = number * size
            flags = records[start + self._FLAGS]
            if flags & self._SEEN:
                continue
            if flags & self._PACKED:
                yield unpack_key(bytes(records[start : start + 16])), number
            else:
                yield self._odd_names[number], number

    def unseen_count(self) -> int:
        size, flags_at = self.SIZE, self._FLAGS
        return sum(
            1 for n in range(self._number) if not self._records[n * size + flags_at] & self._SEEN
        )

    def _field(self, number: int, start: int, end: int) -> bytes:
        base = number * self.SIZE
        return bytes(self._records[base + start : base + end])

    def identity_digest(self, number: int) -> bytes:
        return self._field(number, self._IDENT, self._EMAIL)

    def email_digest(self, number: int) -> int:
        return int.from_bytes(self._field(number, self._EMAIL, self._HINTS), "big")

    def hints(self, number: int) -> bytes:
        return self._field(number, self._HINTS, self._UPDATED)

    def has_enabled_flag(self, number: int) -> bool:
        return bool(self._records[number * self.SIZE + self._FLAGS] & self._HAS_FLAG)

    def records_no_pool(self, number: int) -> bool:
        """True for a row written before rows recorded their pool."""
        return bool(self._records[number * self.SIZE + self._FLAGS] & self._NO_POOL)

    def updated_at(self, number: int) -> str | None:
        if self._records[number * self.SIZE + self._FLAGS] & self._ODD_TIME:
            odd = self.odd_updated_at.get(number)
            return odd if isinstance(odd, str) else None
        millis = int.from_bytes(self._field(number, self._UPDATED, self._FLAGS), "big", signed=True)
        return _timestamp_text(millis)


# --- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One user or row of a category, to show beside the counts (ids only, no personal data)."""

    category: str
    user_id: str
    detail: str


@dataclass
class Report:
    """What reconcile found and, with `apply`, what it changed."""

    user_pool_id: str
    table: str
    applied: bool
    rate: float
    pool_users: int = 0
    rows: int = 0
    in_step: int = 0
    to_create: int = 0
    to_refresh: int = 0
    orphans: int = 0
    moved: int = 0
    unconfirmed: int = 0
    invalid: int = 0
    created: int = 0
    already_existed: int = 0
    refreshed: int = 0
    changed_since_read: int = 0
    orphans_deleted: int = 0
    orphans_erased: int = 0
    orphans_kept: int = 0
    erased: int = 0  # rows already marked deleted
    other_pool_rows: int = 0  # rows of other pools sharing the table: never changed
    no_pool_orphans: int = 0  # orphans recording no pool: changed only when included
    include_no_pool: bool = False  # --include-legacy-rows
    erasure_policy: str | None = None  # with --erase-orphans
    list_requests: int = 0
    retries: int = 0
    throttled: int = 0  # ListUsers calls refused for their rate
    lowest_rate: float = 0.0  # the rate it slowed to (the rate asked for when never throttled)
    resumed_at_page: int = 0  # the page an earlier run's checkpoint resumed at (0: a fresh run)
    listing_restarts: int = 0  # pagination tokens refused: the listing started over
    table_seconds: float = 0.0  # reading the table
    pool_seconds: float = 0.0  # listing the pool (with the writes it queued meanwhile)
    seconds: float = 0.0
    complete: bool = True  # False: stopped for time after a checkpoint; the next run goes on
    examples: list[Example] = field(default_factory=list)
    examples_per_category: int = DEFAULT_EXAMPLES

    def __post_init__(self) -> None:
        self._shown: dict[str, int] = {}

    def example(self, category: str, user_id: str, detail: str = "") -> None:
        shown = self._shown.get(category, 0)
        if shown < self.examples_per_category:
            self._shown[category] = shown + 1
            self.examples.append(Example(category, user_id, detail))

    def counts(self) -> dict[str, int]:
        """The count of each category, in display order."""
        return {
            TO_CREATE: self.to_create,
            TO_REFRESH: self.to_refresh,
            ORPHAN: self.orphans,
            MOVED: self.moved,
            UNCONFIRMED_USER: self.unconfirmed,
            INVALID: self.invalid,
            ERASED: self.erased,
            NO_POOL_ORPHAN: self.no_pool_orphans,
            OTHER_POOL: self.other_pool_rows,
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def restore(self, saved: Mapping[str, Any]) -> None:
        """Take back the counts and examples a checkpoint saved (an earlier part of this run)."""
        for f in fields(self):
            if f.name in _RESTORED and f.name in saved:
                setattr(self, f.name, type(getattr(self, f.name))(saved[f.name]))
        self.examples = [Example(**e) for e in saved.get("examples") or []]
        for example in self.examples:
            self._shown[example.category] = self._shown.get(example.category, 0) + 1

    def forget_pool(self) -> None:
        """Forget what the listing found (it starts over); what was written stays counted."""
        for name in _POOL_SIDE:
            setattr(self, name, 0)
        table_side = (ERASED, OTHER_POOL)
        self.examples = [e for e in self.examples if e.category in table_side]
        self._shown = {}
        for example in self.examples:
            self._shown[example.category] = self._shown.get(example.category, 0) + 1


# What a checkpoint carries from one part of a run to the next; what the listing found.
_POOL_SIDE = ("pool_users", "in_step", "to_create", "to_refresh", "unconfirmed", "invalid")
_RESTORED = frozenset(
    {*_POOL_SIDE, "created", "already_existed", "refreshed", "changed_since_read"}
    | {"list_requests", "retries", "throttled", "listing_restarts"}
)


@dataclass(frozen=True)
class ProgressEvent:
    """Where the run is: `phase` (table, pool, writes, settle, orphans), done of total."""

    phase: str
    done: int
    total: int | None = None


@dataclass
class _Held:
    """Users with no row whose email some row has: moved, or to be created after all.

    Kept lean (it holds every user of a pool restored elsewhere): email digest → sub, a list
    only where several users share an email.
    """

    by_email: dict[int, str | list[str]] = field(default_factory=dict)
    unconfirmed: set[str] = field(default_factory=set)

    def add(self, email: int, uid: str, unconfirmed: bool) -> None:
        known = self.by_email.get(email)
        if known is None:
            self.by_email[email] = uid
        elif isinstance(known, list):
            known.append(uid)
        else:
            self.by_email[email] = [known, uid]
        if unconfirmed:
            self.unconfirmed.add(uid)

    def users(self, email: int) -> list[str]:
        known = self.by_email.get(email)
        if known is None:
            return []
        return known if isinstance(known, list) else [known]


class _Listing:
    """Where the listing of the pool stands: the checkpoint's state, kept up to date."""

    def __init__(self, state: State) -> None:
        self.state = state

    def resume(
        self, saved: tuple[State, bytes], index: TableIndex, held: _Held, report: Report
    ) -> None:
        """Carry on from a checkpoint: its counts, the rows its users own, who it held."""
        state, log = saved
        self.state = state
        report.restore(state.report)
        report.resumed_at_page = state.pages + 1
        for kind, uid, email in records(log):
            if kind == SEEN:
                index.take(uid)
            else:
                held.add(email, uid, kind == HELD_UNCONFIRMED)

    def advance(self, token: str | None, appended: bytes, report: Report) -> None:
        state = self.state
        state.token = token
        state.listing_done = token is None
        state.pages += 1
        state.log_bytes += len(appended)
        state.report = report.as_dict()

    def restart(self, index: TableIndex, held: _Held, report: Report) -> None:
        """The listing starts over: nothing it found so far counts (its writes stay made)."""
        report.listing_restarts += 1
        report.forget_pool()
        index.forget_seen()
        held.by_email.clear()
        held.unconfirmed.clear()
        state = self.state
        state.token, state.listing_done, state.pages, state.log_bytes = None, False, 0, 0
        state.report = report.as_dict()


def _token_refused(exc: ClientError) -> bool:
    """Cognito's answer to a pagination token it no longer takes.

    "Paging marker … is invalid for request …", an InvalidParameterException (reported by
    SDK users, e.g. aws/aws-sdk-js#3705); the token's lifetime is not documented.
    """
    message = str(exc.response.get("Error", {}).get("Message") or "").lower()
    return aws.error_code(exc) == "InvalidParameterException" and (
        "paging marker" in message or "pagination" in message
    )


# --- the run -----------------------------------------------------------------------------


class Reconciler:
    """One reconcile of one user pool against one table."""

    def __init__(
        self,
        cognito: Any,
        table: UsersTable,
        user_pool_id: str,
        *,
        rate: float = DEFAULT_RATE,
        concurrency: int = DEFAULT_CONCURRENCY,
        examples: int = DEFAULT_EXAMPLES,
        extra_fields: Mapping[str, Any] | None = None,
        on_progress: Callable[[ProgressEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        backoff: Backoff | None = None,
        checkpoints: Checkpoints | None = None,
        restart: bool = False,
        out_of_time: Callable[[], bool] | None = None,
    ) -> None:
        if not 0 < rate <= LIST_USERS_QUOTA:
            raise ValueError(f"rate must be above 0 and at most {LIST_USERS_QUOTA:g} requests/s")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.user_pool_id = user_pool_id
        self.rate = rate
        self.concurrency = concurrency
        self.examples = examples
        self.extra_fields = dict(extra_fields or {})
        self._progress = on_progress or (lambda _: None)
        self._showing_progress = on_progress is not None
        self._clock = clock
        self.backoff = backoff or Backoff(sleep=sleep)
        self.limiter = TokenBucket(rate, clock=clock, sleep=sleep)
        self.cognito = PatientClient(cognito, self.backoff, self.limiter)
        self.table = UsersTable(PatientClient(table.client, self.backoff), table.name)
        self.checkpoints = checkpoints
        self.restart = restart
        self._out_of_time = out_of_time or (lambda: False)

    # --- the whole run ---------------------------------------------------------------

    def run(
        self,
        *,
        apply: bool = False,
        delete_orphans: bool = False,
        erase_orphans: erasure.Policy | None = None,
        confirm_delete: Callable[[int], bool] | None = None,
        include_no_pool: bool = False,
    ) -> Report:
        """Compare, and with `apply` heal. Orphans are deleted (`delete_orphans`) or erased
        by the policy `erase_orphans` only with `apply` and `confirm_delete(count)` returning
        True, and each only once Cognito confirms its user is gone. Only this pool's rows:
        another pool's are counted and never changed; orphans that record no pool are
        counted apart and deleted or erased only with `include_no_pool`.

        With `checkpoints`, the run resumes where an earlier one with the same pool, table
        and mode stopped (unless `restart`), saves its place after each page, and forgets it
        once done. When `out_of_time()` says so after a page, it stops there with
        `report.complete` false: the next run goes on from that page.
        """
        if delete_orphans and erase_orphans is not None:
            raise ValueError("delete orphans or erase them, not both")
        started = self._clock()
        report = Report(
            self.user_pool_id,
            self.table.name,
            apply,
            self.rate,
            examples_per_category=self.examples,
        )
        estimate = self._estimated_users()
        saved = self._saved(apply)
        index = self._index_table()
        report.rows = index.count
        report.erased = index.erased
        report.other_pool_rows = index.other_pool
        report.include_no_pool = include_no_pool
        for uid in index.erased_examples:
            report.example(ERASED, uid, "its user was deleted; erased")
        for uid in index.other_pool_examples:
            report.example(OTHER_POOL, uid, "another pool's user; left alone")
        report.table_seconds = round(self._clock() - started, 3)
        listing = _Listing(State(self.user_pool_id, self.table.name, apply))
        held = _Held()
        if saved is not None:
            listing.resume(saved, index, held, report)
        with _Writer(self.concurrency if apply else 0, report, self._progress) as writer:
            if not listing.state.listing_done:
                self._list_pool(listing, index, held, report, writer, estimate)
                if not listing.state.listing_done:
                    return self._finished(report, started, complete=False)
            report.pool_seconds = round(self._clock() - started - report.table_seconds, 3)
            self._settle(index, held, report, writer)
            writer.drain()
            if apply and (delete_orphans or erase_orphans is not None):
                report.erasure_policy = str(erase_orphans) if erase_orphans else None
                self._delete_orphans(
                    index, held, report, writer, confirm_delete, erase_orphans, include_no_pool
                )
                writer.drain()
        if self.checkpoints is not None:
            self.checkpoints.clear()
        return self._finished(report, started, complete=True)

    def _finished(self, report: Report, started: float, *, complete: bool) -> Report:
        report.complete = complete
        report.retries += self.backoff.retries
        report.throttled += self.limiter.throttled_calls
        report.lowest_rate = round(self.limiter.lowest, 3)
        report.seconds = round(self._clock() - started, 3)
        return report

    def _saved(self, apply: bool) -> tuple[State, bytes] | None:
        """The checkpoint of an earlier run of this pool, table and mode, if any."""
        if self.checkpoints is None:
            return None
        if self.restart:
            self.checkpoints.clear()
            return None
        saved = self.checkpoints.load()
        if saved is None:
            return None
        state = saved[0]
        if (state.user_pool_id, state.table, state.applying) != (
            self.user_pool_id,
            self.table.name,
            apply,
        ):
            return None  # another run's: never mixed with this one
        return saved

    # --- stage 1: the table ------------------------------------------------------------

    def _index_table(self) -> TableIndex:
        estimate = self._estimated_rows()
        index = TableIndex(expected=estimate or 0, user_pool_id=self.user_pool_id)
        total = estimate if self._showing_progress else None
        for page in self.table.pages(TABLE_PAGE_SIZE):
            for row in page:
                index.add(row)
            self._progress(ProgressEvent("table", index.count, total))
        index.seal()
        return index

    def _estimated_rows(self) -> int | None:
        """DynamoDB's item count (refreshed every few hours): a progress bar's total, and the
        index's first size."""
        try:
            answer = self.table.client.describe_table(TableName=self.table.name)
        except (ClientError, BotoCoreError):
            return None
        count = answer.get("Table", {}).get("ItemCount")
        return int(count) if isinstance(count, int) else None

    # --- stage 2: the pool -------------------------------------------------------------

    def _estimated_users(self) -> int | None:
        """The pool's estimated size, for the progress bar; raises PoolNotFound early."""
        try:
            answer = self.cognito.describe_user_pool(UserPoolId=self.user_pool_id)
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise PoolNotFound(self.user_pool_id) from exc
            return None  # not allowed to describe it, say: the listing will tell
        count = answer.get("UserPool", {}).get("EstimatedNumberOfUsers")
        return int(count) if isinstance(count, int) else None

    def _list_pool(
        self,
        listing: _Listing,
        index: TableIndex,
        held: _Held,
        report: Report,
        writer: _Writer,
        estimate: int | None,
    ) -> None:
        """Every user of the pool, a page at a time, each page checkpointed once its writes
        have landed; returns early when out of time (the listing is then not done).

        A page may be short or even empty while more remain: only the absence of a
        `PaginationToken` ends the listing.
        """
        while not listing.state.listing_done:
            answer = self._page(listing.state.token, listing, index, held, report)
            if answer is None:
                continue  # the token was refused: the listing starts over
            appended = bytearray()
            for user in answer.get("Users") or []:
                appended += self._sort(user, index, held, report, writer)
            writer.drain()  # what the checkpoint covers must have landed
            listing.advance(answer.get("PaginationToken") or None, bytes(appended), report)
            if self.checkpoints is not None:
                self.checkpoints.save(listing.state, bytes(appended))
            self._progress(ProgressEvent("pool", report.pool_users, estimate))
            if not listing.state.listing_done and self._out_of_time():
                return

    def _page(
        self,
        token: str | None,
        listing: _Listing,
        index: TableIndex,
        held: _Held,
        report: Report,
    ) -> dict[str, Any] | None:
        """One ListUsers page; None when Cognito refused the token (the listing was reset)."""
        kwargs: dict[str, Any] = {"UserPoolId": self.user_pool_id, "Limit": PAGE_LIMIT}
        if token:
            kwargs["PaginationToken"] = token
        try:
            answer: dict[str, Any] = self.cognito.list_users(**kwargs)
        except ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise PoolNotFound(self.user_pool_id) from exc
            if token and _token_refused(exc) and report.listing_restarts < MAX_RESTARTS:
                # Its lifetime is undocumented (it carries the time of the first request):
                # a fresh listing is the only safe way on. Writes already made are kept;
                # what the listing found is counted again from the start.
                listing.restart(index, held, report)
                if self.checkpoints is not None:
                    self.checkpoints.save(listing.state, b"")
                return None
            raise
        report.list_requests += 1
        return answer

    def _sort(
        self,
        user: Mapping[str, Any],
        index: TableIndex,
        held: _Held,
        report: Report,
        writer: _Writer,
    ) -> bytes:
        """Put one pool user in its category, and queue the write it needs; the user's
        seen-log record for the checkpoint."""
        report.pool_users += 1
        attributes = {a["Name"]: a.get("Value") for a in user.get("Attributes") or []}
        uid = schema.user_id(attributes)
        status = str(user.get("UserStatus") or "")
        username = str(user.get("Username") or uid or "")
        # ListUsers says whether each user is enabled; a missing flag is Cognito's default.
        enabled = user.get("Enabled") is not False
        if uid is None:
            report.invalid += 1
            report.example(INVALID, "(none)", "a user without a sub")
            return b""
        identity = schema.identity(attributes, username)
        compared = _compared_of_user(identity, enabled)
        number = index.take(uid)
        if number is not None:
            if status == UNCONFIRMED:
                report.unconfirmed += 1
                report.example(UNCONFIRMED_USER, uid, "has a row; left alone")
            elif index.records_no_pool(number):
                # Found in this pool: the refresh records the pool in the row (adopts it).
                report.to_refresh += 1
                report.example(TO_REFRESH, uid, "records no pool: adopted by this pool")
                flag = enabled if not enabled or index.has_enabled_flag(number) else None
                writer.refresh(
                    self.table, self.user_pool_id, uid, identity, index.updated_at(number), flag
                )
            elif index.identity_digest(number) == _identity_digest(compared):
                report.in_step += 1
            else:
                report.to_refresh += 1
                differing = _differing(index.hints(number), compared)
                report.example(TO_REFRESH, uid, "differs: " + (", ".join(differing) or "identity"))
                # The flag is written where it says something: a disabled user, or a row
                # that has one (a row without it reads as enabled).
                flag = enabled if not enabled or index.has_enabled_flag(number) else None
                writer.refresh(
                    self.table, self.user_pool_id, uid, identity, index.updated_at(number), flag
                )
            return record(SEEN, uid)
        email = _email_digest(identity)
        if index.has_email(email):
            # Maybe the same person under a new sub: decided once every row is accounted for.
            held.add(email, uid, status == UNCONFIRMED)
            return record(HELD_UNCONFIRMED if status == UNCONFIRMED else HELD, uid, email)
        self._missing(uid, username, status, enabled, attributes, report, writer)
        return record(SEEN, uid)

    def _missing(
        self,
        uid: str,
        username: str,
        status: str,
        enabled: bool,
        attributes: Mapping[str, Any],
        report: Report,
        writer: _Writer,
    ) -> None:
        """A user with no row: created, unless unconfirmed (the trigger will do it then)."""
        if status == UNCONFIRMED:
            report.unconfirmed += 1
            report.example(UNCONFIRMED_USER, uid, "no row; left alone")
            return
        try:
            # The trigger's own recipe, role policy included (admin becomes customer).
            item = schema.new_record(
                attributes,
                username,
                timestamp=schema.now(),
                extra_fields=self.extra_fields,
                user_pool_id=self.user_pool_id,
            )
        except InvalidRecord as exc:
            report.invalid += 1
            report.example(INVALID, uid, "cannot make a valid row: " + _fields_of(exc))
            return
        if not enabled:
            item[schema.COGNITO_ENABLED] = False  # without it the row would read as enabled
        report.to_create += 1
        report.example(
            TO_CREATE, uid, (status or "status unknown") + ("" if enabled else ", disabled")
        )
        writer.create(self.table, item)

    # --- stage 4: settle ---------------------------------------------------------------

    def _settle(self, index: TableIndex, held: _Held, report: Report, writer: _Writer) -> None:
        """Rows never seen are orphans or moved; users held back are created after all."""
        matched: set[int] = set()
        for uid, number in index.unseen():
            email = index.email_digest(number)
            new_ids = held.users(email)
            if new_ids:
                report.moved += 1
                matched.add(email)
                more = f" and {len(new_ids) - 1} more" if len(new_ids) > 1 else ""
                report.example(MOVED, uid, f"same email as user {new_ids[0]}{more}; not moved")
            elif index.records_no_pool(number):
                report.no_pool_orphans += 1
                report.example(NO_POOL_ORPHAN, uid, "no such user in this pool; maybe another's")
            else:
                report.orphans += 1
                report.example(ORPHAN, uid, "no such user in the pool")
        # Held back for an email that belongs to another live user's row: nothing moved.
        leftover = [
            uid for email in held.by_email if email not in matched for uid in held.users(email)
        ]
        for done, uid in enumerate(leftover, 1):
            if uid in held.unconfirmed:
                report.unconfirmed += 1
                report.example(UNCONFIRMED_USER, uid, "no row; left alone")
            elif not writer.applying:
                report.to_create += 1
                report.example(TO_CREATE, uid, "shares an email with another user's row")
            else:
                # Only the user's id was kept: read the user again to build the row.
                user = self._user_by_sub(uid)
                if user is not None:
                    attributes = {a["Name"]: a.get("Value") for a in user.get("Attributes") or []}
                    username = str(user.get("Username") or uid)
                    status = str(user.get("UserStatus") or "")
                    enabled = user.get("Enabled") is not False
                    self._missing(uid, username, status, enabled, attributes, report, writer)
            self._progress(ProgressEvent("settle", done, len(leftover)))

    def _user_by_sub(self, uid: str) -> dict[str, Any] | None:
        """The pool's user with this sub, or None (one rate-limited ListUsers call)."""
        answer = self.cognito.list_users(
            UserPoolId=self.user_pool_id, Filter=f'sub = "{_quoted(uid)}"', Limit=1
        )
        users = answer.get("Users") or []
        return dict(users[0]) if users else None

    # --- stage 5: orphans --------------------------------------------------------------

    def _still_in_pool(self, uid: str) -> bool:
        """Whether the pool still has the row's user, asked the strongly consistent way.

        ListUsers is eventually consistent (a user created moments ago may be missing from
        it), so before a row is deleted AdminGetUser is asked: by the row's user name (the
        only name a federated user answers to), then by the sub (which AdminGetUser takes for
        a local user). A user of that name with another sub is someone else: not ours.
        """
        row = self.table.get(uid)
        if row is None:
            return True  # already gone: nothing to delete
        names = list(dict.fromkeys([str(row.get("username") or uid), uid]))
        for name in names:
            try:
                user = self.cognito.admin_get_user(UserPoolId=self.user_pool_id, Username=name)
            except ClientError as exc:
                if aws.error_code(exc) == "UserNotFoundException":
                    continue
                raise
            if _sub_of(user) in (uid, None):
                return True
        return False

    def _delete_orphans(
        self,
        index: TableIndex,
        held: _Held,
        report: Report,
        writer: _Writer,
        confirm: Callable[[int], bool] | None,
        policy: erasure.Policy | None = None,
        include_no_pool: bool = False,
    ) -> None:
        """Delete or erase the orphans, each once Cognito confirms its user is gone.

        Erasing takes the rows reported as moved too: their user is gone, whoever now has
        the same email (erasure keeps the app data; deletion would not, so `--delete-orphans`
        leaves them). Rows recording no pool only with `include_no_pool`.
        """

        def wanted(number: int) -> bool:
            if index.records_no_pool(number) and not include_no_pool:
                return False
            return policy is not None or not held.users(index.email_digest(number))

        total = sum(1 for _, number in index.unseen() if wanted(number))
        if total == 0:
            return
        if confirm is None or not confirm(total):
            report.orphans_kept = total
            return
        done = 0
        for uid, number in index.unseen():
            if not wanted(number):
                continue
            done += 1
            legacy = index.records_no_pool(number)
            if policy is not None:
                self._erase_orphan(uid, policy, report, writer, legacy)
            elif self._still_in_pool(uid):
                report.orphans_kept += 1
            else:
                writer.delete(self.table, self.user_pool_id, uid, index.updated_at(number), legacy)
            self._progress(ProgressEvent("orphans", done, total))

    def _erase_orphan(
        self,
        uid: str,
        policy: erasure.Policy,
        report: Report,
        writer: _Writer,
        adopt_no_pool: bool = False,
    ) -> None:
        """Erase the row by `policy` once AdminGetUser, strongly consistent, says the user is
        gone (by the row's user name: the index kept ids only)."""
        row = self.table.get(uid)
        hint = row.get("username") if row else None
        user = pool_users.find_user(
            self.cognito,
            self.user_pool_id,
            uid,
            username_hint=hint if isinstance(hint, str) else None,
        )
        if user is not None:
            report.orphans_kept += 1
        else:
            writer.erase(self.table, self.user_pool_id, uid, policy, adopt_no_pool)


def _sub_of(user: Mapping[str, Any]) -> str | None:
    for attribute in user.get("UserAttributes") or []:
        if attribute.get("Name") == "sub":
            return str(attribute.get("Value"))
    return None


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _fields_of(exc: InvalidRecord) -> str:
    """The names of the fields at fault, without their values."""
    return ", ".join(sorted({p.split(":", 1)[0] for p in exc.problems}))


# --- stage 3: the writes -----------------------------------------------------------------


class _Writer:
    """Runs the writes on a few threads, a bounded number in flight; counts their outcomes.

    Outcomes are counted on the calling thread only. With no workers it writes nothing (the
    dry run). Leaving the `with` block, also by Ctrl-C or an error, cancels the writes not
    yet started and waits for those in flight: each is conditional, so one that landed is
    simply seen as done by the next run.
    """

    def __init__(
        self, workers: int, report: Report, progress: Callable[[ProgressEvent], None]
    ) -> None:
        self.applying = workers > 0
        self._report = report
        self._progress = progress
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers else None
        self._limit = max(1, workers) * 4
        self._pending: set[Future[tuple[str, bool]]] = set()
        self._done = 0

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def create(self, table: UsersTable, item: Mapping[str, Any]) -> None:
        self._submit("create", table.create_if_absent, item)

    def refresh(
        self,
        table: UsersTable,
        pool: str,
        uid: str,
        identity: Mapping[str, Any],
        updated_at: str | None,
        enabled: bool | None = None,
    ) -> None:
        self._submit(
            "refresh",
            lambda: table.refresh_identity(
                uid,
                identity,
                user_pool_id=pool,
                read_updated_at=updated_at,
                timestamp=schema.now(),
                enabled=enabled,
            ),
        )

    def delete(
        self, table: UsersTable, pool: str, uid: str, updated_at: str | None, adopt_no_pool: bool
    ) -> None:
        self._submit(
            "delete",
            lambda: table.delete_if_unchanged(
                uid, user_pool_id=pool, read_updated_at=updated_at, adopt_legacy=adopt_no_pool
            ),
        )

    def erase(
        self, table: UsersTable, pool: str, uid: str, policy: erasure.Policy, adopt_no_pool: bool
    ) -> None:
        self._submit(
            "erase",
            lambda: (
                erasure.erase(table, uid, policy, user_pool_id=pool, adopt_legacy=adopt_no_pool)
                in erasure.ERASED_NOW
            ),
        )

    def _submit(self, kind: str, operation: Callable[..., bool], *args: Any) -> None:
        if self._pool is None:
            return
        while len(self._pending) >= self._limit:
            self._harvest(FIRST_COMPLETED)
        self._pending.add(self._pool.submit(lambda: (kind, operation(*args))))

    def drain(self) -> None:
        """Wait for every write submitted so far."""
        while self._pending:
            self._harvest(FIRST_COMPLETED)

    def _harvest(self, when: str) -> None:
        done, self._pending = wait(self._pending, return_when=when)
        for future in done:
            kind, written = future.result()  # a write's error ends the run here
            report = self._report
            if kind == "create":
                report.created += written
                report.already_existed += not written
            elif kind == "refresh":
                report.refreshed += written
                report.changed_since_read += not written
            elif kind == "erase":
                report.orphans_erased += written
                report.orphans_kept += not written
            else:
                report.orphans_deleted += written
                report.orphans_kept += not written
            self._done += 1
            self._progress(ProgressEvent("writes", self._done))


def reconcile(
    cognito: Any,
    table: UsersTable,
    user_pool_id: str,
    *,
    apply: bool = False,
    delete_orphans: bool = False,
    erase_orphans: erasure.Policy | None = None,
    confirm_delete: Callable[[int], bool] | None = None,
    include_no_pool: bool = False,
    **options: Any,
) -> Report:
    """Compare the pool with the table and, with `apply`, heal the table. See `Reconciler`."""
    return Reconciler(cognito, table, user_pool_id, **options).run(
        apply=apply,
        delete_orphans=delete_orphans,
        erase_orphans=erase_orphans,
        confirm_delete=confirm_delete,
        include_no_pool=include_no_pool,
    )
