"""Reconcile: the pool and the table side by side, then healed.

- The data plane is real: the scenario runs on cognito-local and DynamoDB Local (each test has
  a pool and a table of its own, so it can count exactly), and the rows confirmed users would
  have are written by the trigger's own table operations (`create_if_absent`,
  `record_sign_in`) from what Cognito holds, into that table.
- What cognito-local cannot do — pages (it returns everything in one), throttling, the
  RESET_REQUIRED and EXTERNAL_PROVIDER statuses — is served by botocore's Stubber, with the
  exact requests asserted; the table is still DynamoDB Local.
- Time is a fake clock: nothing here sleeps.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY, Stubber
from click.testing import CliRunner

from livekart_users import aws, schema
from livekart_users import reconcile as reconcile_module
from livekart_users.cli import main
from livekart_users.exceptions import PoolNotFound
from livekart_users.local.demo import DEMO_PASSWORD, DemoUser, sign_up
from livekart_users.local.stack import LocalStack
from livekart_users.reconcile import (
    MOVED,
    ORPHAN,
    TO_CREATE,
    TO_REFRESH,
    UNCONFIRMED_USER,
    Backoff,
    ProgressEvent,
    Report,
    TableIndex,
    TokenBucket,
    reconcile,
)
from livekart_users.table import UsersTable, to_dynamo

T0 = "2026-01-31T12:00:00.000Z"


class FakeClock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def no_jitter(low: float, high: float) -> float:
    return high


def dump(table: UsersTable) -> dict[str, dict[str, Any]]:
    return {row["user_id"]: row for row in table.scan()}


def ids(report: Report, category: str) -> set[str]:
    return {e.user_id for e in report.examples if e.category == category}


# --- pacing and patience, alone ----------------------------------------------------------


def test_token_bucket_spaces_calls_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(20.0, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(41):
        bucket.acquire()
        times.append(clock.now)
    assert times[-1] - times[0] == pytest.approx(2.0)
    assert min(b - a for a, b in itertools.pairwise(times)) == pytest.approx(0.05)


def test_token_bucket_does_not_wait_when_calls_are_slower_than_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
        clock.now += 0.5  # each call takes longer than the pace
    assert clock.sleeps == []


def throttled(operation: str = "ListUsers") -> ClientError:
    return ClientError(
        {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}, operation
    )


def test_backoff_retries_throttling_and_raises_what_is_not_transient() -> None:
    clock = FakeClock()
    backoff = Backoff(sleep=clock.sleep, jitter=no_jitter, attempts=4)
    answers: list[Any] = [throttled(), throttled(), "page"]

    def flaky() -> Any:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert backoff.call(flaky) == "page"
    assert clock.sleeps == [0.25, 0.5] and backoff.retries == 2

    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "ListUsers")
    with pytest.raises(ClientError, match="AccessDenied"):
        backoff.call(lambda: (_ for _ in ()).throw(denied))
    assert backoff.retries == 2

    with pytest.raises(ClientError, match="TooManyRequests"):
        backoff.call(lambda: (_ for _ in ()).throw(throttled()))
    assert backoff.retries == 5  # three more waits, then the fourth attempt failed for good


# --- the table operations reconcile uses -------------------------------------------------


def write_row(table: UsersTable, *, pool: str | None = None, **attributes: str) -> dict[str, Any]:
    """A row as the trigger writes it, in `pool` (by default the Stubber tests' POOL)."""
    sub = attributes.pop("sub", None) or str(uuid.uuid4())
    attrs = {"sub": sub, "email": f"u-{sub[:8]}@example.com", "name": "Old Name", **attributes}
    row = schema.new_record(
        attrs, sub, timestamp=T0, signed_in=True, user_pool_id=pool or "us-east-1_TestPool1"
    )
    assert table.create_if_absent(row)
    return row


def test_refresh_identity_writes_identity_and_updated_at_only(users_table: UsersTable) -> None:
    row = write_row(users_table)
    uid = row["user_id"]
    users_table.set_role(uid, "vendor", timestamp=T0)  # app data, which must survive
    before = users_table.get(uid)
    assert before is not None
    identity = schema.identity({"sub": uid, "name": "New Name", "phone_number": "+1555"}, uid)
    later = "2026-02-01T00:00:00.000Z"
    assert users_table.refresh_identity(
        uid, identity, user_pool_id=POOL, read_updated_at=T0, timestamp=later
    )
    after = users_table.get(uid)
    assert after is not None
    schema.validate(after)
    assert (after["name"], after["phoneNumber"], after["updatedAt"]) == ("New Name", "+1555", later)
    assert "email" not in after  # the user has no email any more: the index key goes
    assert after["lastLoginAt"] == before["lastLoginAt"] == T0
    same = set(before) - {"name", "phoneNumber", "updatedAt", "email"}
    assert {k: after[k] for k in same} == {k: before[k] for k in same}


def test_refresh_identity_does_nothing_when_the_row_changed_or_is_gone(
    users_table: UsersTable,
) -> None:
    row = write_row(users_table)
    uid = row["user_id"]
    # A sign-in landed after reconcile read the row: its newer identity wins.
    users_table.record_sign_in(
        {"sub": uid, "email": row["email"], "name": "Signed In"},
        uid,
        user_pool_id=POOL,
        timestamp="2026-03-01T00:00:00.000Z",
    )
    identity = schema.identity({"sub": uid, "name": "Stale"}, uid)
    mine = {"user_pool_id": POOL, "timestamp": T0}
    assert not users_table.refresh_identity(uid, identity, read_updated_at=T0, **mine)
    assert users_table.get(uid)["name"] == "Signed In"  # type: ignore[index]
    gone = str(uuid.uuid4())
    assert not users_table.refresh_identity(gone, identity, read_updated_at=T0, **mine)
    assert not users_table.refresh_identity(gone, identity, read_updated_at=None, **mine)
    assert users_table.get(gone) is None  # never created by a refresh


def test_delete_if_unchanged(users_table: UsersTable) -> None:
    row = write_row(users_table)
    assert not users_table.delete_if_unchanged(
        row["user_id"], user_pool_id=POOL, read_updated_at="2020-01-01T00:00:00.000Z"
    )
    # Another pool's run never deletes it, however unchanged.
    assert not users_table.delete_if_unchanged(
        row["user_id"], user_pool_id="us-east-1_OtherPool", read_updated_at=T0
    )
    assert users_table.get(row["user_id"]) is not None
    assert users_table.delete_if_unchanged(row["user_id"], user_pool_id=POOL, read_updated_at=T0)
    assert users_table.get(row["user_id"]) is None


def test_the_index_keeps_a_few_bytes_per_row_not_the_row() -> None:
    index = TableIndex()
    sub = str(uuid.uuid4())
    row = schema.new_record({"sub": sub, "email": "a@example.com"}, sub, timestamp=T0)
    row["cart"] = [{"sku": str(i)} for i in range(100)]
    index.add(row)
    odd = {**row, "user_id": "s-2", "updatedAt": None}
    index.add(odd)
    unusual = {**row, "user_id": str(uuid.uuid4()), "updatedAt": "2026-01-31T12:00:00Z"}
    index.add(unusual)
    index.seal()
    # 16 bytes of sub, 8 + 8 digest bytes, 2 hint bytes for each of the 6 compared fields,
    # 8 of updatedAt, 1 of flags: the rows are 53 bytes each, end to end.
    assert TableIndex.SIZE == 53 and len(index) == 3
    first, second, third = (index.find(u) for u in (sub, "s-2", unusual["user_id"]))
    assert (first, second, third) == (0, 1, 2)
    assert index.updated_at(0) == T0
    assert index.updated_at(1) is None
    assert index.updated_at(2) == "2026-01-31T12:00:00Z"
    assert index.find(str(uuid.uuid4())) is None
    # Taken rows are seen; the others are what may be orphans.
    assert index.take(sub) == 0
    assert [uid for uid, _ in index.unseen()] == ["s-2", unusual["user_id"]]
    index.forget_seen()
    assert len(list(index.unseen())) == 3


def test_the_index_grows_and_still_finds_every_row() -> None:
    index = TableIndex()
    subs = [str(uuid.uuid4()) for _ in range(5000)]
    for sub in subs:
        index.add(schema.new_record({"sub": sub, "email": f"{sub}@x.example"}, sub, timestamp=T0))
    assert all(index.find(s) == n for n, s in enumerate(subs))
    assert index.find(str(uuid.uuid4())) is None
    assert index.has_email(reconcile_module._email_digest({"email": f"{subs[4321]}@x.example"}))
    assert not index.has_email(reconcile_module._email_digest({"email": "nobody@x.example"}))


# --- paging, throttling and statuses cognito-local does not have (Stubber) ---------------

POOL = "us-east-1_TestPool1"


def pool_user(status: str = "CONFIRMED", **attributes: str) -> dict[str, Any]:
    sub = attributes.pop("sub", None) or str(uuid.uuid4())
    attrs = {"sub": sub, "email": f"p-{sub[:8]}@example.com", "name": "Pool User", **attributes}
    return {
        "Username": sub,
        "Attributes": [{"Name": k, "Value": v} for k, v in attrs.items()],
        "UserStatus": status,
        "Enabled": True,
    }


@pytest.fixture
def cognito() -> Iterator[tuple[Any, Stubber]]:
    client = aws.client("cognito-idp", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_pages(stubber: Stubber, pages: list[list[dict[str, Any]]]) -> None:
    """DescribeUserPool, then one ListUsers per page, each asked with the previous token."""
    stubber.add_response(
        "describe_user_pool",
        {"UserPool": {"Id": POOL, "EstimatedNumberOfUsers": sum(map(len, pages))}},
        {"UserPoolId": POOL},
    )
    for number, users in enumerate(pages):
        params: dict[str, Any] = {"UserPoolId": POOL, "Limit": 60}
        if number:
            params["PaginationToken"] = f"token-{number}"
        answer: dict[str, Any] = {"Users": users}
        if number < len(pages) - 1:
            answer["PaginationToken"] = f"token-{number + 1}"
        stubber.add_response("list_users", answer, params)


def test_short_and_empty_pages_do_not_end_the_listing(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    pages = [[pool_user() for _ in range(60)], [], [pool_user() for _ in range(3)], [pool_user()]]
    expect_pages(stubber, pages)
    clock = FakeClock()
    report = reconcile(
        client, users_table, POOL, apply=True, rate=20, clock=clock, sleep=clock.sleep
    )
    assert (report.pool_users, report.list_requests, report.created) == (64, 4, 64)
    assert len(dump(users_table)) == 64
    # Four ListUsers after DescribeUserPool, 0.05 s apart at 20 requests/s.
    assert clock.sleeps == pytest.approx([0.05] * 4)


def test_throttling_backs_off_and_loses_nothing(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    first, second = [pool_user() for _ in range(60)], [pool_user() for _ in range(5)]
    stubber.add_response("describe_user_pool", {"UserPool": {"Id": POOL}}, {"UserPoolId": POOL})
    stubber.add_response(
        "list_users", {"Users": first, "PaginationToken": "t1"}, {"UserPoolId": POOL, "Limit": 60}
    )
    for _ in range(3):
        stubber.add_client_error(
            "list_users",
            "TooManyRequestsException",
            "Rate exceeded",
            400,
            expected_params={"UserPoolId": POOL, "Limit": 60, "PaginationToken": "t1"},
        )
    stubber.add_response(
        "list_users", {"Users": second}, {"UserPoolId": POOL, "Limit": 60, "PaginationToken": "t1"}
    )
    clock, waits = FakeClock(), FakeClock()
    report = reconcile(
        client,
        users_table,
        POOL,
        apply=True,
        clock=clock,
        sleep=clock.sleep,
        backoff=Backoff(sleep=waits.sleep, jitter=no_jitter),
    )
    assert waits.sleeps == [0.25, 0.5, 1.0]
    assert (report.retries, report.created, report.pool_users) == (3, 65, 65)
    assert set(dump(users_table)) == {schema.user_id({"sub": _sub(u)}) for u in first + second}


def _sub(user: dict[str, Any]) -> str:
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


def test_throttling_that_never_ends_fails_the_run_instead_of_skipping_users(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    stubber.add_response("describe_user_pool", {"UserPool": {"Id": POOL}}, {"UserPoolId": POOL})
    for _ in range(3):
        stubber.add_client_error("list_users", "TooManyRequestsException", http_status_code=400)
    clock = FakeClock()
    backoff = Backoff(sleep=clock.sleep, attempts=3)
    with pytest.raises(ClientError, match="TooManyRequests"):
        reconcile(
            client, users_table, POOL, apply=True, sleep=clock.sleep, clock=clock, backoff=backoff
        )


def test_every_status_but_unconfirmed_gets_a_row(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    statuses = ["CONFIRMED", "FORCE_CHANGE_PASSWORD", "RESET_REQUIRED", "EXTERNAL_PROVIDER"]
    users = {s: pool_user(s) for s in [*statuses, "UNCONFIRMED"]}
    users["EXTERNAL_PROVIDER"]["Username"] = "Google_1234567890"
    expect_pages(stubber, [list(users.values())])
    clock = FakeClock()
    report = reconcile(client, users_table, POOL, apply=True, clock=clock, sleep=clock.sleep)
    assert (report.to_create, report.created, report.unconfirmed) == (4, 4, 1)
    rows = dump(users_table)
    assert set(rows) == {_sub(users[s]) for s in statuses}
    federated = rows[_sub(users["EXTERNAL_PROVIDER"])]
    assert federated["username"] == "Google_1234567890"
    assert {e.detail for e in report.examples if e.category == TO_CREATE} == set(statuses)


def test_a_missing_pool_is_a_clear_error(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    stubber.add_client_error(
        "describe_user_pool", "ResourceNotFoundException", http_status_code=400
    )
    with pytest.raises(PoolNotFound, match="user pool us-east-1_TestPool1 was not found"):
        reconcile(client, users_table, POOL)


def test_dynamodb_throttling_backs_off_too(cognito: tuple[Any, Stubber]) -> None:
    client, stubber = cognito
    user = pool_user()
    expect_pages(stubber, [[user]])
    dynamodb = aws.client("dynamodb", region_name="us-east-1")
    with Stubber(dynamodb) as table_stub:
        table_stub.add_response("scan", {"Items": []}, {"TableName": "t", "Limit": ANY})
        put = {
            "TableName": "t",
            "Item": ANY,
            "ConditionExpression": "attribute_not_exists(user_id)",
        }
        table_stub.add_client_error(
            "put_item",
            "ProvisionedThroughputExceededException",
            http_status_code=400,
            expected_params=put,
        )
        table_stub.add_client_error(
            "put_item", "ThrottlingException", http_status_code=400, expected_params=put
        )
        table_stub.add_response("put_item", {}, put)
        clock, waits = FakeClock(), FakeClock()
        report = reconcile(
            client,
            UsersTable(dynamodb, "t"),
            POOL,
            apply=True,
            concurrency=1,
            clock=clock,
            sleep=clock.sleep,
            backoff=Backoff(sleep=waits.sleep, jitter=no_jitter),
        )
        table_stub.assert_no_pending_responses()
    assert (report.created, report.retries, waits.sleeps) == (1, 2, [0.25, 0.5])


def test_a_sign_in_during_reconcile_wins_over_its_refresh(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    row = write_row(users_table)
    uid = row["user_id"]
    renamed = {"sub": uid, "email": row["email"], "name": "Renamed"}
    expect_pages(stubber, [[pool_user(**renamed)]])

    def sign_in_after_the_table_was_read(event: ProgressEvent) -> None:
        if event.phase == "table":
            users_table.record_sign_in(
                renamed, uid, user_pool_id=POOL, timestamp="2026-04-01T00:00:00.000Z"
            )

    clock = FakeClock()
    report = reconcile(
        client,
        users_table,
        POOL,
        apply=True,
        on_progress=sign_in_after_the_table_was_read,
        clock=clock,
        sleep=clock.sleep,
    )
    assert (report.to_refresh, report.refreshed, report.changed_since_read) == (1, 0, 1)
    after = users_table.get(uid)
    assert after is not None
    assert (after["name"], after["lastLoginAt"]) == ("Renamed", "2026-04-01T00:00:00.000Z")


# --- the scenario, on cognito-local and DynamoDB Local -----------------------------------

ROLE_SCHEMA = {
    "Name": "role",
    "AttributeDataType": "String",
    "Mutable": False,
    "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "32"},
}


class Pool:
    """A user pool and a table of the test's own, on the local stack."""

    def __init__(self) -> None:
        self.cognito = aws.client("cognito-idp")
        self.id = self.cognito.create_user_pool(
            PoolName=f"reconcile-{uuid.uuid4().hex[:8]}",
            AutoVerifiedAttributes=["email"],
            UsernameAttributes=["email"],
            Schema=[ROLE_SCHEMA],
        )["UserPool"]["Id"]
        self.client_id = self.cognito.create_user_pool_client(
            UserPoolId=self.id,
            ClientName="test",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        self.table = UsersTable(aws.client("dynamodb"), f"users-{uuid.uuid4().hex[:10]}")
        self.table.create_table()

    def user(self, email: str) -> dict[str, Any]:
        answer = self.cognito.admin_get_user(UserPoolId=self.id, Username=email)
        return {
            "username": answer["Username"],
            "status": answer["UserStatus"],
            "attributes": {a["Name"]: a["Value"] for a in answer["UserAttributes"]},
        }

    def sub(self, email: str) -> str:
        return str(self.user(email)["attributes"]["sub"])

    def trigger(self, email: str, *, sign_in: bool = False) -> None:
        """What the trigger writes at confirmation (or at a sign-in), from what Cognito holds.

        Its table operations, without the handler's 2.5 s deadline: on a busy test machine a
        cold DynamoDB Local may take longer (the deadline is tested in test_deadline.py).
        """
        user = self.user(email)
        if sign_in:
            self.table.record_sign_in(
                user["attributes"], user["username"], user_pool_id=self.id, timestamp=schema.now()
            )
        else:
            record = schema.new_record(
                user["attributes"], user["username"], timestamp=schema.now(), user_pool_id=self.id
            )
            assert self.table.create_if_absent(record)

    def signed_up(self, role: str = "customer") -> str:
        """A user who signed up and confirmed, with the row the trigger wrote."""
        user = DemoUser(f"su-{uuid.uuid4().hex[:8]}@example.com", role, name="Signed Up")
        assert sign_up(self.cognito, self.client_id, user)
        self.trigger(user.email)
        return user.email

    def admin_created(self, role: str, email: str | None = None) -> str:
        user = DemoUser(email or f"ac-{uuid.uuid4().hex[:8]}@example.com", role, name="Made By Ops")
        self.cognito.admin_create_user(
            UserPoolId=self.id,
            Username=user.email,
            UserAttributes=user.attributes(),
            TemporaryPassword=DEMO_PASSWORD,
            MessageAction="SUPPRESS",
        )
        return user.email

    def app_sets(self, uid: str, **fields: Any) -> None:
        names = {f"#f{i}": k for i, k in enumerate(fields)}
        values = {f":v{i}": v for i, v in enumerate(fields.values())}
        self.table.client.update_item(
            TableName=self.table.name,
            Key=to_dynamo({"user_id": uid}),
            UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    def reconcile(self, table: UsersTable | None = None, **options: Any) -> Report:
        clock = FakeClock()
        return reconcile(
            self.cognito, table or self.table, self.id, clock=clock, sleep=clock.sleep, **options
        )

    def cli(self, *args: str) -> dict[str, Any]:
        result = CliRunner().invoke(
            main,
            ["reconcile", "--user-pool-id", self.id, "--table", self.table.name, "--json", *args],
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))


@pytest.fixture
def pool(stack_env: LocalStack) -> Pool:
    return Pool()


@pytest.mark.slow
def test_reconcile_reports_then_heals_exactly_what_differs(pool: Pool) -> None:
    # GIVEN users who signed up (rows by the trigger), one of whom signed in since …
    in_step = pool.signed_up()
    pool.trigger(in_step, sign_in=True)
    app_changed = pool.signed_up("vendor")
    pool.app_sets(pool.sub(app_changed), cart=[{"sku": "A1"}], role="customer")
    # … one renamed in Cognito since (the row is stale) …
    renamed = pool.signed_up()
    pool.cognito.admin_update_user_attributes(
        UserPoolId=pool.id, Username=renamed, UserAttributes=[{"Name": "name", "Value": "Renamed"}]
    )
    # … one whose row has a wrong email, and app data (cart, role) the app changed …
    wrong_email = pool.signed_up()
    pool.app_sets(
        pool.sub(wrong_email),
        email="old@example.com",
        cart=[{"sku": "B2", "qty": Decimal(3)}],
        role="admin",
    )
    # … users made by an administrator (no trigger, no row), one asking to be admin …
    admin_created = [pool.admin_created(r) for r in ("customer", "vendor", "admin")]
    # … a user deleted and made again with the same email (a new sub; the old row stays) …
    returning = pool.signed_up()
    old_sub = pool.sub(returning)
    pool.cognito.admin_delete_user(UserPoolId=pool.id, Username=returning)
    pool.admin_created("customer", email=returning)
    # … a row whose user is gone, and a user who never confirmed.
    orphan = write_row(pool.table, pool=pool.id)["user_id"]
    unconfirmed = DemoUser(f"un-{uuid.uuid4().hex[:8]}@example.com", "customer")
    pool.cognito.sign_up(
        ClientId=pool.client_id,
        Username=unconfirmed.email,
        Password=DEMO_PASSWORD,
        UserAttributes=unconfirmed.attributes(),
    )
    before = dump(pool.table)

    # WHEN reconcile runs without --apply, THEN it reports exactly those, and changes nothing.
    dry = pool.reconcile()
    assert dry.counts() == {
        TO_CREATE: 3,
        TO_REFRESH: 2,
        ORPHAN: 1,
        MOVED: 1,
        UNCONFIRMED_USER: 1,
        "invalid": 0,
        "marked deleted": 0,
        "orphan, no pool recorded": 0,
        "other pool": 0,
    }
    assert (dry.in_step, dry.pool_users, dry.rows) == (2, 9, 6)
    assert ids(dry, TO_CREATE) == {pool.sub(e) for e in admin_created}
    assert ids(dry, TO_REFRESH) == {pool.sub(renamed), pool.sub(wrong_email)}
    assert ids(dry, ORPHAN) == {orphan}
    assert ids(dry, MOVED) == {old_sub}
    new_sub = pool.sub(returning)
    assert [e.detail for e in dry.examples if e.category == MOVED] == [
        f"same email as user {new_sub}; not moved"
    ]
    assert ids(dry, UNCONFIRMED_USER) == {pool.sub(unconfirmed.email)}
    details = {e.user_id: e.detail for e in dry.examples}
    assert details[pool.sub(renamed)] == "differs: name"
    assert details[pool.sub(wrong_email)] == "differs: email"
    assert dump(pool.table) == before

    # WHEN it runs with --apply, THEN it fixes exactly those, and no app data or lastLoginAt.
    applied = pool.reconcile(apply=True)
    assert (applied.created, applied.refreshed, applied.already_existed) == (3, 2, 0)
    after = dump(pool.table)
    created = {pool.sub(e) for e in admin_created}
    assert set(after) == set(before) | created
    for email, role in zip(admin_created, ("customer", "vendor", "customer"), strict=True):
        user = pool.user(email)
        row = after[pool.sub(email)]
        assert row == schema.new_record(
            user["attributes"], user["username"], timestamp=row["createdAt"], user_pool_id=pool.id
        )
        assert (row["role"], row["lastLoginAt"]) == (role, None)
    for email, changed in ((renamed, {"name": "Renamed"}), (wrong_email, {"email": wrong_email})):
        uid = pool.sub(email)
        assert after[uid]["updatedAt"] > before[uid]["updatedAt"]
        assert after[uid] == {**before[uid], **changed, "updatedAt": after[uid]["updatedAt"]}
    assert after[pool.sub(wrong_email)]["cart"] == [{"sku": "B2", "qty": Decimal(3)}]
    assert after[pool.sub(wrong_email)]["role"] == "admin"
    for uid in (pool.sub(in_step), pool.sub(app_changed), old_sub, orphan):
        assert after[uid] == before[uid]
    assert new_sub not in after and pool.sub(unconfirmed.email) not in after

    # WHEN it runs again (the command, this time), THEN there is nothing left to do.
    again = pool.cli("--apply")
    assert {
        k: again[k] for k in ("to_create", "to_refresh", "orphans", "moved", "unconfirmed")
    } == {"to_create": 0, "to_refresh": 0, "orphans": 1, "moved": 1, "unconfirmed": 1}
    assert (again["created"], again["refreshed"], again["in_step"]) == (0, 0, 7)
    assert dump(pool.table) == after

    # Orphans go only when asked and confirmed: never without a yes, never the moved row.
    kept = pool.cli("--apply", "--delete-orphans")
    assert (kept["orphans_deleted"], kept["orphans_kept"]) == (0, 1)
    deleted = pool.cli("--apply", "--delete-orphans", "--yes")
    assert (deleted["orphans_deleted"], deleted["orphans_kept"]) == (1, 0)
    final = dump(pool.table)
    assert set(final) == set(after) - {orphan}
    assert final[old_sub] == before[old_sub]


@pytest.mark.slow
@pytest.mark.parametrize("interruption", ["ctrl-c", "crash"])
def test_an_interrupted_apply_is_completed_by_the_next_run(pool: Pool, interruption: str) -> None:
    users = [pool.admin_created("customer") for _ in range(12)]
    stale = pool.signed_up()
    pool.cognito.admin_update_user_attributes(
        UserPoolId=pool.id, Username=stale, UserAttributes=[{"Name": "name", "Value": "Renamed"}]
    )
    if interruption == "ctrl-c":

        def press_ctrl_c(event: ProgressEvent) -> None:
            if event.phase == "writes" and event.done == 4:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            pool.reconcile(apply=True, concurrency=2, on_progress=press_ctrl_c)
    else:
        crashing = UsersTable(CrashingClient(pool.table.client, after_writes=5), pool.table.name)
        with pytest.raises(RuntimeError, match="crash"):
            pool.reconcile(crashing, apply=True, concurrency=2)
    landed = set(dump(pool.table))
    created_first = len(landed & {pool.sub(e) for e in users})
    refreshed_first = int(pool.table.get(pool.sub(stale))["name"] == "Renamed")  # type: ignore[index]
    assert created_first + refreshed_first >= 4 and created_first < 12

    rerun = pool.reconcile(apply=True)
    assert rerun.to_create == rerun.created == 12 - created_first
    assert rerun.to_refresh == rerun.refreshed == 1 - refreshed_first
    assert rerun.already_existed == 0 and rerun.changed_since_read == 0  # nothing redone
    assert set(dump(pool.table)) == landed | {pool.sub(e) for e in users}
    assert pool.table.get(pool.sub(stale))["name"] == "Renamed"  # type: ignore[index]
    last = pool.reconcile(apply=True)
    assert (last.to_create, last.to_refresh) == (0, 0)


class CrashingClient:
    """A DynamoDB client whose process 'dies' on its n-th write (the write does not land)."""

    def __init__(self, client: Any, after_writes: int) -> None:
        self._client = client
        self._left = after_writes

    def _write(self, operation: Callable[..., Any], **kwargs: Any) -> Any:
        self._left -= 1
        if self._left < 0:
            raise RuntimeError("crash")
        return operation(**kwargs)

    def put_item(self, **kwargs: Any) -> Any:
        return self._write(self._client.put_item, **kwargs)

    def update_item(self, **kwargs: Any) -> Any:
        return self._write(self._client.update_item, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
