"""deploy against DynamoDB, Lambda and IAM as they really behave (issue 9, §5).

moto does each change at once, so the exact requests and the waits between them are pinned
with botocore's Stubber: one UpdateTable at a time, each after the table is ACTIVE again (a
new index only needs to have started backfilling); billing mode switched before an index is
added to a PROVISIONED table; point-in-time recovery retried while DynamoDB says it is not
available yet; Lambda's documented waiters after a create and after an update.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import ANY, Stubber

from livekart_users import aws
from livekart_users.deploy import executor, models, planner
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.plan import Call, Plan, Step

from .test_deploy import ACCOUNT, CODE, REGION, clients, make_pool, target_for  # noqa: F401

TABLE = "livekart-users"


def table(status: str = "ACTIVE", index: str | None = None, backfilling: bool = False) -> Any:
    answer: dict[str, Any] = {"TableName": TABLE, "TableStatus": status}
    if index:
        answer["GlobalSecondaryIndexes"] = [
            {"IndexName": "email-index", "IndexStatus": index, "Backfilling": backfilling}
        ]
    return {"Table": answer}


@pytest.fixture
def provisioned_table_steps(clients: Clients) -> list[Step]:
    """deploy's plan for a PROVISIONED table made by hand: no index, no protection, no PITR."""
    clients.dynamodb.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
    )
    plan = planner.plan_deploy(target_for(make_pool(clients)), clients, code=CODE)
    return [s for s in plan.changes if s.resource.startswith("table")]


