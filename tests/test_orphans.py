"""reconcile deletes an orphan row only once AdminGetUser — strongly consistent, unlike
ListUsers — says its user is gone (issue 9, §5). Requests pinned with botocore's Stubber."""

from __future__ import annotations

from typing import Any

from botocore.stub import Stubber

from livekart_users.reconcile import reconcile
from livekart_users.table import UsersTable

from .test_reconcile import POOL, FakeClock, cognito, expect_pages, write_row  # noqa: F401


def not_found(stubber: Stubber, username: str) -> None:
    stubber.add_client_error(
        "admin_get_user",
        "UserNotFoundException",
        "User does not exist.",
        expected_params={"UserPoolId": POOL, "Username": username},
    )


def found(stubber: Stubber, username: str, sub: str) -> None:
    stubber.add_response(
        "admin_get_user",
        {"Username": username, "UserAttributes": [{"Name": "sub", "Value": sub}]},
        {"UserPoolId": POOL, "Username": username},
    )


def run(client: Any, table: UsersTable) -> Any:
    clock = FakeClock()
    return reconcile(
        client,
        table,
        POOL,
        apply=True,
        delete_orphans=True,
        confirm_delete=lambda count: True,
        clock=clock,
        sleep=clock.sleep,
    )


def test_a_user_listusers_missed_keeps_their_row(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    uid = write_row(users_table)["user_id"]
    expect_pages(stubber, [[]])  # ListUsers, eventually consistent, does not list them yet
    found(stubber, uid, uid)
    report = run(client, users_table)
    assert (report.orphans, report.orphans_deleted, report.orphans_kept) == (1, 0, 1)
    assert users_table.get(uid) is not None


def test_a_federated_user_is_asked_by_user_name_and_a_reused_name_is_not_them(
    cognito: tuple[Any, Stubber], users_table: UsersTable
) -> None:
    client, stubber = cognito
    row = write_row(users_table)
    uid = row["user_id"]
    users_table.client.update_item(
        TableName=users_table.name,
        Key={"user_id": {"S": uid}},
        UpdateExpression="SET username = :u",
        ExpressionAttributeValues={":u": {"S": "Google_1234"}},
    )
    expect_pages(stubber, [[]])
    found(stubber, "Google_1234", "someone-else")  # the name now belongs to another user
    not_found(stubber, uid)
    report = run(client, users_table)
    assert (report.orphans_deleted, report.orphans_kept) == (1, 0)
    assert users_table.get(uid) is None
