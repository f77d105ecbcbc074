"""The record as pure functions: building, the role policy, validation, extra fields."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from livekart_users import schema
from livekart_users.exceptions import InvalidExtraFields, InvalidRecord

NOW = "2026-01-31T12:00:00.123Z"
SUB = "8f1c2a7e-3b4d-4e5f-9a6b-7c8d9e0f1a2b"


def record(**attributes: str) -> dict[str, object]:
    return schema.new_record({"sub": SUB, **attributes}, "someone", timestamp=NOW)


def test_timestamps_are_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891234, tzinfo=UTC)
    assert schema.format_timestamp(moment) == "2026-03-04T05:06:07.891Z"
    assert schema._is_timestamp(schema.now())


@pytest.mark.parametrize(
    ("claimed", "role"),
    [
        ("customer", "customer"),
        ("vendor", "vendor"),
        ("Vendor ", "vendor"),
        ("admin", "customer"),
        ("ADMIN", "customer"),
        ("superuser", "customer"),
        ("", "customer"),
        (None, "customer"),
    ],
)
def test_self_service_can_only_pick_customer_or_vendor(claimed: str | None, role: str) -> None:
    assert schema.resolve_role(claimed) == role


def test_email_is_lower_cased_and_omitted_when_absent() -> None:
    assert record(email="TestUser@Example.COM")["email"] == "testuser@example.com"
    assert "email" not in record()
    assert "email" not in record(email="   ")


def test_name_comes_from_name_or_given_and_family_name() -> None:
    assert record(name="Test User", given_name="X")["name"] == "Test User"
    assert record(given_name="Asha", family_name="Mehta")["name"] == "Asha Mehta"
    assert record(family_name="Mehta")["name"] == "Mehta"
    assert record()["name"] is None


def test_a_new_customer_row_has_every_field_of_the_guide_and_no_vendor_fields() -> None:
    row = record(email="a@b.example", email_verified="true", phone_number="+15555550100")
    assert row == {
        "user_id": SUB,
        "username": "someone",
        "email": "a@b.example",
        "name": None,
        "role": "customer",
        "status": "active",
        "emailVerified": True,
        "createdAt": NOW,
        "updatedAt": NOW,
        "lastLoginAt": None,
        "phoneNumber": "+15555550100",
        "address": None,
        "profileImage": None,
        "wishlist": [],
        "cart": [],
        "totalOrders": Decimal(0),
        "totalSpent": Decimal(0),
    }


def test_a_new_vendor_row_has_the_store_fields() -> None:
    row = record(**{"custom:role": "vendor"})
    assert {k: row[k] for k in schema.VENDOR_DEFAULTS} == {
        "storeName": None,
        "storeDescription": None,
        "totalProducts": Decimal(0),
        "totalRevenue": Decimal(0),
        "rating": Decimal(0),
        "totalReviews": Decimal(0),
    }
    assert all(type(row[k]) is Decimal for k in ("totalProducts", "totalRevenue", "rating"))


def test_email_verified_is_false_unless_exactly_true() -> None:
    assert record(email_verified="true")["emailVerified"] is True
    assert record(email_verified="false")["emailVerified"] is False
    assert record(email_verified="TRUE ")["emailVerified"] is False
    assert record()["emailVerified"] is False


def test_rows_do_not_share_mutable_defaults() -> None:
    first, second = record(), record()
    first["cart"].append("x")  # type: ignore[attr-defined]
    assert second["cart"] == []


def test_without_a_sub_there_is_no_row() -> None:
    with pytest.raises(InvalidRecord, match="user_id"):
        schema.new_record({"email": "a@b.example"}, "someone", timestamp=NOW)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"role": "owner"}, "role"),
        ({"status": "deleted"}, "status"),
        ({"email": "Mixed@Case.example"}, "email"),
        ({"email": ""}, "email"),
        ({"totalSpent": 1.5}, "totalSpent"),
        ({"totalOrders": "3"}, "totalOrders"),
        ({"cart": None}, "cart"),
        ({"createdAt": "2026-01-31T12:00:00Z"}, "createdAt"),
        ({"createdAt": "2026-02-30T12:00:00.000Z"}, "createdAt"),
        ({"lastLoginAt": "yesterday"}, "lastLoginAt"),
        ({"emailVerified": "true"}, "emailVerified"),
        ({"user_id": ""}, "user_id"),
        ({"name": 7}, "name"),
        ({"nickname": 0.5}, "floats"),
        ({"storeName": 3}, "storeName"),
        ({"role": "vendor"}, "required on a vendor row"),
        ({"tags": set()}, "sets"),
        ({"bio": "x" * (401 * 1024)}, "400 KB"),
    ],
)
def test_validate_names_what_is_wrong(change: dict[str, object], problem: str) -> None:
    row = {**record(), **change}
    with pytest.raises(InvalidRecord) as raised:
        schema.validate(row)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


def test_a_missing_required_field_is_a_problem() -> None:
    row = record()
    del row["cart"]
    assert schema.problems(row) == ["cart: is missing"]


def test_vendor_fields_are_allowed_on_a_customer_row() -> None:
    # A vendor who becomes a customer keeps their store data.
    row = {**record(**{"custom:role": "vendor"}), "role": "customer"}
    schema.validate(row)


def test_app_fields_beyond_the_schema_are_allowed() -> None:
    schema.validate({**record(), "loyaltyPoints": Decimal(12), "cart": [{"sku": "A1"}]})


def test_extra_fields_come_from_configuration() -> None:
    extra = schema.parse_extra_fields(
        '{"subscriptionTier": "free", "preferences": {"newsletter": true}, "credit": 2.5}'
    )
    row = schema.new_record({"sub": SUB}, "u", timestamp=NOW, extra_fields=extra)
    assert row["subscriptionTier"] == "free"
    assert row["preferences"] == {"newsletter": True}
    assert row["credit"] == Decimal("2.5")
    schema.validate(row)


def test_extra_field_defaults_are_copied_per_row() -> None:
    extra = schema.parse_extra_fields('{"preferences": {"newsletter": true}}')
    first = schema.new_record({"sub": SUB}, "u", timestamp=NOW, extra_fields=extra)
    first["preferences"]["newsletter"] = False
    second = schema.new_record({"sub": SUB}, "u", timestamp=NOW, extra_fields=extra)
    assert second["preferences"] == {"newsletter": True}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["a"]', "must be a JSON object"),
        ('{"role": "admin"}', "'role' is a field of the record itself"),
        ('{"cart": []}', "'cart' is a field of the record itself"),
        ('{"1st": 1}', "not a usable field name"),
        ('{"big": "' + "x" * (401 * 1024) + '"}', "400 KB"),
    ],
)
def test_bad_extra_fields_are_refused_with_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(InvalidExtraFields, match="USERS_EXTRA_FIELDS") as raised:
        schema.parse_extra_fields(text)
    assert message in str(raised.value)


def test_no_extra_fields_configured_is_empty() -> None:
    assert schema.parse_extra_fields(None) == {}
    assert schema.parse_extra_fields("  ") == {}
