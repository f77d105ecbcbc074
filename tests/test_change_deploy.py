"""deploy / destroy / doctor cover the change handler, on moto.

moto proves our calls and their order, not AWS's validation; the rule's pattern is checked
against the sample events with EventBridge's own TestEventPattern as moto implements it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from livekart_users import doctor
from livekart_users.deploy import destroy, executor, models, planner
from livekart_users.deploy.clients import Clients

from .conftest import EVENTS
from .test_deploy import ACCOUNT, CODE, REGION, clients, deploy, make_pool, target_for  # noqa: F401

SAMPLE_POOL = "us-east-1_EXAMPLE01"
# The sample events name the foreign pool us-east-1_OTHERPOOL.


def sample(kind: str, pool: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (EVENTS / f"change-{kind}.json").read_text().replace(SAMPLE_POOL, pool)
    )
    return event


def statements(document: Any) -> list[dict[str, Any]]:
    return list(models.normalise_policy(document)["Statement"])


def make_trail(clients: Clients) -> None:
    s3 = __import__("boto3").client("s3", region_name=REGION)
    s3.create_bucket(Bucket="trail-bucket")
    clients.cloudtrail.create_trail(Name="org-trail", S3BucketName="trail-bucket")
    clients.cloudtrail.start_logging(Name="org-trail")


def test_deploy_creates_the_rule_permission_and_dead_letter_queue_for_exactly_this_pool(
    clients: Clients,
) -> None:
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    names = models.ChangeNames(target)

    rule = clients.events.describe_rule(Name=names.rule)
    assert rule["State"] == "ENABLED"
    pattern = json.loads(rule["EventPattern"])
    assert pattern == models.event_pattern(target)
    admin_branch, token_branch = pattern["detail"]["$or"]
    assert admin_branch["requestParameters"] == {"userPoolId": [pool_id]}
    assert set(admin_branch["eventName"]) | set(token_branch["eventName"]) == {
        "AdminDeleteUser",
        "DeleteUser",
        "AdminUpdateUserAttributes",
        "UpdateUserAttributes",
        "VerifyUserAttribute",
        "AdminDeleteUserAttributes",
        "DeleteUserAttributes",
        "AdminDisableUser",
        "AdminEnableUser",
    }
    assert pattern["detail"]["errorCode"] == [{"exists": False}]

    [rule_target] = clients.events.list_targets_by_rule(Rule=names.rule)["Targets"]
    assert rule_target["Arn"] == names.function_arn
    assert rule_target["DeadLetterConfig"] == {"Arn": names.queue_arn}

    policy = json.loads(clients.lambda_.get_policy(FunctionName=names.function)["Policy"])
    [permission] = policy["Statement"]
    assert permission["Principal"] == {"Service": "events.amazonaws.com"}
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"] == names.rule_arn

    url = clients.sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    attributes = clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    [queue_statement] = statements(attributes["Attributes"]["Policy"])
    assert queue_statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert queue_statement["Condition"] == {"ArnEquals": {"aws:SourceArn": names.rule_arn}}

    function = clients.lambda_.get_function(FunctionName=names.function)["Configuration"]
    assert function["Handler"] == "livekart_users.changes.handler"
    assert function["Role"] == names.role_arn
    assert function["Environment"]["Variables"] == {
        "USERS_TABLE": target.table,
        "USER_POOL_ID": pool_id,
        "USERS_ERASURE_POLICY": "anonymize",
        "POWERTOOLS_SERVICE_NAME": "livekart-users",
    }


def test_the_new_role_is_least_privilege_and_the_triggers_role_is_unchanged(
    clients: Clients,
) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    names = models.ChangeNames(target)
    document = clients.iam.get_role_policy(
        RoleName=names.role, PolicyName=models.CHANGE_POLICY_NAME
    )["PolicyDocument"]
    granted = {(a, s["Resource"][0]) for s in statements(document) for a in s["Action"]}
    assert granted == {
        ("cognito-idp:ListUsers", target.pool_arn),
        ("cognito-idp:AdminGetUser", target.pool_arn),
        ("dynamodb:GetItem", target.table_arn),
        ("dynamodb:UpdateItem", target.table_arn),
        ("dynamodb:PutItem", target.table_arn),  # tombstones
        ("logs:CreateLogStream", f"{names.log_group_arn}:log-stream:*"),
        ("logs:PutLogEvents", f"{names.log_group_arn}:log-stream:*"),
        ("sqs:SendMessage", names.queue_arn),
    }
    trigger = clients.iam.get_role_policy(RoleName=target.role, PolicyName=models.POLICY_NAME)
    trigger_actions = {a for s in statements(trigger["PolicyDocument"]) for a in s["Action"]}
    assert trigger_actions == {
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    trust = clients.iam.get_role(RoleName=names.role)["Role"]["AssumeRolePolicyDocument"]
    # The same confused-deputy condition as the trigger's role (one role planner for both).
    assert models.normalise_policy(trust) == models.normalise_policy(models.trust_policy(ACCOUNT))


@pytest.mark.parametrize("policy", ["anonymize", "delete", "keep"])
def test_no_policy_grants_delete_item_and_every_one_writes_tombstones(
    clients: Clients, policy: str
) -> None:
    # Erasure never deletes an item: a tombstone (PutItem) blocks a late write's re-create.
    target = target_for(make_pool(clients), erasure_policy=policy)
    actions = {a for s in models.change_role_policy(target)["Statement"] for a in s["Action"]}
    assert "dynamodb:DeleteItem" not in actions
    assert {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:GetItem"} <= actions


@pytest.mark.parametrize(
    ("kind", "matches"),
    [
        ("admin-delete-user", True),
        ("delete-user", True),
        ("admin-update-user-attributes", True),
        ("update-user-attributes", True),
        ("verify-user-attribute", True),
        ("admin-delete-user-attributes", True),
        ("delete-user-attributes", True),
        ("admin-disable-user", True),
        ("admin-enable-user", True),
        ("admin-delete-user-failed", False),
        ("admin-delete-user-other-pool", False),
    ],
)
def test_the_rule_matches_this_pools_successful_calls_only(kind: str, matches: bool) -> None:
    # moto's TestEventPattern answers nothing; its rule matcher (what its PutEvents uses,
    # $or and exists included) stands in for EventBridge's.
    from moto.events.models import EventPattern

    pool_id = "us-east-1_LiveKart1"
    pattern = models.event_pattern(target_for(pool_id))
    matcher = EventPattern(json.dumps(pattern), pattern)
    assert matcher.matches_event(sample(kind, pool_id)) is matches


def test_destroy_removes_the_rule_function_role_and_queue(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    names = models.ChangeNames(target)
    executor.apply(destroy.plan_destroy(target, clients), clients, sleep=lambda _: None)
    assert clients.events.list_rules(NamePrefix=names.rule)["Rules"] == []
    assert clients.lambda_.list_functions()["Functions"] == []
    assert [r["RoleName"] for r in clients.iam.list_roles()["Roles"]] == []
    assert clients.sqs.list_queues().get("QueueUrls", []) == []
    again = destroy.plan_destroy(target, clients)
    assert [s for s in again.changes if "changes" in s.resource] == []


def test_without_a_trail_deploy_succeeds_and_says_changes_wait_for_sign_in(
    clients: Clients,
) -> None:
    target = target_for(make_pool(clients))
    plan = deploy(clients, target)
    [trail] = [s for s in plan.steps if s.resource == "CloudTrail"]
    assert trail.action == "no change"
    # The warning is data (the CLI prints it), not a prefix in a step's reason.
    [notice] = plan.notices
    assert notice.message.startswith("no trail logs management write events in us-east-1")
    assert "aws cloudtrail create-trail" in notice.fix and "start-logging" in notice.fix
    assert clients.events.describe_rule(Name=models.ChangeNames(target).rule)

    make_trail(clients)
    again = planner.plan_deploy(target, clients, code=CODE)
    assert again.notices == []
    [found] = [s for s in again.steps if s.resource == "CloudTrail"]
    assert found.reason == "trail org-trail logs management write events in us-east-1"


def test_doctor_warns_about_a_missing_trail_with_its_fix(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    results = {r.name: r for r in doctor.run(target, clients)}
    assert results["changes.trail"].status == "warn"
    assert "aws cloudtrail create-trail" in str(results["changes.trail"].fix)
    assert results["changes.rule"].status == "pass"

    make_trail(clients)
    results = {r.name: r for r in doctor.run(target, clients)}
    assert results["changes.trail"].status == "pass"


def test_doctor_fails_a_rule_that_matches_more_than_this_pool(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    names = models.ChangeNames(target)
    clients.events.put_rule(
        Name=names.rule,
        EventPattern=json.dumps({"source": ["aws.cognito-idp"]}),
        State="ENABLED",
    )
    results = {r.name: r for r in doctor.run(target, clients)}
    assert results["changes.rule"].status == "fail"
    assert "livekart-users deploy" in str(results["changes.rule"].fix)