def stubbed(service: str) -> Iterator[tuple[Any, Stubber]]:
    client = aws.client(service, region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def dynamodb() -> Iterator[tuple[Any, Stubber]]:
    yield from stubbed("dynamodb")


@pytest.fixture
def lambda_() -> Iterator[tuple[Any, Stubber]]:
    yield from stubbed("lambda")


def run(steps: list[Step], **clients_: Any) -> list[float]:
    sleeps: list[float] = []
    target = target_for("us-east-1_AbC123")
    fake = Clients(REGION, session=None)
    for name, client in clients_.items():
        setattr(fake, name, client)
    executor.apply(Plan(target, steps), fake, sleep=sleeps.append, poll_seconds=0)
    return sleeps


def test_a_provisioned_table_is_adopted_one_update_at_a_time(
    provisioned_table_steps: list[Step], dynamodb: tuple[Any, Stubber]
) -> None:
    client, stub = dynamodb
    name = {"TableName": TABLE}
    spec = models.table_spec(target_for("p"))
    # Billing mode first: on a PROVISIONED table an index would need ProvisionedThroughput.
    stub.add_response("describe_table", table(), name)
    stub.add_response("update_table", {}, {**name, "BillingMode": "PAY_PER_REQUEST"})
    stub.add_response("describe_table", table("UPDATING"), name)
    stub.add_response("describe_table", table(), name)
    stub.add_response(
        "update_table",
        {},
        {
            **name,
            "AttributeDefinitions": spec["AttributeDefinitions"],
            "GlobalSecondaryIndexUpdates": [{"Create": spec["GlobalSecondaryIndexes"][0]}],
        },
    )
    stub.add_response("describe_table", table("UPDATING", "CREATING"), name)
    stub.add_response("describe_table", table("ACTIVE", "CREATING"), name)
    stub.add_response("describe_table", table("ACTIVE", "CREATING", backfilling=True), name)
    stub.add_response("update_table", {}, {**name, "DeletionProtectionEnabled": True})
    for _ in range(3):  # a table created moments ago: "not available yet", then it is
        stub.add_client_error(
            "update_continuous_backups",
            "ContinuousBackupsUnavailableException",
            "Backups are being enabled for the table",
        )
    stub.add_response(
        "update_continuous_backups",
        {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED"}},
        {**name, "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}},
    )
    stub.add_response("tag_resource", {}, {"ResourceArn": ANY, "Tags": ANY})

    sleeps = run(provisioned_table_steps, dynamodb=client)
    # Three waits for the table, three backoffs for point-in-time recovery.
    assert len(sleeps) == 6
    assert sleeps[3:] == sorted(sleeps[3:]) and sleeps[3] < sleeps[5]


def test_point_in_time_recovery_gives_up_after_about_two_minutes(
    dynamodb: tuple[Any, Stubber],
) -> None:
    client, stub = dynamodb
    for _ in range(20):
        stub.add_client_error(
            "update_continuous_backups", "ContinuousBackupsUnavailableException", "not yet"
        )
    step = Step("t", "update", "pitr", (planner._enable_point_in_time_recovery(target_for("p")),))
    with pytest.raises(Exception, match="ContinuousBackupsUnavailableException"):
        run([step], dynamodb=client)
    tries = 20 - len(stub._queue)  # type: ignore[attr-defined]
    stub._queue.clear()  # type: ignore[attr-defined]
    assert 4 <= tries <= 10


def function(state: str, update: str | None = None) -> dict[str, Any]:
    configuration: dict[str, Any] = {"FunctionName": "f", "State": state}
    if update:
        configuration["LastUpdateStatus"] = update
    return {"Configuration": configuration}


def test_a_new_function_is_awaited_until_active(lambda_: tuple[Any, Stubber]) -> None:
    client, stub = lambda_
    create = {"FunctionName": "f", "Role": "arn:aws:iam::1:role/r", "Code": {"ZipFile": b"z"}}
    stub.add_response("create_function", {"FunctionName": "f"}, create)
    # function_active_v2 polls GetFunction until State is Active (an update waiter would not
    # look at State, and would stop elsewhere).
    stub.add_response("get_function", function("Pending"), {"FunctionName": "f"})
    stub.add_response("get_function", function("Active"), {"FunctionName": "f"})
    step = Step(
        "function f",
        "create",
        "",
        (
            Call("lambda_", "create_function", create),
            Call("lambda_", "wait_function_active", {"FunctionName": "f"}),
        ),
    )
    run([step], lambda_=client)


def test_an_update_is_awaited_until_successful(lambda_: tuple[Any, Stubber]) -> None:
    client, stub = lambda_
    stub.add_response("update_function_code", {}, {"FunctionName": "f", "ZipFile": b"z"})
    # function_updated_v2: State is Active all along; LastUpdateStatus is what it waits for.
    stub.add_response("get_function", function("Active", "InProgress"), {"FunctionName": "f"})
    stub.add_response("get_function", function("Active", "Successful"), {"FunctionName": "f"})
    stub.add_response(
        "publish_version", {"Version": "7"}, {"FunctionName": "f", "CodeSha256": "sha"}
    )
    stub.add_response(
        "get_function_configuration", {"State": "Active"}, {"FunctionName": "f", "Qualifier": "7"}
    )
    stub.add_response(
        "update_alias", {}, {"FunctionName": "f", "Name": models.ALIAS, "FunctionVersion": "7"}
    )
    step = Step(
        "function f",
        "update",
        "",
        (
            Call("lambda_", "update_function_code", {"FunctionName": "f", "ZipFile": b"z"}),
            Call("lambda_", "wait_function_updated", {"FunctionName": "f"}),
            Call(
                "lambda_",
                "release",
                {"FunctionName": "f", "CodeSha256": "sha", "alias_exists": True},
            ),
        ),
    )
    run([step], lambda_=client)


# --- the execution role's trust ---------------------------------------------------------------


def trust(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


LAMBDA = {
    "Effect": "Allow",
    "Principal": {"Service": "lambda.amazonaws.com"},
    "Action": "sts:AssumeRole",
}


def test_a_trust_policy_with_the_account_condition_and_more_is_left_alone() -> None:
    narrowed = {
        **LAMBDA,
        "Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:*"},
        },
    }
    deny = {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
    assert planner.trust_update(trust(narrowed, deny), ACCOUNT) is None


def test_the_guides_trust_gains_the_account_condition_and_keeps_the_operators() -> None:
    operator = {**LAMBDA, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-abc"}}}
    ec2 = {**LAMBDA, "Principal": {"Service": "ec2.amazonaws.com"}}
    updated = planner.trust_update(trust(operator, ec2), ACCOUNT)
    assert updated == {
        "Version": "2012-10-17",
        "Statement": [
            {
                **LAMBDA,
                "Condition": {
                    "StringEquals": {"aws:PrincipalOrgID": "o-abc", "aws:SourceAccount": ACCOUNT}
                },
            }
        ],
    }


def test_deploy_never_strips_an_operators_trust_condition(clients: Clients) -> None:
    from .test_deploy import deploy

    target = target_for(make_pool(clients))
    deploy(clients, target)
    narrowed = {
        **LAMBDA,
        "Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT},
            "ArnLike": {"aws:SourceArn": target.function_arn},
        },
    }
    clients.iam.update_assume_role_policy(RoleName=target.role, PolicyDocument=trust(narrowed))
    assert planner.plan_deploy(target, clients, code=CODE).changes == []
