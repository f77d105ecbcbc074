"""The console's users view: each Cognito user beside their row, matched by `sub`.

One list, read a page at a time from both sides, never loaded whole:
1. **pool pages**: `ListUsers` (60 a page, its `PaginationToken` followed), each page's rows
   read by `BatchGetItem` and every pair given a state;
2. **row pages**: once the pool is exhausted, the table is scanned for rows no user matches
   (orphans, and rows erased after their user went), checked against the pool's `sub`s
   (read for the first row page, used again by the next ones for a few seconds), or, in a
   search, each looked up by `sub`.
The cursor between requests is opaque to the page: which stage, Cognito's token or how many
users of an over-long page were shown, DynamoDB's `LastEvaluatedKey`.

cognito-local ignores `Limit` and answers every user in one page: a page longer than asked is
sliced here, and the cursor remembers how far it was shown.

What is read is personal data shown to the developer who owns the stack; nothing here logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from livekart_users import schema
from livekart_users.table import UsersTable, from_dynamo, to_dynamo

PAGE_SIZE = 50
LIST_USERS_LIMIT = 60  # the most ListUsers returns in one page
# A row page stops scanning after this long, so a table of in-step rows answers quickly; the
# cursor carries on from where it stopped.
ROW_SCAN_BUDGET_S = 0.6
ROW_SCAN_PAGE = 500
# How long the pool's subs, read for the rows without a user, are used again.
SUBS_SECONDS = 10.0

IN_STEP = "in step"
ROW_MISSING = "row missing"
STALE = "identity stale"
ERASED = "erased"
DISABLED = "disabled"
ORPHAN = "orphan"
UNCONFIRMED = "unconfirmed"
STATES = (IN_STEP, ROW_MISSING, STALE, ERASED, DISABLED, ORPHAN, UNCONFIRMED)

# What the summary in the list shows of a row; the whole row is in the detail.
_ROW_SUMMARY = ("role", "status", "updatedAt", "lastLoginAt", schema.DELETED_AT)


class InvalidCursor(ValueError):
    """A cursor this view did not make."""


@dataclass
class Entry:
    """One line of the view: a user, their row, or both."""

    user_id: str
    state: str
    username: str | None = None
    email: str | None = None
    user_status: str | None = None  # Cognito's UserStatus
    enabled: bool | None = None  # Cognito's Enabled flag
    stale_fields: list[str] = field(default_factory=list)
    row: dict[str, Any] | None = None  # the summary fields of the row

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Page:
    entries: list[Entry]
    cursor: str | None  # None: nothing more
    stage: str  # "users" or "rows": what the next page reads


def attributes_of(user: Mapping[str, Any]) -> dict[str, str]:
    """A ListUsers / AdminGetUser user's attributes as a name → value map."""
    listed = user.get("Attributes") or user.get("UserAttributes") or []
    return {str(a["Name"]): str(a.get("Value") or "") for a in listed}


def stale_fields(identity: Mapping[str, Any], row: Mapping[str, Any]) -> list[str]:
    """The identity fields whose value in the row is not what Cognito says now."""
    return [
        f
        for f in schema.IDENTITY_FIELDS
        if (f in identity, identity.get(f)) != (f in row, row.get(f))
    ]


def classify(user: Mapping[str, Any] | None, row: Mapping[str, Any] | None) -> Entry:
    """The state of one user and their row (either may be missing, not both)."""
    if user is None:
        assert row is not None
        return Entry(
            user_id=str(row["user_id"]),
            state=ERASED if schema.is_deleted(row) else ORPHAN,
            username=_text(row.get("username")),
            email=_text(row.get("email")),
            row=_summary(row),
        )
    attributes = attributes_of(user)
    uid = schema.user_id(attributes) or ""
    username = str(user.get("Username") or uid)
    status = str(user.get("UserStatus") or "")
    enabled = bool(user.get("Enabled", True))
    entry = Entry(
        user_id=uid,
        state=IN_STEP,
        username=username,
        email=_text(attributes.get("email")),
        user_status=status or None,
        enabled=enabled,
        row=_summary(row) if row is not None else None,
    )
    if row is None:
        entry.state = UNCONFIRMED if status == "UNCONFIRMED" else ROW_MISSING
        return entry
    if schema.is_deleted(row):
        entry.state = ERASED
        return entry
    entry.stale_fields = stale_fields(schema.identity(attributes, username), row)
    if not enabled:
        entry.state = DISABLED
    elif entry.stale_fields:
        entry.state = STALE
    return entry


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in _ROW_SUMMARY if k in row}


# --- the cursor --------------------------------------------------------------------------


