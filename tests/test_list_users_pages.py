"""ListUsers in pages at the stack's Cognito endpoint (cognito-local answers the whole pool).

cognito-local stands behind `call` here: a function answering the whole pool, as it does, and
counting how often it was asked."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from livekart_users.local.list_users_pages import ListUsersPages


class WholePool:
    """cognito-local's ListUsers: every user, whatever Limit, token or attributes asked."""

    def __init__(self, count: int) -> None:
        self.users = [
            {
                "Username": f"user-{i:04d}",
                "Attributes": [
                    {"Name": "sub", "Value": f"sub-{i}"},
                    {"Name": "email", "Value": f"u{i}@example.com"},
                ],
            }
            for i in range(count)
        ]
        random.Random(7).shuffle(self.users)  # cognito-local's order is insertion order
        self.calls: list[dict[str, Any]] = []
        self.status = 200

    def __call__(self, name: str, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        assert name == "ListUsers"
        self.calls.append(request)
        if self.status != 200:
            return self.status, {}, b'{"__type": "ResourceNotFoundException"}'
        return 200, {}, json.dumps({"Users": self.users}).encode()


def list_page(pages: ListUsersPages, **request: Any) -> tuple[int, dict[str, Any]]:
    answer = pages.answer("ListUsers", json.dumps({"UserPoolId": "local_1", **request}).encode())
    assert answer is not None
    return answer[0], json.loads(answer[2])


def pool_file(folder: Path) -> Path:
    """cognito-local's file of pool local_1 (only its time and size are read)."""
    path = folder / "local_1.json"
    path.write_text("{}")
    return path


def test_pages_of_at_most_the_limit_cover_every_user_once_from_one_read(tmp_path: Path) -> None:
    pool = WholePool(130)
    pool_file(tmp_path)
    pages = ListUsersPages(pool, tmp_path)
    seen: list[str] = []
    sizes = []
    token = None
    while True:
        status, page = list_page(pages, **({"PaginationToken": token} if token else {}))
        assert status == 200
        sizes.append(len(page["Users"]))
        seen.extend(u["Username"] for u in page["Users"])
        token = page.get("PaginationToken")
        if token is None:
            break
    assert sizes == [60, 60, 10]
    assert sorted(seen) == seen == sorted(u["Username"] for u in pool.users)
    assert len(pool.calls) == 1  # the listing was kept between pages


def test_a_write_drops_the_kept_listing_and_a_deleted_user_moves_no_other(
    tmp_path: Path,
) -> None:
    pool = WholePool(6)
    pool_file(tmp_path)
    pages = ListUsersPages(pool, tmp_path)
    _, first = list_page(pages, Limit=2)
    assert [u["Username"] for u in first["Users"]] == ["user-0000", "user-0001"]
    pool.users = [u for u in pool.users if u["Username"] != "user-0001"]
    pages.changed()
    _, second = list_page(pages, Limit=2, PaginationToken=first["PaginationToken"])
    assert [u["Username"] for u in second["Users"]] == ["user-0002", "user-0003"]
    assert len(pool.calls) == 2


def test_only_the_attributes_asked_for_and_the_filter_passed_on() -> None:
    pool = WholePool(3)
    pages = ListUsersPages(pool)
    _, page = list_page(pages, AttributesToGet=["sub"], Filter='email ^= "u1"')
    assert all([a["Name"] for a in u["Attributes"]] == ["sub"] for u in page["Users"])
    assert pool.calls[-1] == {"UserPoolId": "local_1", "Filter": 'email ^= "u1"'}


def test_a_foreign_token_and_cognito_locals_errors_are_answered_as_errors() -> None:
    pool = WholePool(3)
    pages = ListUsersPages(pool)
    status, body = list_page(pages, PaginationToken="%%%")
    assert status == 400 and body["__type"] == "InvalidParameterException"
    pool.status = 400
    status, body = list_page(pages)
    assert status == 400 and body["__type"] == "ResourceNotFoundException"
    assert pages.answer("AdminGetUser", b"{}") is None  # anything else goes to cognito-local


def test_a_write_past_the_endpoint_is_seen_in_the_pool_file(tmp_path: Path) -> None:
    # Tests (and tools) may write to cognito-local directly: its pool file changes then.
    pool = WholePool(3)
    path = pool_file(tmp_path)
    pages = ListUsersPages(pool, tmp_path)
    list_page(pages)
    list_page(pages)
    assert len(pool.calls) == 1
    path.write_text('{"Users": {}}')
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    list_page(pages)
    assert len(pool.calls) == 2
    # Without the pool's file (or with a pool id that cannot name one) nothing is kept.
    blind = ListUsersPages(pool)
    list_page(blind)
    list_page(blind)
    assert len(pool.calls) == 4
