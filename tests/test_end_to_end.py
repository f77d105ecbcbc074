"""End to end on the local stack: Cognito API calls → cognito-local → our endpoint → the row.

Everything here is real: cognito-local fires the triggers, the endpoint runs our handler in
its own process, and the rows live in DynamoDB Local.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from livekart_users import aws, schema
from livekart_users.local.demo import DemoUser, sign_in, sign_up
from livekart_users.local.stack import CONFIRMATION_CODE, LocalStack
from livekart_users.table import UsersTable, to_dynamo

pytestmark = pytest.mark.slow


def new_user(role: str = "customer", **extra: str) -> DemoUser:
    return DemoUser(f"user-{uuid.uuid4().hex[:8]}@example.com", role, name="Test User", **extra)


def sub_of(stack: LocalStack, email: str) -> str:
    user = aws.client("cognito-idp").admin_get_user(
        UserPoolId=stack.status().user_pool_id, Username=email
    )
    return next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")


def table(stack: LocalStack) -> UsersTable:
    return UsersTable(aws.client("dynamodb"), stack.settings.table)


def invocations_for(stack: LocalStack, sub: str) -> list[dict[str, Any]]:
    return [i for i in stack.invocations() if i["user_id"] == sub]


def register(stack: LocalStack, user: DemoUser) -> dict[str, Any]:
    """Sign up and confirm through Cognito; the user's row."""
    assert sign_up(aws.client("cognito-idp"), str(stack.status().client_id), user)
    row = table(stack).get(sub_of(stack, user.email))
    assert row is not None
    schema.validate(row)
    return row


def app_sets(stack: LocalStack, sub: str, **fields: Any) -> None:
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    values = {f":v{i}": v for i, v in enumerate(fields.values())}
    table(stack).client.update_item(
        TableName=stack.settings.table,
        Key=to_dynamo({"user_id": sub}),
        UpdateExpression="SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=to_dynamo(values),
    )


def test_sign_up_and_confirm_writes_the_row(stack_env: LocalStack) -> None:
    user = new_user(phone_number="+15555550123")
    row = register(stack_env, user)
    assert row["email"] == user.email
    assert row["name"] == "Test User"
    assert row["role"] == "customer"
    assert row["phoneNumber"] == "+15555550123"
    assert row["emailVerified"] is True  # as Cognito does when it verified the email by code
    assert row["lastLoginAt"] is None
    [call] = invocations_for(stack_env, row["user_id"])
    assert call["trigger_source"] == "PostConfirmation_ConfirmSignUp"
    assert call["function"] == stack_env.settings.function
    assert call["function_error"] is None
    assert call["outcome"] == "created"
    assert 0 < call["duration_ms"] < 5000


def test_vendor_and_admin_requests_through_cognito(stack_env: LocalStack) -> None:
    vendor = register(stack_env, new_user("vendor"))
    admin = register(stack_env, new_user("admin"))
    assert vendor["role"] == "vendor"
    assert vendor["storeName"] is None and vendor["totalProducts"] == Decimal(0)
    assert admin["role"] == "customer"


def test_replayed_event_changes_nothing(stack_env: LocalStack) -> None:
    user = new_user()
    row = register(stack_env, user)
    app_sets(
        stack_env,
        row["user_id"],
        cart=[{"sku": "A1"}],
        role="vendor",
        **dict.fromkeys(("storeName", "storeDescription"), "Shop"),
        **dict.fromkeys(("totalProducts", "totalRevenue", "rating", "totalReviews"), Decimal(1)),
    )
    changed = table(stack_env).get(row["user_id"])
    # Cognito may invoke a trigger up to three times for one event: replay it through the
    # Lambda Invoke API, as Cognito would.
    event = {
        "version": "1",
        "region": "us-east-1",
        "userPoolId": stack_env.status().user_pool_id,
        "userName": row["username"],
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "callerContext": {"awsSdkVersion": "test", "clientId": stack_env.status().client_id},
        "request": {
            "userAttributes": {
                "sub": row["user_id"],
                "email": user.email,
                "name": "Replayed Name",
                "custom:role": "customer",
            }
        },
        "response": {},
    }
    answer = aws.client("lambda").invoke(
        FunctionName=stack_env.settings.function, Payload=json.dumps(event).encode()
    )
    assert "FunctionError" not in answer
    returned = json.loads(answer["Payload"].read())
    # The event comes back, as Cognito needs it, with the email marked verified.
    assert returned["request"]["userAttributes"].pop("email_verified") == "true"
    assert returned == event
    assert table(stack_env).get(row["user_id"]) == changed
    assert invocations_for(stack_env, row["user_id"])[-1]["outcome"] == "already_exists"


def test_password_reset_after_the_app_changed_the_row_changes_nothing(
    stack_env: LocalStack,
) -> None:
    user = new_user()
    row = register(stack_env, user)
    app_sets(stack_env, row["user_id"], cart=[{"sku": "B2", "qty": Decimal(1)}], role="admin")
    before = table(stack_env).get(row["user_id"])
    cognito = aws.client("cognito-idp")
    client_id = stack_env.status().client_id
    cognito.forgot_password(ClientId=client_id, Username=user.email)
    cognito.confirm_forgot_password(
        ClientId=client_id,
        Username=user.email,
        ConfirmationCode=CONFIRMATION_CODE,
        Password="New-passw0rd-9",
    )
    assert table(stack_env).get(row["user_id"]) == before
    last = invocations_for(stack_env, row["user_id"])[-1]
    assert last["trigger_source"] == "PostConfirmation_ConfirmForgotPassword"
    assert last["outcome"] == "already_exists"


