"""Reconcile survives a long run: faults retried, rate adapted, checkpoints resumed, the
disabled flag written and repaired.

- Pages, throttling, refused pagination tokens and disabled users are served by botocore's
  Stubber (cognito-local has no paging, no throttling and no disabled flag in ListUsers),
  with the exact requests asserted; the table is DynamoDB Local.
- The 20,000-user runs list a pool on moto's server (real paging tokens) against a table on
  DynamoDB Local: cognito-local rewrites one JSON file per write and cannot hold that many.
- Time is a fake clock: nothing here sleeps.
"""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber

from livekart_users import aws, schema
from livekart_users.checkpoint import FileCheckpoints, MemoryCheckpoints, State
from livekart_users.reconcile import (
    ORPHAN,
    TO_REFRESH,
    Backoff,
    Reconciler,
    TokenBucket,
    is_transient,
    reconcile,
)
from livekart_users.table import UsersTable
from tests.test_reconcile import POOL, FakeClock, dump, ids, no_jitter, pool_user, write_row


@pytest.fixture
def cognito() -> Iterator[tuple[Any, Stubber]]:
    client = aws.client("cognito-idp", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def sub_of(user: dict[str, Any]) -> str:
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


def describe(stubber: Stubber, users: int = 0) -> None:
    stubber.add_response(
        "describe_user_pool",
        {"UserPool": {"Id": POOL, "EstimatedNumberOfUsers": users}},
        {"UserPoolId": POOL},
    )


def page(
    stubber: Stubber, users: list[dict[str, Any]], token: str | None, after: str | None
) -> None:
    """One ListUsers answer: `users`, asked with `token`, answering `after` as the next token."""
    params: dict[str, Any] = {"UserPoolId": POOL, "Limit": 60}
    if token:
        params["PaginationToken"] = token
    answer: dict[str, Any] = {"Users": users}
    if after:
        answer["PaginationToken"] = after
    stubber.add_response("list_users", answer, params)


def run(client: Any, table: UsersTable, **options: Any) -> Any:
    clock = FakeClock()
    options.setdefault("backoff", Backoff(sleep=clock.sleep, jitter=no_jitter))
    return reconcile(client, table, POOL, clock=clock, sleep=clock.sleep, **options)


# --- the disabled flag -------------------------------------------------------------------


def test_a_disabled_user_gets_the_flag_and_an_existing_row_is_repaired(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    # GIVEN a disabled user with no row, a user disabled since their row was written, a row
    # flagged disabled whose user was enabled again, and an enabled user in step.
    new_disabled = pool_user()
    new_disabled["Enabled"] = False
    rows = {name: write_row(users_table) for name in ("disabled", "enabled_again", "in_step")}
    again = rows["enabled_again"]
    assert users_table.refresh_identity(
        again["user_id"],
        {f: again[f] for f in schema.IDENTITY_FIELDS if f in again},
        user_pool_id=POOL,
        read_updated_at=again["updatedAt"],
        timestamp=again["updatedAt"],
        enabled=False,
    )
    listed = []
    for name, row in rows.items():
        user = pool_user(sub=row["user_id"], email=row["email"], name=row["name"])
        user["Enabled"] = name != "disabled"
        listed.append(user)
    before = dump(users_table)
    describe(stubber)
    page(stubber, [new_disabled, *listed], None, None)
    # WHEN reconcile runs once with --apply
    report = run(client, users_table, apply=True)
    # THEN the new row carries the flag, the stale ones are repaired, nothing else changed.
    after = dump(users_table)
    assert after[sub_of(new_disabled)][schema.COGNITO_ENABLED] is False
    assert after[rows["disabled"]["user_id"]][schema.COGNITO_ENABLED] is False
    assert after[rows["enabled_again"]["user_id"]][schema.COGNITO_ENABLED] is True
    assert schema.COGNITO_ENABLED not in after[rows["in_step"]["user_id"]]
    assert after[rows["in_step"]["user_id"]] == before[rows["in_step"]["user_id"]]
    assert (report.created, report.refreshed, report.in_step) == (1, 2, 1)
    details = {e.user_id: e.detail for e in report.examples if e.category == TO_REFRESH}
    assert details[rows["disabled"]["user_id"]] == f"differs: {schema.COGNITO_ENABLED}"
    for uid in (rows["disabled"]["user_id"], rows["enabled_again"]["user_id"]):
        schema.validate(after[uid])
        flag_and_time = {schema.COGNITO_ENABLED, "updatedAt"}
        assert {k: v for k, v in after[uid].items() if k not in flag_and_time} == {
            k: v for k, v in before[uid].items() if k not in flag_and_time
        }


# --- faults and pace ---------------------------------------------------------------------


def test_the_rate_halves_when_throttled_and_creeps_back() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20, clock=clock, sleep=clock.sleep)
    bucket.throttled()
    bucket.throttled()
    assert bucket.rate == 5 and bucket.lowest == 5
    for _ in range(200):
        bucket.passed()
    assert bucket.rate == 20  # never above the rate asked for
    for _ in range(20):
        bucket.throttled()
    assert bucket.rate == 1  # never below one request a second


def timeout() -> ReadTimeoutError:
    return ReadTimeoutError(endpoint_url="https://cognito-idp.us-east-1.amazonaws.com/")


def test_timeouts_and_server_errors_are_transient_a_wrong_endpoint_is_not() -> None:
    from botocore.exceptions import EndpointConnectionError

    server_error = ClientError(
        {"Error": {"Code": "SomethingNew"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "Scan"
    )
    refused = ClientError(
        {"Error": {"Code": "AccessDeniedException"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "Scan",
    )
    assert is_transient(timeout()) and is_transient(server_error)
    assert not is_transient(refused)
    assert not is_transient(EndpointConnectionError(endpoint_url="https://nowhere.invalid/"))


class Faulty:
    """A client whose named operations fail with `faults` (in order) before they answer."""

    def __init__(self, client: Any, faults: dict[str, list[BaseException]]) -> None:
        self._client = client
        self._faults = faults
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name not in self._faults:
            return attribute

        def call(**kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            if self._faults[name]:
                raise self._faults[name].pop(0)
            return attribute(**kwargs)

        return call


def throttled() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "TooManyRequestsException"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "ListUsers",
    )


def test_a_run_with_throttling_and_timeouts_finishes_and_slows_down(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    users = [[pool_user() for _ in range(60)] for _ in range(3)]
    describe(stubber)
    page(stubber, users[0], None, "t1")
    page(stubber, users[1], "t1", "t2")
    page(stubber, users[2], "t2", None)
    faulty = Faulty(client, {"list_users": [timeout(), throttled(), throttled(), timeout()]})
    report = run(faulty, users_table, apply=True)
    assert (report.pool_users, report.created, report.retries) == (180, 180, 4)
    assert report.throttled == 2 and report.lowest_rate == 5.0
    assert set(dump(users_table)) == {sub_of(u) for p in users for u in p}


def test_a_refused_pagination_token_starts_a_fresh_listing_and_says_so(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    first, second = [pool_user() for _ in range(60)], [pool_user() for _ in range(7)]
    orphan = write_row(users_table)["user_id"]
    describe(stubber)
    page(stubber, first, None, "old")
    stubber.add_client_error(
        "list_users",
        "InvalidParameterException",
        "Paging marker old is invalid for request 5c0e9a1e",
        400,
        expected_params={"UserPoolId": POOL, "Limit": 60, "PaginationToken": "old"},
    )
    page(stubber, first, None, "new")
    page(stubber, second, "new", None)
    report = run(client, users_table, apply=True)
    assert report.listing_restarts == 1
    # Counted once each, though the first page was read twice (its rows, created on the
    # first pass, were found already there by the conditional create on the second).
    assert (report.pool_users, report.to_create, report.created) == (67, 67, 67)
    assert report.already_existed == 60
    assert report.orphans == 1 and ids(report, ORPHAN) == {orphan}


# --- checkpoints -------------------------------------------------------------------------


def stub_pages(stubber: Stubber, pages: list[list[dict[str, Any]]], start: int = 0) -> None:
    for number in range(start, len(pages)):
        token = f"t{number}" if number else None
        after = f"t{number + 1}" if number < len(pages) - 1 else None
        page(stubber, pages[number], token, after)


def test_an_invocation_out_of_time_hands_its_checkpoint_to_the_next(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    pages = [[pool_user() for _ in range(60)] for _ in range(5)]
    orphan = write_row(users_table)["user_id"]
    checkpoints = MemoryCheckpoints()
    read = {"pages": 0}

    def after_two_pages() -> bool:
        read["pages"] += 1
        return read["pages"] == 2

    # GIVEN a run that runs out of time after two pages …
    describe(stubber)
    page(stubber, pages[0], None, "t1")
    page(stubber, pages[1], "t1", "t2")
    first = run(
        client, users_table, apply=True, checkpoints=checkpoints, out_of_time=after_two_pages
    )
    assert not first.complete and checkpoints.state is not None
    assert checkpoints.state.token == "t2" and checkpoints.state.pages == 2
    stubber.assert_no_pending_responses()
    # WHEN the next invocation runs with its checkpoint, THEN it reads only the pages left …
    describe(stubber)
    stub_pages(stubber, pages, 2)
    second = run(client, users_table, apply=True, checkpoints=checkpoints)
    # … and ends with every row right: 300 created in all, the one orphan and no other.
    assert second.complete and second.resumed_at_page == 3
    assert (second.pool_users, second.created, second.list_requests) == (300, 300, 5)
    assert second.orphans == 1 and ids(second, ORPHAN) == {orphan}
    assert set(dump(users_table)) == {sub_of(u) for p in pages for u in p} | {orphan}
    assert checkpoints.state is None  # done: the next run starts afresh


def test_a_checkpoint_of_another_pool_table_or_mode_is_never_resumed(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    checkpoints = MemoryCheckpoints()
    checkpoints.save(State(POOL, users_table.name, applying=False, token="t9", pages=9), b"")
    users = [pool_user() for _ in range(3)]
    describe(stubber)
    page(stubber, users, None, None)  # from the start: the saved state was a dry run's
    report = run(client, users_table, apply=True, checkpoints=checkpoints)
    assert report.resumed_at_page == 0 and report.created == 3


def test_file_checkpoints_are_private_and_drop_what_a_killed_run_appended(tmp_path: Path) -> None:
    store = FileCheckpoints(POOL, "users", True, directory=tmp_path / "state")
    assert store.load() is None
    state = State(POOL, "users", True, token="t1", pages=1, log_bytes=3)
    store.save(state, b"abc")
    # A run killed between its log append and its state write leaves extra bytes behind.
    with store.log_path.open("ab") as log:
        log.write(b"garbage")
    loaded = store.load()
    assert loaded is not None and loaded[1] == b"abc" and loaded[0].token == "t1"
    store.save(State(POOL, "users", True, token="t2", pages=2, log_bytes=5), b"de")
    assert store.log_path.read_bytes() == b"abcde"
    for path in (store.state_path, store.log_path):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    other = FileCheckpoints(POOL, "users", False, directory=tmp_path / "state")
    assert other.load() is None  # a dry run's checkpoint is another file
    store.clear()
    assert store.load() is None and not store.log_path.exists()


# --- 20,000 users: killed half-way, resumed (moto's paging, DynamoDB Local) ---------------


class Killed(BaseException):
    """The process dying: nothing after it runs (not an Exception, so nothing catches it)."""


class CountingCognito:
    """A Cognito client that counts ListUsers pages by token, and dies at the n-th call."""

    def __init__(self, client: Any, die_at: int | None = None) -> None:
        self._client = client
        self._die_at = die_at
        self.tokens: list[str | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def list_users(self, **kwargs: Any) -> Any:
        if "Filter" not in kwargs:
            if self._die_at is not None and len(self.tokens) + 1 == self._die_at:
                raise Killed
            self.tokens.append(kwargs.get("PaginationToken"))
        return self._client.list_users(**kwargs)


@pytest.fixture(scope="module")
def moto_cognito() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    from livekart_users.local import processes

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = processes.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def paged_by_position(backend: Any) -> None:
    """moto's ListUsers rescans the whole pool for every page (minutes at 20,000 users):
    serve the same pages by position instead, with opaque tokens until the last page."""
    original = backend.list_users

    def list_users(
        user_pool_id: str, filt: str | None, limit: int | None = None, pagination_token: Any = None
    ) -> tuple[list[Any], str | None]:
        if filt:
            return original(user_pool_id, filt, limit=limit, pagination_token=pagination_token)  # type: ignore[no-any-return]
        users = list(backend.describe_user_pool(user_pool_id).users.values())
        start = int(pagination_token or 0)
        end = start + int(limit or 60)
        return users[start:end], (str(end) if end < len(users) else None)

    backend.list_users = list_users


def big_pool(endpoint: str, size: int) -> tuple[Any, str, list[Any]]:
    """A pool of `size` users on moto (filled through its backend: the API would take minutes)."""
    from moto.cognitoidp.models import cognitoidp_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    client = aws.client("cognito-idp", region_name="us-east-1", endpoint_url=endpoint)
    pool_id = client.create_user_pool(PoolName=f"big-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    backend = cognitoidp_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    paged_by_position(backend)
    users = []
    for i in range(size):
        attributes = [
            {"Name": "email", "Value": f"big{i}-{pool_id[-6:]}@example.com"},
            {"Name": "email_verified", "Value": "true"},
            {"Name": "name", "Value": f"User {i}"},
        ]
        user = backend.admin_create_user(pool_id, f"big{i}", "SUPPRESS", "Big-pass-1", attributes)
        user.status = "CONFIRMED"
        if i % 97 == 0:
            user.enabled = False
        users.append(user)
    return client, pool_id, users


def expected_rows(users: list[Any], timestamp: str) -> dict[str, dict[str, Any]]:
    rows = {}
    for user in users:
        values = {a["Name"]: a["Value"] for a in user.attributes}
        row = schema.new_record(values, user.username, timestamp=timestamp)
        if not user.enabled:
            row[schema.COGNITO_ENABLED] = False
        rows[row["user_id"]] = row
    return rows


@pytest.mark.slow
def test_a_20000_user_reconcile_killed_half_way_resumes_and_reads_each_page_once_more_at_most(
    moto_cognito: str, dynamodb_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
    client, pool_id, users = big_pool(moto_cognito, 20_000)
    table = UsersTable(
        aws.client("dynamodb", region_name="us-east-1"), f"big-{uuid.uuid4().hex[:8]}"
    )
    table.create_table()
    # GIVEN a table holding every third user's row, one stale, and one orphan row.
    timestamp = schema.now()
    wanted = expected_rows(users, timestamp)
    subs = list(wanted)
    for sub in subs[::3]:
        row = dict(wanted[sub])
        row.pop(schema.COGNITO_ENABLED, None)
        if sub == subs[3]:
            row["name"] = "Old Name"
        assert table.create_if_absent(row)
    orphan = write_row(table, pool=pool_id)["user_id"]
    store = FileCheckpoints(pool_id, table.name, True, directory=tmp_path / "state")
    pages = -(-20_000 // 60)

    def reconciler(cognito: Any, **options: Any) -> Reconciler:
        clock = FakeClock()
        return Reconciler(
            cognito,
            table,
            pool_id,
            rate=30,
            clock=clock,
            sleep=clock.sleep,
            backoff=Backoff(sleep=clock.sleep, jitter=no_jitter),
            checkpoints=store,
            **options,
        )

    # WHEN the run dies half-way through the listing …
    dying = CountingCognito(client, die_at=pages // 2)
    with pytest.raises(Killed):
        reconciler(dying).run(apply=True)
    assert len(dying.tokens) == pages // 2 - 1
    # … and runs again, through throttling and timeouts on top,
    resumed = CountingCognito(Faulty(client, {"list_users": [throttled(), timeout(), throttled()]}))
    report = reconciler(resumed).run(apply=True)
    # THEN it read each page once more at most: none of those the first run had finished …
    assert len(resumed.tokens) <= pages - len(dying.tokens) + 1 + 3
    assert len(set(resumed.tokens) & set(dying.tokens)) <= 1
    assert report.complete and report.resumed_at_page == len(dying.tokens) + 1
    # … and every row is right: all users, their flags, the stale name; the orphan reported.
    assert report.pool_users == 20_000 and report.orphans == 1
    assert ids(report, ORPHAN) == {orphan}
    rows = dump(table)
    assert set(rows) == set(wanted) | {orphan}
    for sub, row in wanted.items():
        got = rows[sub]
        assert got["name"] == row["name"] and got["email"] == row["email"]
        assert got.get(schema.COGNITO_ENABLED, True) == row.get(schema.COGNITO_ENABLED, True)
    assert store.load() is None
    again = reconciler(CountingCognito(client)).run(apply=True)
    assert (again.to_create, again.to_refresh, again.orphans) == (0, 0, 1)
