"""Every sample event through the handler, against DynamoDB Local, row checked field by field."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest

from livekart_users import schema, triggers
from livekart_users.table import UsersTable, to_dynamo

from .conftest import TriggerOutput, load_event

CUSTOMER_SUB = "8f1c2a7e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
APP_DEFAULTS = {
    "address": None,
    "profileImage": None,
    "wishlist": [],
    "cart": [],
    "totalOrders": Decimal(0),
    "totalSpent": Decimal(0),
}


def run(event_name: str, **changes: Any) -> dict[str, Any]:
    event = load_event(event_name, **changes)
    assert triggers.handler(event, None) is event
    return event


def row(table: UsersTable, sub: str) -> dict[str, Any]:
    item = table.get(sub)
    assert item is not None, f"no row for {sub}"
    schema.validate(item)
    return item


def app_changes(table: UsersTable, sub: str) -> None:
    """What the app does to a row after sign-up: cart, wishlist, counters, and (an
    administrator) promoting the user to vendor with a store."""
    table.client.update_item(
        TableName=table.name,
        Key=to_dynamo({"user_id": sub}),
        UpdateExpression="SET cart = :cart, wishlist = :wish, totalOrders = :n, "
        "totalSpent = :spent, #role = :role, storeName = :store, storeDescription = :about, "
        "totalProducts = :products, totalRevenue = :revenue, rating = :rating, "
        "totalReviews = :reviews, address = :addr",
        ExpressionAttributeNames={"#role": "role"},
        ExpressionAttributeValues=to_dynamo(
            {
                ":cart": [{"sku": "TEA-1", "qty": Decimal(2)}],
                ":wish": ["SPICE-9"],
                ":n": Decimal(3),
                ":spent": Decimal("59.90"),
                ":role": "vendor",
                ":store": "Tea Corner",
                ":about": "Loose-leaf teas",
                ":products": Decimal(4),
                ":revenue": Decimal("120.50"),
                ":rating": Decimal("4.5"),
                ":reviews": Decimal(10),
                ":addr": {"city": "Pune"},
            }
        ),
    )


def test_customer_sign_up_writes_the_complete_record(users_table: UsersTable) -> None:
    run("post-confirmation-signup-customer")
    item = row(users_table, CUSTOMER_SUB)
    assert item.pop("createdAt") == item.pop("updatedAt")
    assert item == {
        "user_id": CUSTOMER_SUB,
        "userPoolId": "us-east-1_pMr6t5GFA",
        "username": "testuser",
        "email": "testuser@example.com",
        "name": "Test User",
        "role": "customer",
        "status": "active",
        "emailVerified": True,
        "lastLoginAt": None,
        "phoneNumber": None,
        **APP_DEFAULTS,
    }


def test_vendor_sign_up_gets_store_fields_and_a_joined_name(users_table: UsersTable) -> None:
    event = run("post-confirmation-signup-vendor")
    sub = event["request"]["userAttributes"]["sub"]
    item = row(users_table, sub)
    assert item["name"] == "Asha Mehta"
    assert item["phoneNumber"] == "+919876543210"
    assert item["username"] == sub
    assert item["role"] == "vendor"
    assert item["email"] == "asha@spices.example"
    assert {k: item[k] for k in schema.VENDOR_DEFAULTS} == {
        "storeName": None,
        "storeDescription": None,
        "totalProducts": Decimal(0),
        "totalRevenue": Decimal(0),
        "rating": Decimal(0),
        "totalReviews": Decimal(0),
    }
    assert ISO.match(item["createdAt"])


def test_admin_request_is_stored_as_customer_and_logged_once(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    event = run("post-confirmation-signup-admin-requested")
    sub = event["request"]["userAttributes"]["sub"]
    assert row(users_table, sub)["role"] == "customer"
    [line] = trigger_output.logs()
    assert line["user_id"] == sub
    assert line["outcome"] == "created"
    assert line["requested_role"] == "admin"
    assert line["role_assigned"] == "customer"
    assert "mallory" not in str(line).lower()


def test_password_reset_after_sign_up_changes_nothing(users_table: UsersTable) -> None:
    run("post-confirmation-signup-customer")
    before = row(users_table, CUSTOMER_SUB)
    app_changes(users_table, CUSTOMER_SUB)
    changed = row(users_table, CUSTOMER_SUB)
    run("post-confirmation-forgot-password")
    assert row(users_table, CUSTOMER_SUB) == changed != before


def test_password_reset_alone_creates_the_missing_row(users_table: UsersTable) -> None:
    run("post-confirmation-forgot-password")
    item = row(users_table, CUSTOMER_SUB)
    assert item["role"] == "customer"
    assert item["lastLoginAt"] is None


def test_replayed_confirmation_changes_nothing(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    run("post-confirmation-signup-customer")
    first = row(users_table, CUSTOMER_SUB)
    trigger_output.logs()
    run("post-confirmation-signup-customer", name="Someone Else")
    assert row(users_table, CUSTOMER_SUB) == first
    assert [line["outcome"] for line in trigger_output.logs()] == ["already_exists"]


def test_sign_in_refreshes_identity_and_keeps_app_data(users_table: UsersTable) -> None:
    run("post-confirmation-signup-customer")
    app_changes(users_table, CUSTOMER_SUB)
    before = row(users_table, CUSTOMER_SUB)
    run("post-authentication")  # new name and phone; claims admin
    after = row(users_table, CUSTOMER_SUB)
    assert after["name"] == "Test U. Renamed"
    assert after["phoneNumber"] == "+15555550100"
    assert after["email"] == "testuser@example.com"
    assert after["emailVerified"] is True
    assert ISO.match(after["lastLoginAt"])
    assert after["updatedAt"] == after["lastLoginAt"] >= before["updatedAt"]
    identity = {"name", "phoneNumber", "email", "emailVerified", "lastLoginAt", "updatedAt"}
    assert {k: v for k, v in after.items() if k not in identity} == {
        k: v for k, v in before.items() if k not in identity
    }
    assert after["role"] == "vendor"  # as the app set it, not the token's `admin`


def test_sign_in_claiming_vendor_leaves_a_customer_a_customer(users_table: UsersTable) -> None:
    run("post-confirmation-signup-customer")
    run("post-authentication-claims-vendor")
    item = row(users_table, CUSTOMER_SUB)
    assert item["role"] == "customer"
    assert not set(schema.VENDOR_DEFAULTS) & set(item)
    assert item["lastLoginAt"] is not None


def test_sign_in_without_a_row_creates_it(users_table: UsersTable) -> None:
    run("post-authentication-claims-vendor")  # e.g. a user made with AdminCreateUser
    item = row(users_table, CUSTOMER_SUB)
    # The create path applies the self-service role policy: vendor may be chosen.
    assert item["role"] == "vendor"
    assert item["lastLoginAt"] == item["createdAt"]
    assert item["storeName"] is None


def test_phone_only_user_has_no_email_attribute(users_table: UsersTable) -> None:
    event = run("post-confirmation-no-email")
    item = row(users_table, event["request"]["userAttributes"]["sub"])
    assert "email" not in item
    assert item["name"] is None
    assert item["emailVerified"] is False
    assert item["role"] == "customer"
    assert item["phoneNumber"] == "+447700900123"


def test_sign_in_that_drops_the_email_removes_it_from_the_index(users_table: UsersTable) -> None:
    run("post-confirmation-signup-customer")
    event = load_event("post-authentication")
    del event["request"]["userAttributes"]["email"]
    triggers.handler(event, None)
    assert "email" not in row(users_table, CUSTOMER_SUB)
    assert users_table.find_by_email("testuser@example.com") == []


def test_cognito_local_shaped_event_is_handled_like_any_sign_up(users_table: UsersTable) -> None:
    event = run("post-confirmation-cognito-local")
    item = row(users_table, event["request"]["userAttributes"]["sub"])
    assert item["emailVerified"] is False
    assert item["username"] == "testuser@example.com"
    assert item["role"] == "customer"


def test_unknown_trigger_source_is_passed_through(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    event = load_event("post-confirmation-signup-customer")
    event["triggerSource"] = "PreSignUp_SignUp"
    assert triggers.handler(event, None) is event
    assert users_table.get(CUSTOMER_SUB) is None
    [line] = trigger_output.logs()
    assert line["outcome"] == "ignored"


def test_extra_fields_from_configuration_are_set_at_creation_only(
    users_table: UsersTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "USERS_EXTRA_FIELDS", '{"subscriptionTier": "free", "preferences": {"newsletter": true}}'
    )
    run("post-confirmation-signup-customer")
    item = row(users_table, CUSTOMER_SUB)
    assert item["subscriptionTier"] == "free"
    assert item["preferences"] == {"newsletter": True}
    users_table.client.update_item(
        TableName=users_table.name,
        Key=to_dynamo({"user_id": CUSTOMER_SUB}),
        UpdateExpression="SET subscriptionTier = :t",
        ExpressionAttributeValues={":t": {"S": "pro"}},
    )
    run("post-authentication")
    assert row(users_table, CUSTOMER_SUB)["subscriptionTier"] == "pro"


def test_invalid_extra_fields_are_ignored_with_one_error_and_the_sign_up_succeeds(
    users_table: UsersTable, monkeypatch: pytest.MonkeyPatch, trigger_output: TriggerOutput
) -> None:
    monkeypatch.setenv("USERS_EXTRA_FIELDS", '{"role": "admin"}')
    run("post-confirmation-signup-customer")
    item = row(users_table, CUSTOMER_SUB)
    assert item["role"] == "customer"
    lines = trigger_output.logs()
    assert [line["outcome"] for line in lines] == ["created", "created"]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["config_error"] == "InvalidExtraFields"


def test_missing_table_is_a_logged_failure_not_an_exception(
    users_table: UsersTable, monkeypatch: pytest.MonkeyPatch, trigger_output: TriggerOutput
) -> None:
    monkeypatch.setenv("USERS_TABLE", "no-such-table")
    event = run("post-confirmation-signup-customer")
    [line] = trigger_output.logs()
    assert line["outcome"] == "failed"
    assert line["error_code"] == "TableNotFound"
    assert line["user_id"] == event["request"]["userAttributes"]["sub"]
    assert line["level"] == "ERROR"


def test_each_outcome_is_counted_as_an_emf_metric(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    run("post-confirmation-signup-customer")
    run("post-confirmation-signup-customer")
    run("post-authentication")
    text = trigger_output.text()
    for metric in ("UserCreated", "UserAlreadyExisted", "UserRefreshed"):
        assert f'"Name":"{metric}"' in text.replace(" ", "")
    users_table_env_missing = "no-such-table"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("USERS_TABLE", users_table_env_missing)
        run("post-confirmation-signup-customer")
    assert '"Name":"UserWriteFailed"' in trigger_output.text().replace(" ", "")


def test_event_without_attributes_never_raises(trigger_output: TriggerOutput) -> None:
    for event in (
        {},
        {"triggerSource": "PostConfirmation_ConfirmSignUp"},
        [],
        None,
        {"triggerSource": "PostAuthentication_Authentication", "request": {}},
        {"triggerSource": "PostConfirmation_ConfirmSignUp", "request": {"userAttributes": "sub"}},
    ):
        assert triggers.handler(event, None) is event


@pytest.mark.parametrize("pool", [None, "", 42, "not a pool", "x" * 200])
def test_an_event_without_a_user_pool_id_writes_nothing(
    users_table: UsersTable, trigger_output: TriggerOutput, pool: Any
) -> None:
    # Every write is conditioned on the row's pool: without one, nothing is written.
    for source in ("post-confirmation-signup-customer", "post-authentication"):
        event = load_event(source)
        if pool is None:
            del event["userPoolId"]
        else:
            event["userPoolId"] = pool
        assert triggers.handler(event, None) is event
        [line] = trigger_output.logs()
        assert line["outcome"] == "failed"
    assert list(users_table.scan()) == []


def test_a_sign_in_leaves_another_pools_row_alone(
    users_table: UsersTable, trigger_output: TriggerOutput
) -> None:
    run("post-confirmation-signup-customer")
    before = row(users_table, CUSTOMER_SUB)
    event = load_event("post-authentication", sub=CUSTOMER_SUB, name="Someone Else")
    event["userPoolId"] = "us-east-1_OtherPool1"
    trigger_output.logs()  # the sign-up's line
    assert triggers.handler(event, None) is event
    [line] = trigger_output.logs()
    assert line["outcome"] == "not_refreshed"
    assert row(users_table, CUSTOMER_SUB) == before