def encode_cursor(state: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode()


def decode_cursor(text: str | None) -> dict[str, Any]:
    if not text:
        return {"stage": "users"}
    try:
        state = json.loads(base64.urlsafe_b64decode(text.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidCursor("the cursor is not one this console made: reload the page") from None
    if (
        not isinstance(state, dict)
        or state.get("stage") not in ("users", "rows")
        or not isinstance(state.get("token"), str | None)
        or not isinstance(state.get("skip", 0), int)
        or not isinstance(state.get("key"), dict | None)
    ):
        raise InvalidCursor("the cursor is not one this console made: reload the page")
    return state


# --- reading both sides ------------------------------------------------------------------


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _email_filter(search: str | None) -> dict[str, str]:
    """ListUsers' filter for an email prefix (`^=`: starts with; email is stored lower-case
    by Cognito only if given so, hence the search is lower-cased like the table's)."""
    if not search:
        return {}
    return {"Filter": f'email ^= "{_quoted(search.strip().lower())}"'}


class UsersView:
    """The joined list, for one pool and one table."""

    def __init__(
        self,
        cognito: Any,
        table: UsersTable,
        user_pool_id: str,
        *,
        page_size: int = PAGE_SIZE,
        clock: Any = time.monotonic,
    ) -> None:
        self.cognito = cognito
        self.table = table
        self.user_pool_id = user_pool_id
        self.page_size = page_size
        self.clock = clock
        self._subs: tuple[float, set[str]] | None = None

    def page(self, cursor: str | None = None, search: str | None = None) -> Page:
        state = decode_cursor(cursor)
        if state["stage"] == "rows":
            return self._rows_page(state, search, self.page_size)
        page = self._users_page(state, search)
        if page.stage == "rows" and len(page.entries) < self.page_size:
            # The pool ended inside this page: fill it with the rows no user matches.
            rows = self._rows_page({}, search, self.page_size - len(page.entries))
            return Page(page.entries + rows.entries, rows.cursor, "rows")
        return page

    # --- stage 1: the pool's users, each beside their row --------------------------------

    def _users_page(self, state: dict[str, Any], search: str | None) -> Page:
        token: str | None = state.get("token")
        skip = int(state.get("skip") or 0)
        users: list[Mapping[str, Any]] = []
        next_state: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "UserPoolId": self.user_pool_id,
                "Limit": LIST_USERS_LIMIT,
                **_email_filter(search),
            }
            if token:
                kwargs["PaginationToken"] = token
            answer = self.cognito.list_users(**kwargs)
            listed = list(answer.get("Users") or [])
            wanted = self.page_size - len(users)
            taken = listed[skip : skip + wanted]
            users.extend(taken)
            following = answer.get("PaginationToken")
            if skip + len(taken) < len(listed):
                # This page has more than was shown: come back to it.
                next_state = {"stage": "users", "token": token, "skip": skip + len(taken)}
                break
            skip = 0
            token = following
            if not token:
                next_state = {"stage": "rows"}
                break
            if len(users) >= self.page_size:
                next_state = {"stage": "users", "token": token, "skip": 0}
                break
        subs = [s for u in users if (s := schema.user_id(attributes_of(u)))]
        rows = self.table.get_many(subs)
        entries = [classify(u, rows.get(schema.user_id(attributes_of(u)) or "")) for u in users]
        return Page(entries, encode_cursor(next_state), next_state["stage"])

    # --- stage 2: rows no user matches ----------------------------------------------------

    def _pool_subs(self, *, again: bool) -> set[str]:
        """Every `sub` in the pool. Paging on through the rows (`again`) uses the ones read
        for the first row page if they are under `SUBS_SECONDS` old; the first row page always
        reads them anew (a user signed up since must not show as an orphan)."""
        if again and self._subs is not None and self.clock() - self._subs[0] < SUBS_SECONDS:
            return self._subs[1]
        subs: set[str] = set()
        kwargs: dict[str, Any] = {
            "UserPoolId": self.user_pool_id,
            "Limit": LIST_USERS_LIMIT,
            "AttributesToGet": ["sub"],
        }
        while True:
            answer = self.cognito.list_users(**kwargs)
            for user in answer.get("Users") or []:
                sub = schema.user_id(attributes_of(user))
                if sub:
                    subs.add(sub)
            if not answer.get("PaginationToken"):
                break
            kwargs["PaginationToken"] = answer["PaginationToken"]
        self._subs = (self.clock(), subs)
        return subs

    def _in_pool(self, sub: str) -> bool:
        answer = self.cognito.list_users(
            UserPoolId=self.user_pool_id, Filter=f'sub = "{_quoted(sub)}"', Limit=1
        )
        return bool(answer.get("Users"))

    def _rows_page(self, state: dict[str, Any], search: str | None, size: int) -> Page:
        """Rows no user matches. With a search, only rows whose email starts with it are read
        (filtered in DynamoDB) and each is looked up in the pool by `sub`; without, the row
        page is checked against every `sub` of the pool."""
        started = self.clock()
        prefix = search.strip().lower() if search else None
        subs = self._pool_subs(again="key" in state) if prefix is None else None
        entries: list[Entry] = []
        key = state.get("key")
        for items, following in self._scan(state.get("key"), prefix):
            key = following
            for row in items:
                if schema.pool_of(row) not in (None, self.user_pool_id):
                    continue  # another pool's user, in a table the pools share
                uid = str(row.get("user_id"))
                # Orphans are few: each is confirmed by `sub` (a user may have signed up since
                # the subs were read).
                if (subs is not None and uid in subs) or self._in_pool(uid):
                    continue
                entries.append(classify(None, row))
            if key is None:
                return Page(entries, None, "rows")
            if len(entries) >= size or self.clock() - started > ROW_SCAN_BUDGET_S:
                break
        return Page(entries, encode_cursor({"stage": "rows", "key": key}), "rows")

    def _scan(
        self, key: dict[str, Any] | None, prefix: str | None
    ) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
        """Pages of rows (with an email starting with `prefix`, if given), each with the key to
        start the next from (None: the end)."""
        kwargs: dict[str, Any] = {"TableName": self.table.name, "Limit": ROW_SCAN_PAGE}
        if prefix:
            kwargs["FilterExpression"] = "begins_with(#e, :p)"
            kwargs["ExpressionAttributeNames"] = {"#e": "email"}
            kwargs["ExpressionAttributeValues"] = {":p": {"S": prefix}}
        while True:
            if key:
                kwargs["ExclusiveStartKey"] = to_dynamo(key)
            answer = self.table.client.scan(**kwargs)
            last = answer.get("LastEvaluatedKey")
            key = from_dynamo(last) if last else None
            yield [from_dynamo(i) for i in answer.get("Items", [])], key
            if key is None:
                return
