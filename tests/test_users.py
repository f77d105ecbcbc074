"""The `users` commands and the table operations under them, on DynamoDB Local.

Each test has a table of its own (the `users_table` fixture, which also points USERS_TABLE and
the DynamoDB endpoint at it), so the commands run exactly as a person would run them.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner

from livekart_users import schema
from livekart_users.cli import main, render
from livekart_users.exceptions import InvalidRecord
from livekart_users.table import UsersTable, to_dynamo

T0 = "2026-01-31T12:00:00.000Z"


def add_user(
    table: UsersTable, role: str = "customer", email: str | None = None, **app: Any
) -> dict[str, Any]:
    """A row as the trigger writes it, then changed by the app (`app`)."""
    sub = str(uuid.uuid4())
    attributes = {"sub": sub, "name": "Some One", "custom:role": role, "email_verified": "true"}
    attributes["email"] = email or f"user-{sub[:8]}@example.com"
    row = schema.new_record(attributes, sub, timestamp=T0)
    row.update(app)
    assert table.create_if_absent(row)
    return row


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- users get / find / list -------------------------------------------------------------


def test_get_prints_the_row_and_json(users_table: UsersTable) -> None:
    row = add_user(users_table, cart=[{"sku": "A1", "qty": Decimal(2)}])
    shown = run("users", "get", row["user_id"])
    assert shown.exit_code == 0, shown.output
    assert row["user_id"] in shown.output and row["email"] in shown.output
    as_json = run("users", "get", row["user_id"], "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.output)["cart"] == [{"sku": "A1", "qty": 2}]
    assert json.loads(as_json.output)["email"] == row["email"]


def test_get_of_an_unknown_id_is_a_clear_message_and_exit_status_1(
    users_table: UsersTable,
) -> None:
    result = run("users", "get", "no-such-user")
    assert result.exit_code == 1
    assert f"no user with id 'no-such-user' in table '{users_table.name}'" in result.output
    assert "Traceback" not in result.output


def test_find_by_email_goes_through_the_index_in_any_case(users_table: UsersTable) -> None:
    row = add_user(users_table, email="Mixed.Case@Example.com")
    add_user(users_table)
    result = run("users", "find", "--email", "  MIXED.case@example.COM ", "--json")
    assert result.exit_code == 0, result.output
    assert [r["user_id"] for r in json_lines(result.output)] == [row["user_id"]]
    table_output = run("users", "find", "--email", "mixed.case@example.com")
    assert row["user_id"] in table_output.output


def test_find_returns_only_verified_addresses_unless_asked(users_table: UsersTable) -> None:
    # GIVEN two rows with one address: one verified, one that claimed it without verifying
    # (Cognito changes `email` at once, with email_verified=false, by default).
    address = f"shared-{uuid.uuid4().hex[:8]}@example.com"
    owner = add_user(users_table, email=address)
    claimer = add_user(users_table, email=address.upper(), emailVerified=False)
    # WHEN looked up by default, THEN only the verified owner is found …
    assert [r["user_id"] for r in users_table.find_by_email(address)] == [owner["user_id"]]
    found = run("users", "find", "--email", address, "--json")
    assert [r["user_id"] for r in json_lines(found.output)] == [owner["user_id"]]
    # … and with --unverified, both.
    both = run("users", "find", "--email", address, "--unverified", "--json")
    assert {r["user_id"] for r in json_lines(both.output)} == {
        owner["user_id"],
        claimer["user_id"],
    }
    lonely = add_user(users_table, emailVerified=False)
    missed = run("users", "find", "--email", lonely["email"])
    assert missed.exit_code == 1
    assert "(--unverified to include unverified addresses)" in missed.output


def test_find_without_a_match_exits_1(users_table: UsersTable) -> None:
    add_user(users_table)
    result = run("users", "find", "--email", "Nobody@Example.com")
    assert result.exit_code == 1
    assert "no user with verified email 'nobody@example.com'" in result.output


def test_list_filters_by_role_and_status_and_stops_at_the_limit(users_table: UsersTable) -> None:
    vendors = {add_user(users_table, "vendor")["user_id"] for _ in range(3)}
    suspended_vendor = add_user(users_table, "vendor", status="suspended")["user_id"]
    customers = {add_user(users_table)["user_id"] for _ in range(2)}
    everyone = vendors | customers | {suspended_vendor}

    listed = json_lines(run("users", "list", "--json").output)
    assert {r["user_id"] for r in listed} == everyone
    by_role = json_lines(run("users", "list", "--role", "vendor", "--json").output)
    assert {r["user_id"] for r in by_role} == vendors | {suspended_vendor}
    both = run("users", "list", "--role", "vendor", "--status", "active", "--json")
    assert {r["user_id"] for r in json_lines(both.output)} == vendors
    limited = json_lines(run("users", "list", "--limit", "2", "--json").output)
    assert len(limited) == 2 and {r["user_id"] for r in limited} <= everyone

    shown = run("users", "list", "--status", "suspended")
    assert shown.exit_code == 0
    assert suspended_vendor in shown.output and "suspended" in shown.output
    none = run("users", "list", "--role", "admin")
    assert (none.exit_code, none.output.strip()) == (0, "no users match")


class CountingClient:
    """A DynamoDB client that counts the Scan requests it sends."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.scans = 0

    def scan(self, **kwargs: Any) -> Any:
        self.scans += 1
        return self._client.scan(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_listing_reads_a_page_at_a_time_and_only_as_far_as_needed(
    users_table: UsersTable,
) -> None:
    vendors = {add_user(users_table, "vendor")["user_id"] for _ in range(5)}
    for _ in range(6):
        add_user(users_table)
    counting = CountingClient(users_table.client)
    table = UsersTable(counting, users_table.name)
    # Filtered pages of two rows: some hold no vendor at all, and the listing goes on.
    assert {r["user_id"] for r in table.scan_where(role="vendor", page_size=2)} == vendors
    assert counting.scans >= 6
    counting.scans = 0
    first = next(table.scan_where(page_size=2))
    assert first["user_id"] and counting.scans == 1


# --- set-role / suspend / activate -------------------------------------------------------


def test_becoming_a_vendor_adds_the_vendor_fields_and_changes_nothing_else(
    users_table: UsersTable,
) -> None:
    before = add_user(users_table, cart=[{"sku": "C3"}], totalOrders=Decimal(4))
    result = run("users", "set-role", before["user_id"], "vendor", "--json")
    assert result.exit_code == 0, result.output
    after = users_table.get(before["user_id"])
    assert after is not None
    schema.validate(after)
    assert after["role"] == "vendor"
    assert {k: after[k] for k in schema.VENDOR_DEFAULTS} == dict(schema.VENDOR_DEFAULTS)
    assert after["updatedAt"] > before["updatedAt"]
    unchanged = set(before) - {"role", "updatedAt"}
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert set(after) == set(before) | set(schema.VENDOR_DEFAULTS)
    assert json.loads(result.output)["role"] == "vendor"


def test_leaving_vendor_keeps_the_store_and_becoming_one_again_overwrites_nothing(
    users_table: UsersTable,
) -> None:
    vendor = add_user(users_table, "vendor", storeName="Spice Hub", totalProducts=Decimal(12))
    uid = vendor["user_id"]
    customer = users_table.set_role(uid, "customer")
    assert customer is not None
    schema.validate(customer)  # a customer row may keep its store data
    assert (customer["role"], customer["storeName"], customer["totalProducts"]) == (
        "customer",
        "Spice Hub",
        Decimal(12),
    )
    again = users_table.set_role(uid, "vendor")
    assert again is not None
    assert (again["storeName"], again["totalProducts"]) == ("Spice Hub", Decimal(12))
    assert {k: v for k, v in again.items() if k not in ("updatedAt",)} == {
        k: v for k, v in vendor.items() if k not in ("updatedAt",)
    }


def test_admin_role_can_be_granted_here_but_unknown_roles_cannot(users_table: UsersTable) -> None:
    row = add_user(users_table)
    granted = run("users", "set-role", row["user_id"], "admin")
    assert granted.exit_code == 0, granted.output
    assert users_table.get(row["user_id"])["role"] == "admin"  # type: ignore[index]
    refused = run("users", "set-role", row["user_id"], "superuser")
    assert refused.exit_code == 2
    assert "superuser" in refused.output
    with pytest.raises(InvalidRecord, match="role: must be one of"):
        users_table.set_role(row["user_id"], "superuser")


def test_suspend_and_activate_change_only_status_and_updated_at(users_table: UsersTable) -> None:
    before = add_user(users_table, wishlist=["W1"])
    uid = before["user_id"]
    suspended = run("users", "suspend", uid, "--json")
    assert suspended.exit_code == 0, suspended.output
    after = users_table.get(uid)
    assert after is not None
    assert after["status"] == "suspended" and after["updatedAt"] > before["updatedAt"]
    assert {k: v for k, v in after.items() if k not in ("status", "updatedAt")} == {
        k: v for k, v in before.items() if k not in ("status", "updatedAt")
    }
    assert run("users", "activate", uid).exit_code == 0
    assert users_table.get(uid)["status"] == "active"  # type: ignore[index]


@pytest.mark.parametrize(
    "args", [("set-role", "vendor"), ("suspend",), ("activate",)], ids=lambda a: a[0]
)
def test_admin_commands_on_an_unknown_user_create_nothing_and_exit_1(
    users_table: UsersTable, args: tuple[str, ...]
) -> None:
    uid = str(uuid.uuid4())
    command, *rest = args
    result = run("users", command, uid, *rest)
    assert result.exit_code == 1
    assert f"no user with id '{uid}'" in result.output and "nothing changed" in result.output
    assert users_table.get(uid) is None


def test_admin_commands_say_they_touch_the_table_only() -> None:
    for command in ("set-role", "suspend", "activate"):
        help_text = " ".join(run("users", command, "--help").output.split())
        assert (
            "Cognito is not touched" in help_text
            or "(AdminDisableUser) is not touched" in help_text
        )


def test_markup_in_user_data_is_shown_as_text(users_table: UsersTable) -> None:
    row = add_user(users_table)
    users_table.client.update_item(
        TableName=users_table.name,
        Key=to_dynamo({"user_id": row["user_id"]}),
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues=to_dynamo({":n": "[bold]Mallory[/bold]"}),
    )
    result = run("users", "get", row["user_id"])
    assert "[bold]Mallory[/bold]" in result.output


# --- erased rows look erased ------------------------------------------------------------------

ERASED_AT = "2026-02-01T09:30:00.000Z"


@pytest.mark.parametrize("columns", [80, 200])
def test_an_erased_row_looks_erased_in_list_get_and_find(
    users_table: UsersTable, columns: int
) -> None:
    # GIVEN a live user, one anonymized and one erased under the keep policy
    live = add_user(users_table)
    anonymized = add_user(users_table)
    kept = add_user(users_table)
    mine = {"user_pool_id": "us-east-1_pMr6t5GFA", "timestamp": ERASED_AT, "adopt_legacy": True}
    assert users_table.anonymize(anonymized["user_id"], **mine)
    assert users_table.mark_deleted(kept["user_id"], **mine)
    env = {"COLUMNS": str(columns)}

    listed = CliRunner().invoke(main, ["users", "list"], env=env)
    got = CliRunner().invoke(main, ["users", "get", anonymized["user_id"]], env=env)
    found = CliRunner().invoke(main, ["users", "find", "--email", kept["email"]], env=env)

    assert listed.exit_code == got.exit_code == found.exit_code == 0, listed.output
    # THEN the erased rows say so, when and by which policy; the live one does not
    blocks = listed.output.split("\n")
    erased_lines = [ln for ln in blocks if "erased" in ln]
    assert not any(live["user_id"] in ln for ln in erased_lines)
    assert any(anonymized["user_id"] in ln for ln in erased_lines)
    assert any(kept["user_id"] in ln for ln in erased_lines)
    assert "(verified)" not in listed.output.split(anonymized["user_id"])[1].split("\n")[1]
    # Its first row (a table), or the line under its title (the lines of a narrow terminal).
    # First of all, before the row's own attributes (deletedAt among them), how and when.
    first = next(ln for ln in got.output.splitlines() if ERASED_AT in ln)
    assert "erased" in first and "policy anonymize" in got.output
    assert got.output.index(first) < got.output.index("cart")
    assert any(kept["user_id"] in ln and "erased" in ln for ln in found.output.splitlines())
    assert f"erased {ERASED_AT}" in found.output
    assert "(keep)" in found.output or "policy keep" in found.output


def test_a_tombstone_reads_as_erased_by_the_delete_policy() -> None:
    tombstone = schema.tombstone(str(uuid.uuid4()), "us-east-1_pMr6t5GFA", ERASED_AT)
    assert render.erasure(tombstone) == (
        f"erased {ERASED_AT} (policy delete: only this tombstone is left)"
    )


@pytest.mark.parametrize("columns", [80, 200])
def test_a_tombstone_looks_erased_in_list_and_get(users_table: UsersTable, columns: int) -> None:
    # The `delete` policy leaves only the key, the pool and when: every reader says "erased".
    gone = add_user(users_table)
    assert users_table.replace_with_tombstone(
        gone["user_id"], user_pool_id="us-east-1_pMr6t5GFA", timestamp=ERASED_AT, adopt_legacy=True
    )
    env = {"COLUMNS": str(columns)}
    listed = CliRunner().invoke(main, ["users", "list"], env=env)
    got = CliRunner().invoke(main, ["users", "get", gone["user_id"]], env=env)
    as_json = CliRunner().invoke(main, ["users", "get", gone["user_id"], "--json"])
    assert listed.exit_code == got.exit_code == as_json.exit_code == 0, listed.output + got.output
    assert any(gone["user_id"] in ln and "erased" in ln for ln in listed.output.splitlines())
    assert "erased" in got.output and ERASED_AT in got.output
    assert "policy delete" in got.output
    assert set(json.loads(as_json.output)) == {"user_id", "userPoolId", "deletedAt", "updatedAt"}
