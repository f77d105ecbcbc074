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
   (`--erase-orphans`) only when asked, confirmed, and Cognito still says they are gone
   (`AdminGetUser`, strongly consistent). Rows already marked deleted (`deletedAt`: erased
   by the change handler or `users delete`) are reported apart, never as orphans.

Every write is conditional and idempotent, so an interrupted run loses nothing: the next run
reads both sides again and does only what is still to do.

Memory holds user ids, not records: ≈ 45 bytes of digests per row plus its id, and 8 bytes
per email; the pool is streamed a page at a time.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
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

# The categories of the report, in the order they are shown.
TO_CREATE = "to create"
TO_REFRESH = "to refresh"
ORPHAN = "orphan"
MOVED = "moved"
UNCONFIRMED_USER = "unconfirmed"
INVALID = "invalid"
ERASED = "marked deleted"
CATEGORIES = (TO_CREATE, TO_REFRESH, ORPHAN, MOVED, UNCONFIRMED_USER, INVALID, ERASED)

# Cognito's server error is InternalErrorException; the rest are shared with the trigger.
TRANSIENT_CODES = aws.RETRYABLE_CODES | {"InternalErrorException", "LimitExceededException"}

T = TypeVar("T")


# --- pacing and patience -----------------------------------------------------------------


class TokenBucket:
    """At most `rate` acquisitions a second, with bursts of at most `burst`.

    `clock` and `sleep` are injectable so tests never wait.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = burst
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


def is_transient(exc: BaseException) -> bool:
    """Throttling, a server error or a lost connection: worth another attempt later.

    Not an endpoint that cannot be reached or does not answer in time: ten more waits would
    hold the command for minutes in silence; it stops with one line instead (rerunning is safe).
    """
    if isinstance(exc, ClientError):
        return aws.error_code(exc) in TRANSIENT_CODES
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | EndpointConnectionError):
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
        before: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> T:
        """`operation(**kwargs)`; `before()` runs ahead of every attempt (a rate limiter)."""
        for attempt in range(self.attempts):
            if before is not None:
                before()
            try:
                return operation(**kwargs)
            except (ClientError, BotoCoreError) as exc:
                if attempt == self.attempts - 1 or not is_transient(exc):
                    raise
            with self._lock:
                self.retries += 1
            self._sleep(self._jitter(0.0, min(self.cap, self.base * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover


class PatientClient:
    """A boto3 client whose every API call waits its turn and backs off when throttled.

    Wrapping the client (rather than each call site) gives the table's own methods — its
    scan, its conditional writes — the same patience. Errors that are not transient, such as
    a failed condition, pass straight through.
    """

    def __init__(self, client: Any, backoff: Backoff, limiter: TokenBucket | None = None) -> None:
        self._client = client
        self._backoff = backoff
        self._limiter = limiter

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._client.meta.method_to_api_mapping:
            return attribute
        before = self._limiter.acquire if self._limiter else None

        def call(**kwargs: Any) -> Any:
            return self._backoff.call(attribute, before=before, **kwargs)

        return call


def clients(region: str, concurrency: int = DEFAULT_CONCURRENCY) -> tuple[Any, Any]:
    """Cognito and DynamoDB clients for reconcile: botocore does not retry, we do (paced)."""
    # One attempt each, so a call that gets no answer ends within the command's budget
    # (aws.cli_budget); `is_transient` does not retry a timeout for the same reason.
    config = aws.cli_config(attempts=1, max_pool_connections=concurrency + 4)
    return (
        aws.client("cognito-idp", config=config, region_name=region),
        aws.client("dynamodb", config=config, region_name=region),
    )


# --- what is kept per row ----------------------------------------------------------------

_NO_EMAIL = 0
_TIMESTAMP_BYTES = 24  # len("2026-01-31T12:00:00.000Z")


def _digest(value: Any, size: int = 8) -> bytes:
    text = json.dumps(value, default=repr, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=size).digest()


def _identity_of_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {f: row[f] for f in schema.IDENTITY_FIELDS if f in row}


def _identity_digest(identity: Mapping[str, Any]) -> bytes:
    return _digest([[f, identity[f]] for f in schema.IDENTITY_FIELDS if f in identity])


def _email_digest(identity: Mapping[str, Any]) -> int:
    """A 64-bit digest of the (lower-cased) email, or 0 when there is none."""
    email = identity.get("email")
    if not isinstance(email, str) or not email:
        return _NO_EMAIL
    return int.from_bytes(_digest(email), "big") or 1


# Per identity field, enough to name which fields differ in the report: with one byte, one
# changed field in 256 kept its hint and the report said only "identity".
HINT_BYTES = 2


def _hints(identity: Mapping[str, Any]) -> bytes:
    return b"".join(
        _digest([f, f in identity, identity.get(f)], HINT_BYTES) for f in schema.IDENTITY_FIELDS
    )


def _differing(hints: bytes, identity: Mapping[str, Any]) -> list[str]:
    mine = _hints(identity)
    return [
        f
        for i, f in enumerate(schema.IDENTITY_FIELDS)
        if hints[i * HINT_BYTES : (i + 1) * HINT_BYTES]
        != mine[i * HINT_BYTES : (i + 1) * HINT_BYTES]
    ]


@dataclass
class TableIndex:
    """The table, as reconcile needs it: per user id the row's digests and `updatedAt`.

    A row's entry packs its identity digest (8 bytes), email digest (8), field hints (2 a
    field) and `updatedAt` (24 ASCII characters) into one bytes object; a row whose `updatedAt` is
    missing or unusual keeps it in `odd_updated_at` instead.
    """

    rows: dict[str, bytes] = field(default_factory=dict)
    odd_updated_at: dict[str, Any] = field(default_factory=dict)
    emails: array[int] = field(default_factory=lambda: array("Q"))
    count: int = 0
    # Rows marked deleted: counted, a few ids kept for the report, never indexed as users.
    erased: int = 0
    erased_examples: list[str] = field(default_factory=list)

    _HINTS_END = 8 + 8 + HINT_BYTES * len(schema.IDENTITY_FIELDS)

    def add(self, row: Mapping[str, Any]) -> None:
        uid = row.get("user_id")
        if not isinstance(uid, str):
            return
        self.count += 1
        if schema.is_deleted(row):
            self.erased += 1
            if len(self.erased_examples) < DEFAULT_EXAMPLES * 10:
                self.erased_examples.append(uid)
            return
        identity = _identity_of_row(row)
        email = _email_digest(identity)
        packed = _identity_digest(identity) + email.to_bytes(8, "big") + _hints(identity)
        updated = row.get("updatedAt")
        if isinstance(updated, str) and len(updated) == _TIMESTAMP_BYTES and updated.isascii():
            packed += updated.encode("ascii")
        else:
            self.odd_updated_at[uid] = updated
        self.rows[uid] = packed
        if email != _NO_EMAIL:
            self.emails.append(email)

    def seal(self) -> None:
        """Sort the email digests, for `has_email`."""
        self.emails = array("Q", sorted(self.emails))

    def has_email(self, email: int) -> bool:
        if email == _NO_EMAIL:
            return False
        at = bisect_left(self.emails, email)
        return at < len(self.emails) and self.emails[at] == email

    @staticmethod
    def identity_digest(packed: bytes) -> bytes:
        return packed[:8]

    @staticmethod
    def email_digest(packed: bytes) -> int:
        return int.from_bytes(packed[8:16], "big")

    def hints(self, packed: bytes) -> bytes:
        return packed[16 : self._HINTS_END]

    def updated_at(self, uid: str, packed: bytes) -> str | None:
        if len(packed) > self._HINTS_END:
            return packed[self._HINTS_END :].decode("ascii")
        odd = self.odd_updated_at.get(uid)
        return odd if isinstance(odd, str) else None


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
    erasure_policy: str | None = None  # with --erase-orphans
    list_requests: int = 0
    retries: int = 0
    table_seconds: float = 0.0  # reading the table
    pool_seconds: float = 0.0  # listing the pool (with the writes it queued meanwhile)
    seconds: float = 0.0
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
        }

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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

    # --- the whole run ---------------------------------------------------------------

    def run(
        self,
        *,
        apply: bool = False,
        delete_orphans: bool = False,
        erase_orphans: erasure.Policy | None = None,
        confirm_delete: Callable[[int], bool] | None = None,
    ) -> Report:
        """Compare, and with `apply` heal. Orphans are deleted (`delete_orphans`) or erased
        by the policy `erase_orphans` only with `apply` and `confirm_delete(count)` returning
        True, and each only once Cognito confirms its user is gone."""
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
        index = self._index_table()
        report.rows = index.count
        report.erased = index.erased
        for uid in index.erased_examples:
            report.example(ERASED, uid, "its user was deleted; erased")
        report.table_seconds = round(self._clock() - started, 3)
        held = _Held()
        with _Writer(self.concurrency if apply else 0, report, self._progress) as writer:
            for page in self._pool_pages(report):
                for user in page:
                    self._sort(user, index, held, report, writer)
                self._progress(ProgressEvent("pool", report.pool_users, estimate))
            writer.drain()
            report.pool_seconds = round(self._clock() - started - report.table_seconds, 3)
            self._settle(index, held, report, writer)
            writer.drain()
            if apply and (delete_orphans or erase_orphans is not None):
                report.erasure_policy = str(erase_orphans) if erase_orphans else None
                self._delete_orphans(index, held, report, writer, confirm_delete, erase_orphans)
                writer.drain()
        report.retries = self.backoff.retries
        report.seconds = round(self._clock() - started, 3)
        return report

    # --- stage 1: the table ------------------------------------------------------------

    def _index_table(self) -> TableIndex:
        index = TableIndex()
        total = self._estimated_rows() if self._showing_progress else None
        for page in self.table.pages(TABLE_PAGE_SIZE):
            for row in page:
                index.add(row)
            self._progress(ProgressEvent("table", index.count, total))
        index.seal()
        return index

    def _estimated_rows(self) -> int | None:
        """DynamoDB's item count (refreshed every few hours): only a progress bar's total."""
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

    def _pool_pages(self, report: Report) -> Iterator[list[dict[str, Any]]]:
        """Every user of the pool, a page at a time.

        A page may be short or even empty while more remain: only the absence of a
        `PaginationToken` ends the listing.
        """
        kwargs: dict[str, Any] = {"UserPoolId": self.user_pool_id, "Limit": PAGE_LIMIT}
        while True:
            try:
                answer = self.cognito.list_users(**kwargs)
            except ClientError as exc:
                if aws.error_code(exc) == "ResourceNotFoundException":
                    raise PoolNotFound(self.user_pool_id) from exc
                raise
            report.list_requests += 1
            yield list(answer.get("Users") or [])
            token = answer.get("PaginationToken")
            if not token:
                return
            kwargs["PaginationToken"] = token

    def _sort(
        self,
        user: Mapping[str, Any],
        index: TableIndex,
        held: _Held,
        report: Report,
        writer: _Writer,
    ) -> None:
        """Put one pool user in its category, and queue the write it needs."""
        report.pool_users += 1
        attributes = {a["Name"]: a.get("Value") for a in user.get("Attributes") or []}
        uid = schema.user_id(attributes)
        status = str(user.get("UserStatus") or "")
        username = str(user.get("Username") or uid or "")
        if uid is None:
            report.invalid += 1
            report.example(INVALID, "(none)", "a user without a sub")
            return
        identity = schema.identity(attributes, username)
        packed = index.rows.pop(uid, None)
        if packed is not None:
            if status == UNCONFIRMED:
                report.unconfirmed += 1
                report.example(UNCONFIRMED_USER, uid, "has a row; left alone")
            elif index.identity_digest(packed) == _identity_digest(identity):
                report.in_step += 1
            else:
                report.to_refresh += 1
                fields = _differing(index.hints(packed), identity)
                report.example(TO_REFRESH, uid, "differs: " + (", ".join(fields) or "identity"))
                writer.refresh(self.table, uid, identity, index.updated_at(uid, packed))
            return
        email = _email_digest(identity)
        if index.has_email(email):
            # Maybe the same person under a new sub: decided once every row is accounted for.
            held.add(email, uid, status == UNCONFIRMED)
            return
        self._missing(uid, username, status, attributes, report, writer)

    def _missing(
        self,
        uid: str,
        username: str,
        status: str,
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
                attributes, username, timestamp=schema.now(), extra_fields=self.extra_fields
            )
        except InvalidRecord as exc:
            report.invalid += 1
            report.example(INVALID, uid, "cannot make a valid row: " + _fields_of(exc))
            return
        report.to_create += 1
        report.example(TO_CREATE, uid, status or "status unknown")
        writer.create(self.table, item)

    # --- stage 4: settle ---------------------------------------------------------------

    def _settle(self, index: TableIndex, held: _Held, report: Report, writer: _Writer) -> None:
        """Rows never seen are orphans or moved; users held back are created after all."""
        matched: set[int] = set()
        for uid, packed in index.rows.items():
            email = index.email_digest(packed)
            new_ids = held.users(email)
            if new_ids:
                report.moved += 1
                matched.add(email)
                more = f" and {len(new_ids) - 1} more" if len(new_ids) > 1 else ""
                report.example(MOVED, uid, f"same email as user {new_ids[0]}{more}; not moved")
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
                    self._missing(uid, username, status, attributes, report, writer)
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
    ) -> None:
        if report.orphans == 0:
            return
        if confirm is None or not confirm(report.orphans):
            report.orphans_kept = report.orphans
            return
        done = 0
        for uid, packed in index.rows.items():
            if held.users(index.email_digest(packed)):
                continue  # moved, not orphaned: its app data is still someone's
            done += 1
            if policy is not None:
                self._erase_orphan(uid, policy, report, writer)
            elif self._still_in_pool(uid):
                report.orphans_kept += 1
            else:
                writer.delete(self.table, uid, index.updated_at(uid, packed))
            self._progress(ProgressEvent("orphans", done, report.orphans))

    def _erase_orphan(
        self, uid: str, policy: erasure.Policy, report: Report, writer: _Writer
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
            writer.erase(self.table, uid, policy)


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
        self, table: UsersTable, uid: str, identity: Mapping[str, Any], updated_at: str | None
    ) -> None:
        self._submit(
            "refresh",
            lambda: table.refresh_identity(
                uid, identity, read_updated_at=updated_at, timestamp=schema.now()
            ),
        )

    def delete(self, table: UsersTable, uid: str, updated_at: str | None) -> None:
        self._submit("delete", lambda: table.delete_if_unchanged(uid, read_updated_at=updated_at))

    def erase(self, table: UsersTable, uid: str, policy: erasure.Policy) -> None:
        self._submit(
            "erase",
            lambda: (
                erasure.erase(table, uid, policy)
                in (
                    erasure.Erased.ANONYMIZED,
                    erasure.Erased.DELETED,
                    erasure.Erased.MARKED_DELETED,
                )
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
    **options: Any,
) -> Report:
    """Compare the pool with the table and, with `apply`, heal the table. See `Reconciler`."""
    return Reconciler(cognito, table, user_pool_id, **options).run(
        apply=apply,
        delete_orphans=delete_orphans,
        erase_orphans=erase_orphans,
        confirm_delete=confirm_delete,
    )