def test_sign_in_refreshes_identity_and_keeps_what_the_app_set(stack_env: LocalStack) -> None:
    # A vendor the app has since made a customer: the token still claims vendor.
    user = new_user("vendor")
    row = register(stack_env, user)
    app_data = {
        "role": "customer",
        "cart": [{"sku": "C3"}],
        "wishlist": ["D4"],
        "totalOrders": Decimal(2),
        "totalSpent": Decimal("19.99"),
        "storeName": "Old Shop",
        "totalProducts": Decimal(7),
    }
    app_sets(stack_env, row["user_id"], **app_data)
    cognito = aws.client("cognito-idp")
    cognito.admin_update_user_attributes(
        UserPoolId=stack_env.status().user_pool_id,
        Username=user.email,
        UserAttributes=[
            {"Name": "name", "Value": "Renamed User"},
            {"Name": "phone_number", "Value": "+15555550199"},
        ],
    )
    sign_in(cognito, str(stack_env.status().client_id), user.email)
    after = table(stack_env).get(row["user_id"])
    assert after is not None
    schema.validate(after)
    assert after["name"] == "Renamed User"
    assert after["phoneNumber"] == "+15555550199"
    assert after["lastLoginAt"] is not None and after["lastLoginAt"] == after["updatedAt"]
    assert {k: after[k] for k in app_data} == app_data
    assert after["createdAt"] == row["createdAt"]
    last = invocations_for(stack_env, row["user_id"])[-1]
    assert (last["trigger_source"], last["outcome"]) == (
        "PostAuthentication_Authentication",
        "refreshed",
    )


def test_custom_role_is_immutable_and_writable_only_at_sign_up(stack_env: LocalStack) -> None:
    cognito = aws.client("cognito-idp")
    status = stack_env.status()
    pool = cognito.describe_user_pool(UserPoolId=status.user_pool_id)["UserPool"]
    [role] = [a for a in pool["SchemaAttributes"] if a["Name"] == "custom:role"]
    assert role["Mutable"] is False
    client = cognito.describe_user_pool_client(
        UserPoolId=status.user_pool_id, ClientId=status.client_id
    )["UserPoolClient"]
    assert "custom:role" in client["WriteAttributes"]
    assert "ALLOW_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"]
    user = new_user()
    register(stack_env, user)
    with pytest.raises(Exception, match="immutable"):
        cognito.admin_update_user_attributes(
            UserPoolId=status.user_pool_id,
            Username=user.email,
            UserAttributes=[{"Name": "custom:role", "Value": "vendor"}],
        )


def test_user_confirmed_while_dynamodb_was_down_gets_the_row_at_sign_in(
    stack_env: LocalStack,
) -> None:
    user = new_user()
    cognito = aws.client("cognito-idp")
    client_id = str(stack_env.status().client_id)
    stack_env.stop_service("dynamodb")
    try:
        assert sign_up(cognito, client_id, user)  # the sign-up itself still succeeds
    finally:
        stack_env.start_service("dynamodb")
    sub = sub_of(stack_env, user.email)
    [failed] = invocations_for(stack_env, sub)
    assert failed["function_error"] is None
    assert failed["outcome"] == "failed"
    assert failed["duration_ms"] < 2500
    assert table(stack_env).get(sub) is None  # the table survived the restart; the row is missing

    sign_in(cognito, client_id, user.email)
    row = table(stack_env).get(sub)
    assert row is not None
    schema.validate(row)
    assert row["lastLoginAt"] is not None
    assert invocations_for(stack_env, sub)[-1]["outcome"] == "created"


def test_up_again_is_idempotent(stack_env: LocalStack) -> None:
    before = stack_env.status()
    again = stack_env.up()
    assert again.started == []
    assert (again.user_pool_id, again.client_id) == (before.user_pool_id, before.client_id)
    pools = aws.client("cognito-idp").list_user_pools(MaxResults=60)["UserPools"]
    assert len(pools) == 1


def test_logs_shows_the_sign_up_and_the_sign_in(stack_env: LocalStack) -> None:
    """`livekart-users logs` on the local stack reads the endpoint's record."""
    from click.testing import CliRunner

    from livekart_users.cli import main

    user = new_user("vendor")
    register(stack_env, user)
    sign_in(aws.client("cognito-idp"), str(stack_env.status().client_id), user.email)
    sub = sub_of(stack_env, user.email)

    def local(*args: str) -> str:
        outcome = CliRunner().invoke(main, ["logs", "--local-dir", str(stack_env.dir), *args])
        assert outcome.exit_code == 0, outcome.output
        return str(outcome.output)

    def json_lines(output: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    lines = json_lines(local("--json", "--user-id", sub))
    assert [(line["trigger_source"], line["outcome"]) for line in lines] == [
        ("PostConfirmation_ConfirmSignUp", "created"),
        ("PostAuthentication_Authentication", "refreshed"),
    ]
    assert all(line["duration_ms"] > 0 and line["request_id"] for line in lines)
    table = local("--user-id", sub)
    assert "the local stack's record" in table
    assert "created" in table and "refreshed" in table
    assert user.email not in table and "Test User" not in table
    assert [
        line["outcome"]
        for line in json_lines(local("--json", "--outcome", "refreshed", "--user-id", sub))
    ] == ["refreshed"]
