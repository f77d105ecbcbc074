"""Where an interrupted reconcile resumes: the listing's place, and what it had already seen.

A checkpoint is written after each page of the pool, once that page's writes have landed, so
a run that is killed, loses its network or fails on a write resumes at the first page whose
checkpoint was not written: each page is read at most once more.

It holds two things:
- **the state** (small JSON): the pool, the table, whether writes are applied, the pagination
  token of the next page (None once the listing is complete), and the report so far;
- **the seen log** (append-only bytes): one record per pool user already sorted, so that the
  resumed run, which reads the table again, does not take those users' rows for orphans, and
  still knows the users held back for a shared email (see `reconcile`). 26 bytes a user at
  most: ≈ 260 MB for 10 M users, on disk, never in memory at once.

`FileCheckpoints` keeps them in the user's state directory (platformdirs); another store
(the scheduled function's) implements the same three methods.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

SEEN = 1  # a user listed (their row, if any, is not an orphan)
HELD = 2  # a confirmed user with no row whose email some row has
HELD_UNCONFIRMED = 3  # the same, unconfirmed
_PACKED = 0x80  # the key is a UUID's 16 bytes, not its text
_MAX_KEY = 255


@dataclass
class State:
    """Where a run stands after its last complete page."""

    user_pool_id: str
    table: str
    applying: bool
    token: str | None = None  # the next page's PaginationToken; None with listing_done
    listing_done: bool = False
    pages: int = 0
    log_bytes: int = 0  # how much of the seen log this state covers
    report: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls(
            user_pool_id=str(data["user_pool_id"]),
            table=str(data["table"]),
            applying=bool(data["applying"]),
            token=data.get("token"),
            listing_done=bool(data.get("listing_done")),
            pages=int(data.get("pages", 0)),
            log_bytes=int(data.get("log_bytes", 0)),
            report=dict(data.get("report") or {}),
        )


class Checkpoints(Protocol):
    """Where a run's state and seen log are kept between runs (or invocations)."""

    def load(self) -> tuple[State, bytes] | None:
        """The last state saved and the seen log it covers, or None."""

    def save(self, state: State, appended: bytes) -> None:
        """Append `appended` to the seen log, then record `state` (which covers it)."""

    def clear(self) -> None:
        """Forget the run (it ended, or is restarted)."""


# --- the seen log --------------------------------------------------------------------------


def pack_key(uid: str) -> bytes | None:
    """A Cognito sub (a lower-case UUID) as 16 bytes; None for any other text."""
    if len(uid) != 36:
        return None
    try:
        parsed = uuid.UUID(uid)
    except ValueError:
        return None
    return parsed.bytes if str(parsed) == uid else None


def unpack_key(key: bytes) -> str:
    return str(uuid.UUID(bytes=key))


def record(kind: int, uid: str, email: int = 0) -> bytes:
    """One seen-log record: kind, key length, key, email digest (8 bytes)."""
    packed = pack_key(uid)
    if packed is not None:
        key, kind = packed, kind | _PACKED
    else:
        key = uid.encode("utf-8", "surrogatepass")[:_MAX_KEY]
    return bytes((kind, len(key))) + key + email.to_bytes(8, "big")


def records(log: bytes) -> Iterator[tuple[int, str, int]]:
    """(kind, user id, email digest) of each record of `log`."""
    at, end = 0, len(log)
    while at + 2 <= end:
        kind, size = log[at], log[at + 1]
        key = log[at + 2 : at + 2 + size]
        email = int.from_bytes(log[at + 2 + size : at + 10 + size], "big")
        at += 10 + size
        uid = unpack_key(key) if kind & _PACKED else key.decode("utf-8", "surrogatepass")
        yield kind & ~_PACKED, uid, email


# --- on disk -------------------------------------------------------------------------------


def state_directory() -> Path:
    import platformdirs

    return platformdirs.user_state_path("livekart-users", appauthor=False) / "reconcile"


