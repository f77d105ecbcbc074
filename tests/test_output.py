"""Output a person can read at 80 columns, and a script can parse.

Commands run through CliRunner with COLUMNS set, as when output is piped. At 80 columns no id
(user id, pool id, ARN) may be cut across lines: every word of the data must appear whole on
one line of the output. `--json` output parses and has exactly the documented keys.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from livekart_users import schema
from livekart_users.cli import main
from livekart_users.deploy.clients import Clients
from livekart_users.table import UsersTable
from tests.test_deploy import ACCOUNT, REGION, clients, make_pool  # noqa: F401 (fixture)

T0 = "2026-01-31T12:00:00.000Z"
LONG_NAME = "María Fernanda González-Rodríguez de la Santísima Trinidad"


def run(columns: int, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)})


def words(values: Iterable[str]) -> set[str]:
    return {word for value in values for word in str(value).split()}


def assert_whole(output: str, expected: Iterable[str]) -> None:
    """Each word is within one word of `output` (ids have no spaces: a cut id is in none)."""
    found = [token for line in output.splitlines() for token in line.split()]
    for word in expected:
        assert any(word in token for token in found), f"{word!r} is cut:\n{output}"


def assert_fits(output: str, width: int) -> None:
    """Every line fits the width, but for a single word longer than it (left whole)."""
    for line in output.splitlines():
        assert len(line) <= width or len(line.split()) == 1, f"{len(line)} > {width}: {line!r}"


# --- users list ------------------------------------------------------------------------------


def add_user(table: UsersTable, email: str, name: str) -> dict[str, Any]:
    sub = str(uuid.uuid4())
    attributes = {"sub": sub, "name": name, "email": email, "email_verified": "true"}
    row = schema.new_record(attributes, sub, timestamp=T0)
    assert table.create_if_absent(row)
    return row


@pytest.fixture
def many_users(users_table: UsersTable) -> list[dict[str, Any]]:
    return [
        add_user(users_table, f"first.last-{i}@a-rather-long-company-domain.example", LONG_NAME)
        for i in range(3)
    ] + [add_user(users_table, "a@b.co", "Al")]


def test_users_list_at_80_columns_keeps_every_id_whole(
    users_table: UsersTable, many_users: list[dict[str, Any]]
) -> None:
    result = run(80, "users", "list", "--table", users_table.name)

    assert result.exit_code == 0, result.output
    assert_whole(result.output, [row["user_id"] for row in many_users])
    assert_whole(result.output, [row["email"] for row in many_users])
    assert_whole(result.output, words(LONG_NAME.split()))
    assert_fits(result.output, 80)


def test_users_list_is_a_table_when_the_terminal_is_wide(
    users_table: UsersTable, many_users: list[dict[str, Any]]
) -> None:
    result = run(250, "users", "list", "--table", users_table.name)

    assert result.exit_code == 0, result.output
    assert "┃ user_id" in result.output
    for row in many_users:
        (line,) = [ln for ln in result.output.splitlines() if row["user_id"] in ln]
        assert row["email"] in line and row["name"] in line


# --- deploy / destroy / attach ---------------------------------------------------------------

PLAN_KEYS = {
    "command",
    "dry_run",
    "outcome",
    "error",
    "user_pool_id",
    "region",
    "account",
    "steps",
    "changes",
    "applied",
    "refused",
    "notices",  # warnings that change nothing (no trail logs the change events), as data
}


def foreign_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def test_the_deploy_plan_at_80_columns_keeps_ids_whole(clients: Clients) -> None:
    pool_id = make_pool(
        clients, PostConfirmation=foreign_arn("another-teams-post-confirmation-function")
    )
    plan = json.loads(run(80, "deploy", "--user-pool-id", pool_id, "--dry-run", "--json").output)
    shown = run(80, "deploy", "--user-pool-id", pool_id, "--dry-run")

    assert shown.exit_code == 1, shown.output  # a slot held by another function was refused
    steps = plan["steps"]
    assert any(foreign_arn("another-teams") in s["reason"] for s in steps) or plan["refused"]
    assert_whole(shown.output, words(s["resource"] for s in steps))
    assert_whole(shown.output, words(s["reason"] for s in steps))
    assert_whole(shown.output, [pool_id, ACCOUNT])
    assert_fits(shown.output, 80)


def test_deploy_detach_attach_and_destroy_json(clients: Clients) -> None:
    pool_id = make_pool(clients)
    pool_flag = ("--user-pool-id", pool_id)

    planned = run(80, "deploy", *pool_flag, "--dry-run", "--json")
    applied = run(80, "deploy", *pool_flag, "--json")
    again = run(80, "deploy", *pool_flag, "--dry-run", "--json")
    detached = run(80, "detach", *pool_flag, "--json")
    attached = run(80, "attach", *pool_flag, "--json")
    reattached = run(80, "attach", *pool_flag, "--json")
    destroyed = run(80, "destroy", *pool_flag, "--json")

    results = (planned, applied, again, detached, attached, reattached, destroyed)
    assert [r.exit_code for r in results] == [0] * 7, [r.output for r in results]
    plan, done, nothing, off, first, second, gone = (json.loads(r.stdout) for r in results)
    assert set(plan) == set(done) == set(nothing) == set(gone) == PLAN_KEYS
    assert (plan["outcome"], plan["dry_run"], plan["applied"]) == ("planned", True, [])
    changes = [s for s in plan["steps"] if s["action"] != "no change"]
    assert plan["changes"] == len(changes) > 0
    assert set(plan["steps"][0]) == {"resource", "action", "reason"}
    assert (plan["user_pool_id"], plan["account"], plan["region"]) == (pool_id, ACCOUNT, REGION)
    assert (done["outcome"], done["error"], done["applied"]) == ("applied", None, changes)
    assert (nothing["outcome"], nothing["changes"]) == ("no changes", 0)
    assert set(off) == {"user_pool_id", "region", "function", "detached", "outcome"}
    assert off["detached"] == ["PostConfirmation", "PostAuthentication"]
    keys = {"user_pool_id", "region", "function", "function_arn", "changed", "refused", "outcome"}
    assert set(first) == set(second) == keys
    assert (first["changed"], first["refused"]) == (["PostConfirmation", "PostAuthentication"], {})
    assert (second["changed"], second["outcome"]) == ([], "no change")
    assert ":function:" + first["function"] in first["function_arn"]
    assert (gone["command"], gone["outcome"]) == ("destroy", "applied") and gone["applied"]


def test_doctor_at_80_columns_keeps_ids_whole(clients: Clients) -> None:
    pool_id = make_pool(clients, PostConfirmation=foreign_arn("a-legacy-post-confirmation-fn"))
    found = json.loads(run(80, "doctor", "--user-pool-id", pool_id, "--json").stdout)
    shown = run(80, "doctor", "--user-pool-id", pool_id)

    assert shown.exit_code == found["exit_code"] == 1, shown.output
    checks = found["checks"]
    assert any("a-legacy-post-confirmation-fn" in c["finding"] for c in checks)
    assert_whole(shown.output, words(c["finding"] for c in checks))
    assert_whole(shown.output, words(c["fix"] for c in checks if c["fix"]))
    assert_whole(shown.output, [pool_id])
    assert_fits(shown.output, 80)


# --- reconcile ---------------------------------------------------------------------------------


def test_the_reconcile_report_at_80_columns_keeps_ids_whole(clients: Clients) -> None:
    pool_id = clients.cognito.create_user_pool(PoolName="p")["UserPool"]["Id"]
    table = UsersTable(clients.dynamodb, "users")
    table.create_table()
    subs = []
    for i in range(3):
        created = clients.cognito.admin_create_user(
            UserPoolId=pool_id,
            Username=f"user{i}",
            UserAttributes=[{"Name": "email", "Value": f"user{i}@example.com"}],
        )
        attributes = {a["Name"]: a["Value"] for a in created["User"]["Attributes"]}
        subs.append(attributes["sub"])
    orphan, moved = str(uuid.uuid4()), str(uuid.uuid4())
    for sub, email in ((orphan, "gone@example.com"), (moved, "user0@example.com")):
        row = schema.new_record(
            {"sub": sub, "email": email}, sub, timestamp=T0, user_pool_id=pool_id
        )
        table.create_if_absent(row)

    result = run(80, "reconcile", "--user-pool-id", pool_id, "--table", "users")

    assert result.exit_code == 0, result.output
    assert f"same email as user {subs[0]}" in result.output  # an id inside a detail
    assert_whole(result.output, [*subs, orphan, moved, pool_id])
    assert_fits(result.output, 80)


# --- package -----------------------------------------------------------------------------------


def test_package_json_names_the_zip_and_its_digests(tmp_path: Path) -> None:
    output = tmp_path / "trigger.zip"

    result = run(80, "package", "-o", str(output), "--no-bundle-sdk", "--json")

    assert result.exit_code == 0, result.output
    built = json.loads(result.stdout)
    assert set(built) == {
        "output",
        "size",
        "sha256",
        "code_sha256",
        "architecture",
        "bundle_sdk",
        "distributions",
    }
    data = output.read_bytes()
    assert (built["output"], built["size"]) == (str(output), len(data))
    assert built["sha256"] == hashlib.sha256(data).hexdigest()
    assert (built["architecture"], built["bundle_sdk"]) == ("arm64", False)
    assert "aws-lambda-powertools" in {n.lower().replace("_", "-") for n in built["distributions"]}


def test_the_consoles_follow_columns_at_each_print(monkeypatch: pytest.MonkeyPatch) -> None:
    from livekart_users.cli import common

    for columns in (97, 80):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert common.console.width == common.errors.width == columns
