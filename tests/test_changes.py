"""The change handler on cognito-local and DynamoDB Local: every event kind, and the bad ones.

Each test changes a real user in cognito-local, then hands the handler the CloudTrail event
EventBridge would deliver (tests/events/change-*.json with the user's sub and the pool put
in), and reads the row back from DynamoDB Local.
"""

from __future__ import annotations

import copy
import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from livekart_users import aws, changes, schema
from livekart_users.exceptions import InvalidErasurePolicy, MissingSetting
from livekart_users.local.stack import LocalStack
from livekart_users.table import UsersTable, to_dynamo
from tests.conftest import EVENTS, TriggerOutput

pytestmark = pytest.mark.slow

SAMPLE_SUB = "5f1c2e4a-8d7b-4c1e-9a3f-2b6d8e0c4a11"
SAMPLE_POOL = "us-east-1_EXAMPLE01"
PERSONAL = ("email", "name", "phoneNumber", "address", "profileImage", "username")


def change_event(kind: str, sub: str, pool: str) -> dict[str, Any]:
    """A sample event with a real sub and pool in place of the samples'."""
    text = (EVENTS / f"change-{kind}.json").read_text()
    event: dict[str, Any] = json.loads(text.replace(SAMPLE_SUB, sub).replace(SAMPLE_POOL, pool))
    return event