class FileCheckpoints:
    """A run's checkpoint as two files, private to the user: `<key>.json` and `<key>.seen`.

    The key is a digest of the pool, the table and the mode, so a dry run never resumes an
    `--apply` run's state, nor one pool another's.
    """

    def __init__(
        self, user_pool_id: str, table: str, applying: bool, directory: Path | None = None
    ) -> None:
        self.directory = directory or state_directory()
        name = json.dumps([user_pool_id, table, applying])
        key = hashlib.sha256(name.encode()).hexdigest()[:24]
        self.state_path = self.directory / f"{key}.json"
        self.log_path = self.directory / f"{key}.seen"

    def load(self) -> tuple[State, bytes] | None:
        try:
            state = State.from_json(self.state_path.read_text(encoding="utf-8"))
            with self.log_path.open("rb") as log:
                seen = log.read(state.log_bytes)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, or unreadable: a fresh run is always safe
        if len(seen) != state.log_bytes:
            return None
        return state, seen

    def save(self, state: State, appended: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(self.log_path, flags, 0o600)
        with os.fdopen(descriptor, "r+b") as log:
            # Whatever a killed run appended past its last state is dropped first.
            log.truncate(state.log_bytes - len(appended))
            log.seek(0, os.SEEK_END)
            log.write(appended)
            log.flush()
            os.fsync(log.fileno())
        temporary = self.state_path.with_suffix(".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(state.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.state_path)

    def clear(self) -> None:
        for path in (self.state_path, self.log_path, self.state_path.with_suffix(".tmp")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class MemoryCheckpoints:
    """A checkpoint kept in memory: a run that cannot resume (and tests of the hand-off)."""

    def __init__(self) -> None:
        self.state: State | None = None
        self.log = b""
        self.saves = 0

    def load(self) -> tuple[State, bytes] | None:
        if self.state is None:
            return None
        return State.from_json(self.state.to_json()), self.log[: self.state.log_bytes]

    def save(self, state: State, appended: bytes) -> None:
        self.log = self.log[: state.log_bytes - len(appended)] + appended
        self.state = State.from_json(state.to_json())
        self.saves += 1

    def clear(self) -> None:
        self.state, self.log = None, b""


# --- in a DynamoDB table (the scheduled function's) ---------------------------------------


class TableCheckpoints:
    """A run's checkpoint in a small table of its own, carried from one Lambda invocation to
    the next: key `run` (S) and `part` (N).

    Part 0 holds the state (JSON) and how many parts of the seen log it covers; parts 1..n
    each hold one page's seen-log records (≤ 60 x 26 bytes, far below DynamoDB's 400 KB), so
    a checkpoint is two small writes, and a run killed between them leaves a part the state
    does not count (overwritten next time). `<run>#finished` remembers when the last complete
    run ended, for the schedule's "is a run due?". Never the users table: its scans, the app's
    included, would meet these items.
    """

    def __init__(
        self, client: Any, table: str, user_pool_id: str, users_table: str, applying: bool
    ) -> None:
        self.client = client
        self.table = table
        self.run = f"{user_pool_id}#{users_table}#{'apply' if applying else 'report'}"
        self._parts: int | None = None

    def load(self) -> tuple[State, bytes] | None:
        answer = self.client.get_item(
            TableName=self.table,
            Key={"run": {"S": self.run}, "part": {"N": "0"}},
            ConsistentRead=True,
        )
        item = answer.get("Item")
        if not item:
            self._parts = 0
            return None
        state = State.from_json(item["state"]["S"])
        parts = int(item["parts"]["N"])
        chunks: list[bytes] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "#run = :run AND #part BETWEEN :first AND :last",
            "ExpressionAttributeNames": {"#run": "run", "#part": "part"},
            "ExpressionAttributeValues": {
                ":run": {"S": self.run},
                ":first": {"N": "1"},
                ":last": {"N": str(parts)},
            },
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            chunks += [bytes(i["seen"]["B"]) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        seen = b"".join(chunks)
        if len(chunks) != parts or len(seen) != state.log_bytes:
            self._parts = 0
            return None  # not what the state covers: a fresh run is always safe
        self._parts = parts
        return state, seen

    def save(self, state: State, appended: bytes) -> None:
        # The log starts here (a fresh run, a listing that started over), or goes on.
        parts = 0 if state.log_bytes == len(appended) else (self._parts or 0)
        if appended:
            parts += 1
            self.client.put_item(
                TableName=self.table,
                Item={"run": {"S": self.run}, "part": {"N": str(parts)}, "seen": {"B": appended}},
            )
        self.client.put_item(
            TableName=self.table,
            Item={
                "run": {"S": self.run},
                "part": {"N": "0"},
                "state": {"S": state.to_json()},
                "parts": {"N": str(parts)},
            },
        )
        self._parts = parts

    def clear(self) -> None:
        # The state first: without it the parts are never read (and are overwritten later).
        self.client.delete_item(
            TableName=self.table, Key={"run": {"S": self.run}, "part": {"N": "0"}}
        )
        self._parts = 0

    def finished(self, when: str) -> None:
        """Remember that a complete run ended at `when` (ISO-8601)."""
        self.client.put_item(
            TableName=self.table,
            Item={"run": {"S": self.run + "#finished"}, "part": {"N": "0"}, "at": {"S": when}},
        )

    def last_finished(self) -> str | None:
        answer = self.client.get_item(
            TableName=self.table,
            Key={"run": {"S": self.run + "#finished"}, "part": {"N": "0"}},
            ConsistentRead=True,
        )
        item = answer.get("Item") or {}
        return str(item["at"]["S"]) if "at" in item else None


def state_table_spec(name: str) -> dict[str, Any]:
    """CreateTable's arguments for the checkpoint table: on-demand, key (run, part)."""
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": "run", "AttributeType": "S"},
            {"AttributeName": "part", "AttributeType": "N"},
        ],
        "KeySchema": [
            {"AttributeName": "run", "KeyType": "HASH"},
            {"AttributeName": "part", "KeyType": "RANGE"},
        ],
    }
