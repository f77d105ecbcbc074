"""ListUsers in pages, as Cognito answers it: what the stack's Cognito endpoint adds.

cognito-local ignores `Limit`, `PaginationToken` and `AttributesToGet`: every call answers
the whole pool (4 MB at 10,000 users, which botocore takes ≈ 3.6 s to parse here). Cognito
answers at most `Limit` users (≤ 60) with a token for the rest, and only the attributes
asked for. The stack's Cognito endpoint answers ListUsers here, the same way:
- the pool is read from cognito-local once (its `Filter` passed on, since cognito-local
  does filter) and kept, in user-name order, while nothing wrote to the pool: the endpoint
  calls `changed()` before and after each write through it, and cognito-local's pool file
  (rewritten on every write, also by callers that bypass the endpoint) must still have the
  modification time and size it had when the listing was read; without that file nothing
  is kept;
- a page is the next `Limit` users after the token's user name (a user added or deleted
  between pages moves no other user from one page to another), with a token while more
  remain; `AttributesToGet` keeps only those attributes.
Any error of cognito-local's is answered as it is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from bisect import bisect_right
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAGE_LIMIT = 60  # Cognito's most per page
KEPT_LISTINGS = 4  # listings kept at once (pool and filter)

Call = Callable[[str, dict[str, Any]], tuple[int, dict[str, str], bytes]]
Answer = tuple[int, dict[str, str], bytes]
_POOL_ID = re.compile(r"^[\w-]{1,64}$")  # a pool id names its file: nothing else may


def _token(username: str) -> str:
    return base64.urlsafe_b64encode(username.encode()).decode()


def _after(token: Any) -> str | None:
    if not isinstance(token, str) or not token:
        return None
    try:
        return base64.b64decode(token.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError):
        raise InvalidToken from None


class InvalidToken(Exception):
    """A PaginationToken this endpoint did not make."""


class ListUsersPages:
    """Answers ListUsers a page at a time from a listing kept until the next write."""

    def __init__(self, call: Call, cognito_db: Path | None = None) -> None:
        self._call = call
        self._db = cognito_db
        self._lock = threading.Lock()
        self._generation = 0
        self._kept: dict[tuple[str, str], tuple[Any, list[str], list[dict[str, Any]]]] = {}

    def changed(self) -> None:
        """A write went (or is going) through: no kept listing is current any more."""
        with self._lock:
            self._generation += 1
            self._kept.clear()

    def answer(self, operation: str | None, body: bytes) -> Answer | None:
        """The answer to a ListUsers request, or None for any other request."""
        if operation != "ListUsers":
            return None
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return None  # cognito-local says what is wrong with it
        if not isinstance(request, dict) or not isinstance(request.get("UserPoolId"), str):
            return None
        try:
            after = _after(request.get("PaginationToken"))
        except InvalidToken:
            return _error("InvalidParameterException", "Invalid PaginationToken")
        names, users, failed = self._listing(request["UserPoolId"], request.get("Filter"))
        if failed is not None:
            return failed
        limit = request.get("Limit")
        limit = limit if isinstance(limit, int) and 0 < limit <= PAGE_LIMIT else PAGE_LIMIT
        start = bisect_right(names, after) if after is not None else 0
        page = users[start : start + limit]
        wanted = request.get("AttributesToGet")
        if isinstance(wanted, list):
            page = [
                {**u, "Attributes": [a for a in u.get("Attributes") or [] if a["Name"] in wanted]}
                for u in page
            ]
        result: dict[str, Any] = {"Users": page}
        if start + limit < len(users):
            result["PaginationToken"] = _token(names[start + limit - 1])
        return 200, {"Content-Type": "application/x-amz-json-1.1"}, json.dumps(result).encode()

    def _listing(
        self, pool: str, filter_: Any
    ) -> tuple[list[str], list[dict[str, Any]], Answer | None]:
        """The pool's users in user-name order (and their names), or cognito-local's error."""
        key = (pool, filter_ if isinstance(filter_, str) else "")
        with self._lock:
            version = (self._generation, self._stamp(pool))
            kept = self._kept.get(key)
        if kept is not None and kept[0] == version:
            return kept[1], kept[2], None
        request: dict[str, Any] = {"UserPoolId": pool}
        if key[1]:
            request["Filter"] = key[1]
        status, headers, body = self._call("ListUsers", request)
        if status != 200:
            return [], [], (status, headers, body)
        users = sorted(json.loads(body).get("Users") or [], key=lambda u: str(u["Username"]))
        names = [str(u["Username"]) for u in users]
        with self._lock:
            # Kept only if the pool's file says when it changed and no write began meanwhile.
            if version[1] is not None and version == (self._generation, self._stamp(pool)):
                if len(self._kept) >= KEPT_LISTINGS:
                    self._kept.pop(next(iter(self._kept)))
                self._kept[key] = (version, names, users)
        return names, users, None

    def _stamp(self, pool: str) -> tuple[int, int] | None:
        """When cognito-local last wrote the pool's file, and its size (None: unknown)."""
        if self._db is None or not _POOL_ID.match(pool):
            return None
        try:
            found = (self._db / f"{pool}.json").stat()
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size


def _error(code: str, message: str) -> Answer:
    body = json.dumps({"__type": code, "message": message}).encode()
    return 400, {"Content-Type": "application/x-amz-json-1.1"}, body