class World:
    """The module's stack seen from one test: the pool, the table, and helpers."""

    def __init__(self, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pool = str(stack.status().user_pool_id)
        # Straight to cognito-local, past the stack's proxy: these tests deliver each change
        # event themselves, and the proxy would deliver its own as well.
        self.cognito = aws.client("cognito-idp", endpoint_url=stack.endpoints()["cognito-local"])
        self.table = UsersTable(aws.client("dynamodb"), stack.settings.table)
        monkeypatch.setenv("USER_POOL_ID", self.pool)
        monkeypatch.delenv("USERS_ERASURE_POLICY", raising=False)
        changes._clients.cache_clear()

    def new_user(self, *, legacy: bool = False, **app: Any) -> tuple[str, str]:
        """A confirmed user with email, name and phone, and their row with some app data,
        recording the pool (or, `legacy`, none: a row written before rows recorded it)."""
        email = f"user-{uuid.uuid4().hex[:8]}@example.com"
        created = self.cognito.admin_create_user(
            UserPoolId=self.pool,
            Username=email,
            UserAttributes=[
                {"Name": "email", "Value": email},
                {"Name": "email_verified", "Value": "true"},
                {"Name": "name", "Value": "Asha Mehta"},
                {"Name": "phone_number", "Value": "+15555550123"},
            ],
            MessageAction="SUPPRESS",
        )["User"]
        username = created["Username"]
        attributes = {a["Name"]: a["Value"] for a in created["Attributes"]}
        row = schema.new_record(
            attributes,
            username,
            timestamp="2026-11-01T10:00:00.000Z",
            user_pool_id=None if legacy else self.pool,
        )
        row.update(
            lastLoginAt="2026-11-02T10:00:00.000Z",
            address={"city": "Pune", "line1": "12 MG Road"},
            profileImage="https://img.example.com/u.png",
            cart=[{"productId": "p-1", "quantity": Decimal(2)}],
            totalOrders=Decimal(7),
            totalSpent=Decimal("129.90"),
            **app,
        )
        self.table.client.put_item(TableName=self.table.name, Item=to_dynamo(row))
        return attributes["sub"], username

    def row(self, sub: str) -> dict[str, Any]:
        found = self.table.get(sub)
        assert found is not None
        return found

    def deliver(self, kind: str, sub: str, pool: str | None = None) -> dict[str, Any]:
        return changes.handler(change_event(kind, sub, pool or self.pool), None)


@pytest.fixture
def world(stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(stack_env, monkeypatch)


# --- attribute changes -------------------------------------------------------------------


def test_an_admin_email_change_reaches_the_row_and_the_index_without_a_sign_in(
    world: World,
) -> None:
    sub, username = world.new_user(role="vendor", **dict(schema.VENDOR_DEFAULTS))
    before = world.row(sub)
    new_email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    world.cognito.admin_update_user_attributes(
        UserPoolId=world.pool,
        Username=username,
        UserAttributes=[{"Name": "email", "Value": new_email.upper()}],
    )

    assert world.deliver("admin-update-user-attributes", sub)["outcome"] == "refreshed"

    after = world.row(sub)
    assert after["email"] == new_email
    assert [r["user_id"] for r in world.table.find_by_email(new_email, unverified=True)] == [sub]
    assert world.table.find_by_email(before["email"], unverified=True) == []
    assert after["updatedAt"] > before["updatedAt"]
    # App data, role, status and the last sign-in are the app's: untouched.
    for field in (
        "lastLoginAt",
        "cart",
        "totalOrders",
        "totalSpent",
        "role",
        "status",
        "address",
        "profileImage",
        "storeName",
        "createdAt",
    ):
        assert after[field] == before[field], field
    schema.validate(after)


@pytest.mark.parametrize(
    "kind", ["update-user-attributes", "verify-user-attribute", "admin-update-user-attributes"]
)
def test_every_update_call_refreshes_identity_from_cognito_not_from_the_event(
    world: World, kind: str
) -> None:
    sub, username = world.new_user()
    world.cognito.admin_update_user_attributes(
        UserPoolId=world.pool,
        Username=username,
        UserAttributes=[{"Name": "name", "Value": "Asha M. Rao"}],
    )
    assert world.deliver(kind, sub)["outcome"] == "refreshed"
    assert world.row(sub)["name"] == "Asha M. Rao"


@pytest.mark.parametrize("kind", ["admin-delete-user-attributes", "delete-user-attributes"])
def test_a_deleted_attribute_is_removed_from_the_row(world: World, kind: str) -> None:
    sub, username = world.new_user()
    world.cognito.admin_delete_user_attributes(
        UserPoolId=world.pool, Username=username, UserAttributeNames=["phone_number"]
    )
    assert world.deliver(kind, sub)["outcome"] == "refreshed"
    row = world.row(sub)
    assert row["phoneNumber"] is None
    assert row["email"].startswith("user-")


def test_disable_and_enable_are_mirrored_without_touching_the_apps_status(world: World) -> None:
    sub, username = world.new_user(status="suspended")
    world.cognito.admin_disable_user(UserPoolId=world.pool, Username=username)
    assert world.deliver("admin-disable-user", sub)["outcome"] == "refreshed"
    assert world.row(sub)["cognitoEnabled"] is False
    assert world.row(sub)["status"] == "suspended"

    world.cognito.admin_enable_user(UserPoolId=world.pool, Username=username)
    assert world.deliver("admin-enable-user", sub)["outcome"] == "refreshed"
    assert world.row(sub)["cognitoEnabled"] is True
    assert world.row(sub)["status"] == "suspended"


def test_events_out_of_order_write_the_current_state_not_the_events(world: World) -> None:
    sub, username = world.new_user()
    world.cognito.admin_disable_user(UserPoolId=world.pool, Username=username)
    world.cognito.admin_enable_user(UserPoolId=world.pool, Username=username)
    # The enable event arrives first, then the older disable event.
    world.deliver("admin-enable-user", sub)
    assert world.deliver("admin-disable-user", sub)["outcome"] == "unchanged"
    assert world.row(sub)["cognitoEnabled"] is True


@pytest.mark.parametrize(
    "kind",
    [
        "admin-update-user-attributes",
        "update-user-attributes",
        "verify-user-attribute",
        "admin-delete-user-attributes",
        "delete-user-attributes",
        "admin-disable-user",
        "admin-enable-user",
        "admin-delete-user",
        "delete-user",
    ],
)
def test_replaying_any_event_changes_nothing(world: World, kind: str) -> None:
    sub, username = world.new_user()
    if kind.endswith("delete-user"):
        world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    world.deliver(kind, sub)
    settled = world.table.get(sub)

    second = world.deliver(kind, sub)

    assert second["outcome"] in {"unchanged", "already_erased"}
    assert world.table.get(sub) == settled


def test_an_update_for_a_user_without_a_row_creates_nothing(world: World) -> None:
    sub, _ = world.new_user()
    world.table.client.delete_item(TableName=world.table.name, Key=to_dynamo({"user_id": sub}))
    assert world.deliver("admin-update-user-attributes", sub)["outcome"] == "no_row"
    assert world.table.get(sub) is None


# --- deletions ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["admin-delete-user", "delete-user"])
def test_a_deletion_erases_every_personal_field_and_keeps_app_data(world: World, kind: str) -> None:
    sub, username = world.new_user()
    before = world.row(sub)
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)

    assert world.deliver(kind, sub)["outcome"] == "anonymized"

    row = world.row(sub)
    assert [f for f in PERSONAL if f in row] == []
    assert row["deletedAt"] == row["updatedAt"]
    assert world.table.find_by_email(before["email"], unverified=True) == []
    for field in ("totalOrders", "totalSpent", "cart", "role", "status", "createdAt"):
        assert row[field] == before[field], field
    schema.validate(row)
    # No personal value anywhere in what is left.
    left = json.dumps(row, default=str)
    assert before["email"] not in left and "Asha" not in left and "5555550123" not in left


@pytest.mark.parametrize("policy", ["anonymize", "delete"])
def test_erasure_removes_the_username_whatever_its_form(
    world: World, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    # A federated user's name is their id at the provider; a chosen one names them too.
    monkeypatch.setenv("USERS_ERASURE_POLICY", policy)
    names = ["Google_1234567890", "SignInWithApple_001234.abcd", "asha_m", "asha@example.com"]
    subs = []
    for username in names:
        sub, _ = world.new_user()
        world.table.client.update_item(
            TableName=world.table.name,
            Key=to_dynamo({"user_id": sub}),
            UpdateExpression="SET username = :u",
            ExpressionAttributeValues=to_dynamo({":u": username}),
        )
        world.cognito.admin_delete_user(UserPoolId=world.pool, Username=world.row(sub)["email"])
        world.deliver("admin-delete-user", sub)
        subs.append(sub)
    for sub, username in zip(subs, names, strict=True):
        row = world.row(sub)
        assert "username" not in row
        left = json.dumps(row, default=str)
        assert username not in left
        assert "1234567890" not in left and "001234.abcd" not in left


def test_the_delete_policy_leaves_only_a_tombstone(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_ERASURE_POLICY", "delete")
    sub, username = world.new_user()
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    assert world.deliver("admin-delete-user", sub)["outcome"] == "deleted"
    row = world.row(sub)
    # Nothing of the person or the app: the key, the pool and when (it blocks a re-create).
    assert set(row) == {"user_id", "userPoolId", "deletedAt", "updatedAt"}
    assert row["userPoolId"] == world.pool
    schema.validate(row)
    assert world.deliver("admin-delete-user", sub)["outcome"] == "already_erased"


def test_the_keep_policy_marks_the_row_and_keeps_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("USERS_ERASURE_POLICY", "keep")
    sub, username = world.new_user()
    before = world.row(sub)
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    assert world.deliver("admin-delete-user", sub)["outcome"] == "marked_deleted"
    row = world.row(sub)
    assert row["email"] == before["email"]
    assert row["deletedAt"] == row["updatedAt"]


def test_a_late_update_after_a_deletion_brings_nothing_back(world: World) -> None:
    sub, username = world.new_user()
    world.cognito.admin_update_user_attributes(
        UserPoolId=world.pool,
        Username=username,
        UserAttributes=[{"Name": "name", "Value": "Late Name"}],
    )
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    world.deliver("admin-delete-user", sub)
    erased = world.row(sub)

    outcome = world.deliver("admin-update-user-attributes", sub)["outcome"]

    assert outcome == "already_erased"
    assert world.row(sub) == erased


@pytest.mark.parametrize("kind", ["admin-update-user-attributes", "update-user-attributes"])
def test_an_attribute_event_never_erases_even_when_the_user_is_gone(
    world: World, kind: str
) -> None:
    # Token calls name no pool: "not found here" may mean "another pool's user". The
    # deletion's own event, or reconcile --erase-orphans, erases this pool's rows.
    sub, username = world.new_user()
    before = world.row(sub)
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    assert world.deliver(kind, sub)["outcome"] == "not_in_pool"
    assert world.row(sub) == before


def test_a_refresh_read_before_a_deletion_cannot_write_after_it(world: World) -> None:
    sub, _ = world.new_user()
    read = world.row(sub)
    world.table.anonymize(sub, user_pool_id=world.pool, timestamp=schema.now())
    identity = {"username": read["username"], "email": "back@example.com", "name": "Back"}
    # Even a writer that (wrongly) saw the erased row's updatedAt must not write.
    erased = world.row(sub)
    for seen in (read["updatedAt"], erased["updatedAt"]):
        assert not world.table.refresh_identity(
            sub,
            identity,
            user_pool_id=world.pool,
            read_updated_at=seen,
            timestamp=schema.now(),
            enabled=True,
        )
    assert world.row(sub) == erased


def test_a_deletion_event_for_a_user_still_in_the_pool_erases_nothing(world: World) -> None:
    sub, _ = world.new_user()
    before = world.row(sub)
    assert world.deliver("admin-delete-user", sub)["outcome"] == "still_in_pool"
    assert world.row(sub) == before


# --- bad input: logged without personal data, dropped, never raised ------------------------


def _bad_events(sub: str, pool: str) -> dict[str, Any]:
    good = change_event("admin-delete-user", sub, pool)
    no_sub = copy.deepcopy(good)
    del no_sub["detail"]["additionalEventData"]
    odd_sub = copy.deepcopy(good)
    odd_sub["detail"]["additionalEventData"]["sub"] = 'x" or sub ^= "'
    not_dict_detail = {**good, "detail": "AdminDeleteUser"}
    other_call = copy.deepcopy(good)
    other_call["detail"]["eventName"] = "AdminSetUserPassword"
    other_service = copy.deepcopy(good)
    other_service["detail"]["eventSource"] = "dynamodb.amazonaws.com"
    scheduled = {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}
    return {
        "none": None,
        "list": [good],
        "empty": {},
        "scheduled": scheduled,
        "detail not a map": not_dict_detail,
        "no sub": no_sub,
        "a sub that is not an id": odd_sub,
        "another call": other_call,
        "another service": other_service,
        "failed call": change_event("admin-delete-user-failed", sub, pool),
        "another pool": change_event("admin-delete-user-other-pool", sub, pool),
    }


def test_bad_events_are_logged_without_personal_data_and_dropped(
    world: World, trigger_output: TriggerOutput
) -> None:
    sub, username = world.new_user()
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    before = world.row(sub)
    for label, event in _bad_events(sub, world.pool).items():
        answer = changes.handler(event, None)
        assert answer["outcome"] == "dropped", label
        [line] = trigger_output.logs()
        assert line["outcome"] == "dropped" and line["reason"], label
        assert before["email"] not in json.dumps(line), label
    assert world.row(sub) == before


def test_a_missing_pool_setting_fails_the_invocation_so_the_event_is_kept(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub, _ = world.new_user()
    monkeypatch.delenv("USER_POOL_ID")
    with pytest.raises(MissingSetting):
        world.deliver("admin-delete-user", sub)
    monkeypatch.setenv("USER_POOL_ID", world.pool)
    monkeypatch.setenv("USERS_ERASURE_POLICY", "shred")
    with pytest.raises(InvalidErasurePolicy):
        world.deliver("admin-delete-user", sub)


# --- the event shape ---------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVENTS.glob("change-*.json")), ids=lambda p: p.stem)
def test_sample_events_parse_as_documented(path: Any) -> None:
    event = json.loads(path.read_text())
    detail = event["detail"]
    if "errorCode" in detail or "OTHERPOOL" in path.read_text():
        with pytest.raises(changes.Malformed):
            changes.ChangeEvent.parse(event, SAMPLE_POOL)
        return
    parsed = changes.ChangeEvent.parse(event, SAMPLE_POOL)
    assert parsed.sub == SAMPLE_SUB
    assert parsed.name == detail["eventName"]
    # Calls made with an access token name no pool; admin calls name theirs.
    assert parsed.user_pool_id == detail["requestParameters"].get("userPoolId")
