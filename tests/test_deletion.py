"""`users delete` and `reconcile --erase-orphans` on cognito-local and DynamoDB Local."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from click.testing import CliRunner

from livekart_users import erasure, schema
from livekart_users.cli import main, render
from livekart_users.local.stack import LocalStack
from tests.test_changes import PERSONAL, World

pytestmark = pytest.mark.slow


@pytest.fixture
def world(stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> World:
    # The commands, like World, go straight to cognito-local: through the stack's proxy their
    # AdminDeleteUser would also reach the change handler, which then races the command to
    # erase the row (that race is said apart, and tested on its own below).
    cognito_local = stack_env.endpoints()["cognito-local"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", cognito_local)
    return World(stack_env, monkeypatch)


def run(world: World, *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(
        main, [*args, "--table", world.table.name], input=stdin, catch_exceptions=False
    )


def user_exists(world: World, username: str) -> bool:
    try:
        world.cognito.admin_get_user(UserPoolId=world.pool, Username=username)
    except world.cognito.exceptions.UserNotFoundException:
        return False
    return True


# --- users delete ------------------------------------------------------------------------


def test_users_delete_removes_the_user_then_erases_the_row_and_is_idempotent(
    world: World,
) -> None:
    sub, username = world.new_user()
    before = world.row(sub)

    first = run(world, "users", "delete", sub, "--user-pool-id", world.pool, "--yes", "--json")

    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {
        "user_id": sub,
        "policy": "anonymize",
        "cognito_user_deleted": True,
        "row": "anonymized",
    }
    assert not user_exists(world, username)
    row = world.row(sub)
    assert [f for f in PERSONAL if f in row] == []
    assert row["totalOrders"] == before["totalOrders"]
    schema.validate(row)

    again = run(world, "users", "delete", sub, "--user-pool-id", world.pool, "--yes", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["row"] == "already_erased"
    assert json.loads(again.output)["cognito_user_deleted"] is False
    assert world.row(sub) == row


def test_users_delete_says_what_it_found_when_the_row_was_erased_already(world: World) -> None:
    sub, _ = world.new_user()
    first = run(world, "users", "delete", sub, "--user-pool-id", world.pool, "--yes")
    erased_at = world.row(sub)["deletedAt"]

    again = run(world, "users", "delete", sub, "--user-pool-id", world.pool, "--yes")

    assert first.exit_code == again.exit_code == 0, again.output
    assert again.output.strip() == (
        f"user {sub}: not in Cognito (already gone); row: already erased by an earlier "
        f"deletion at {erased_at} (policy anonymize)"
    )


def test_the_change_handler_getting_there_first_is_said_as_such() -> None:
    # Cognito's deletion event can reach the change handler between our AdminDeleteUser and
    # our erase: the row is then erased already, and the line says by whom and when.
    done = erasure.Deletion("u-1", "anonymize", cognito_user_deleted=True, row="already_erased")
    found = {"user_id": "u-1", "deletedAt": "2026-12-02T10:00:00.000Z", "role": "customer"}
    assert render.deletion(done, found) == (
        "user u-1: deleted from Cognito; row: already erased by the change handler at "
        "2026-12-02T10:00:00.000Z (policy anonymize)"
    )


def test_users_delete_of_an_id_no_one_knows_exits_1(world: World) -> None:
    unknown = str(uuid.uuid4())
    shown = run(world, "users", "delete", unknown, "--user-pool-id", world.pool, "--yes")
    as_json = run(
        world, "users", "delete", unknown, "--user-pool-id", world.pool, "--yes", "--json"
    )

    assert shown.exit_code == as_json.exit_code == 1
    assert shown.output.strip() == (
        f"not found: no user with id {unknown!r} in pool {world.pool} or table "
        f"{world.table.name!r}: nothing was deleted"
    )
    assert json.loads(as_json.stdout)["exit_code"] == 1


def test_a_deletion_stopped_after_cognito_is_finished_by_running_it_again(world: World) -> None:
    # GIVEN a run that deleted the Cognito user and stopped before the row
    sub, username = world.new_user()
    world.cognito.admin_delete_user(UserPoolId=world.pool, Username=username)
    # WHEN it runs again, THEN the row is erased
    done = erasure.delete_user(
        world.cognito, world.table, world.pool, sub, erasure.Policy.ANONYMIZE
    )
    assert (done.cognito_user_deleted, done.row) == (False, "anonymized")
    assert "email" not in world.row(sub)


def test_users_delete_asks_first_and_a_no_changes_nothing(world: World) -> None:
    sub, username = world.new_user()
    before = world.row(sub)
    refused = CliRunner().invoke(
        main, ["users", "delete", sub, "--user-pool-id", world.pool, "--table", world.table.name]
    )
    # No terminal to ask on: refused with a clear line, nothing done.
    assert refused.exit_code == 2
    assert "pass --yes" in refused.output
    assert user_exists(world, username)
    assert world.row(sub) == before


def test_users_delete_with_the_delete_policy_leaves_only_a_tombstone(world: World) -> None:
    sub, _ = world.new_user()
    result = run(
        world,
        "users",
        "delete",
        sub,
        "--user-pool-id",
        world.pool,
        "--erasure-policy",
        "delete",
        "--yes",
    )
    assert result.exit_code == 0, result.output
    assert "row deleted" in result.output
    assert world.table.get(sub) == schema.tombstone(sub, world.pool, world.row(sub)["deletedAt"])


# --- reconcile -----------------------------------------------------------------------------


def reconcile(world: World, *args: str) -> dict[str, Any]:
    result = run(world, "reconcile", "--user-pool-id", world.pool, "--json", *args)
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.output)
    return report


def test_reconcile_reports_erased_rows_apart_and_erases_only_confirmed_orphans(
    world: World,
) -> None:
    erased, erased_name = world.new_user()
    orphan, orphan_name = world.new_user()
    alive, _ = world.new_user()
    for name in (erased_name, orphan_name):
        world.cognito.admin_delete_user(UserPoolId=world.pool, Username=name)
    world.deliver("admin-delete-user", erased)  # erased by the change handler
    erased_row = world.row(erased)

    dry = reconcile(world)
    erased_ids = {e["user_id"] for e in dry["examples"] if e["category"] == "marked deleted"}
    orphan_ids = {e["user_id"] for e in dry["examples"] if e["category"] == "orphan"}
    assert erased in erased_ids and erased not in orphan_ids
    assert orphan in orphan_ids
    assert dry["erased"] >= 1

    # Without a yes (no terminal), nothing is erased.
    kept = reconcile(world, "--apply", "--erase-orphans")
    assert kept["orphans_erased"] == 0
    assert "email" in world.row(orphan)

    done = reconcile(world, "--apply", "--erase-orphans", "--yes")
    assert done["orphans_erased"] >= 1
    assert done["erasure_policy"] == "anonymize"
    assert [f for f in PERSONAL if f in world.row(orphan)] == []
    assert world.row(erased) == erased_row
    assert "email" in world.row(alive)


def test_delete_orphans_and_erase_orphans_together_is_a_usage_error(world: World) -> None:
    result = CliRunner().invoke(
        main,
        [
            "reconcile",
            "--user-pool-id",
            world.pool,
            "--apply",
            "--delete-orphans",
            "--erase-orphans",
        ],
    )
    assert result.exit_code == 2
    assert "choose one" in result.output
