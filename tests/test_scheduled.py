"""The scheduled reconcile: invocations that run out of time hand their checkpoint on.

The users table and the checkpoint table are DynamoDB Local; the pool's pages are served by
botocore's Stubber (cognito-local's pages are not ours to shape), with the exact requests
asserted. Time is a fake clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.stub import Stubber

from livekart_users import aws, scheduled
from livekart_users.checkpoint import State, TableCheckpoints, state_table_spec
from livekart_users.reconcile import Backoff
from livekart_users.table import UsersTable
from tests.test_reconcile import POOL, FakeClock, dump, no_jitter, pool_user, write_row
from tests.test_reconcile_survives import describe, page, sub_of


@pytest.fixture
def state_table(users_table: UsersTable) -> str:
    name = f"reconcile-state-{uuid.uuid4().hex[:8]}"
    users_table.client.create_table(**state_table_spec(name))
    return name


@pytest.fixture
def cognito() -> Iterator[tuple[Any, Stubber]]:
    client = aws.client("cognito-idp", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_table_checkpoints_keep_a_state_and_its_seen_log_across_invocations(
    users_table: UsersTable, state_table: str
) -> None:
    store = TableCheckpoints(users_table.client, state_table, POOL, users_table.name, True)
    assert store.load() is None
    store.save(State(POOL, users_table.name, True, token="t1", pages=1, log_bytes=3), b"abc")
    store.save(State(POOL, users_table.name, True, token="t2", pages=2, log_bytes=5), b"de")
    # Another invocation (a new store object) reads it back whole.
    again = TableCheckpoints(users_table.client, state_table, POOL, users_table.name, True)
    loaded = again.load()
    assert loaded is not None and loaded[0].token == "t2" and loaded[1] == b"abcde"
    # A listing that starts over begins a new log; the old parts are no longer counted.
    again.save(State(POOL, users_table.name, True, pages=0, log_bytes=0), b"")
    again.save(State(POOL, users_table.name, True, token="u1", pages=1, log_bytes=1), b"z")
    loaded = store.load()
    assert loaded is not None and loaded[1] == b"z"
    # A dry run's checkpoint is another run.
    other = TableCheckpoints(users_table.client, state_table, POOL, users_table.name, False)
    assert other.load() is None
    store.clear()
    assert store.load() is None


def test_an_invocation_out_of_time_hands_its_checkpoint_to_the_next(
    cognito: tuple[Any, Stubber], users_table: UsersTable, state_table: str
) -> None:
    client, stubber = cognito
    pages = [[pool_user() for _ in range(60)] for _ in range(4)]
    disabled = pages[3][0]
    disabled["Enabled"] = False
    orphan = write_row(users_table)["user_id"]
    options = {
        "user_pool_id": POOL,
        "table": users_table.name,
        "state_table": state_table,
        "every": 3600,
        "rate": 10.0,
        "erase": None,
        "extra_fields": {},
    }
    moment = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)

    def invoke(pages_of_time: int | None) -> dict[str, Any]:
        """One invocation whose time runs out after `pages_of_time` pages (None: never)."""
        calls = {"n": 0}

        def remaining_ms() -> int:
            calls["n"] += 1
            out = pages_of_time is not None and calls["n"] >= pages_of_time
            return 60_000 if out else 800_000

        clock = FakeClock()
        return scheduled.run(
            client,
            users_table.client,
            users_table.client,
            options,
            remaining_ms=remaining_ms,
            now=lambda: moment,
            clock=clock,
            sleep=clock.sleep,
            backoff=Backoff(sleep=clock.sleep, jitter=no_jitter),
        )

    # GIVEN an invocation that runs out of time after two pages …
    describe(stubber)
    page(stubber, pages[0], None, "t1")
    page(stubber, pages[1], "t1", "t2")
    first = invoke(2)
    assert first["outcome"] == "continues" and first["ReconcileCreated"] == 120
    stubber.assert_no_pending_responses()
    # WHEN the next one runs, THEN it goes on at page 3 and completes the run …
    describe(stubber)
    page(stubber, pages[2], "t2", "t3")
    page(stubber, pages[3], "t3", None)
    second = invoke(None)
    assert second["outcome"] == "complete" and second["resumed_at_page"] == 3
    assert (second["ReconcileListed"], second["ReconcileCreated"]) == (240, 240)
    assert second["ReconcileOrphans"] == 1 and second["ReconcileErased"] == 0
    rows = dump(users_table)
    assert set(rows) == {sub_of(u) for p in pages for u in p} | {orphan}  # orphan kept
    assert rows[sub_of(disabled)]["cognitoEnabled"] is False
    # … and the one after that finds no run due within the period: it reads nothing.
    assert invoke(None) == {"outcome": "not_due"}
    # A period later, a new run starts from the first page.
    moment += timedelta(seconds=3600)
    describe(stubber)
    page(stubber, [u for p in pages for u in p][:60], None, None)
    assert invoke(None)["outcome"] == "complete"
