"""Defects a real account would hit and moto cannot show (issue 23): each test pins the AWS
behaviour with the exact requests (botocore's Stubber), or the order of the calls."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from livekart_users.deploy import executor, models, planner, template, trail
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.plan import Call, Plan, Step

from .test_deploy import (  # noqa: F401 (fixture)
    CODE,
    clients,
    guide_setup,
    make_pool,
    managed_policies,
    target_for,
)
from .test_template import SAMPLE, resolve

REGION = "eu-west-1"
ACCOUNT = "111122223333"
MANAGEMENT = "999988887777"  # the organization's management account, which owns its trail


def stubbed(service: str) -> tuple[Any, Stubber]:
    client = boto3.client(
        service, region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


# --- 1. organization and shadow trails --------------------------------------------------------


def trail_entry(name: str, account: str, **extra: Any) -> dict[str, Any]:
    return {
        "Name": name,
        "TrailARN": f"arn:aws:cloudtrail:us-east-1:{account}:trail/{name}",
        "HomeRegion": "us-east-1",
        "IsMultiRegionTrail": True,
        **extra,
    }


def test_an_organization_trail_of_the_management_account_counts_without_reading_it() -> None:
    """From a member account, GetTrailStatus/GetEventSelectors on the organization's trail fail
    (TrailNotFoundException, CloudTrailARNInvalidException): they are not called at all."""
    client, stub = stubbed("cloudtrail")
    org = trail_entry("org-trail", MANAGEMENT, IsOrganizationTrail=True)
    stub.add_response("describe_trails", {"trailList": [org]}, {"includeShadowTrails": True})
    with stub:
        found = trail.find_trail(client, REGION, ACCOUNT)
    stub.assert_no_pending_responses()
    assert (found.found, found.checked, found.owner) == (True, False, MANAGEMENT)
    assert "organization trail org-trail of account 999988887777" in found.describe(REGION)


def test_a_trail_that_cannot_be_read_is_skipped_and_the_next_one_is_used() -> None:
    client, stub = stubbed("cloudtrail")
    shadow = trail_entry("gone", ACCOUNT)
    mine = trail_entry("mine", ACCOUNT)
    stub.add_response("describe_trails", {"trailList": [shadow, mine]})
    stub.add_client_error(
        "get_trail_status", "TrailNotFoundException", expected_params={"Name": shadow["TrailARN"]}
    )
    stub.add_response("get_trail_status", {"IsLogging": True}, {"Name": mine["TrailARN"]})
    stub.add_response(
        "get_event_selectors",
        {"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]},
        {"TrailName": mine["TrailARN"]},
    )
    with stub:
        found = trail.find_trail(client, REGION, ACCOUNT)
    assert (found.name, found.checked) == ("mine", True)


def test_an_unreadable_organization_trail_of_this_account_still_counts_unchecked() -> None:
    client, stub = stubbed("cloudtrail")
    org = trail_entry("org-trail", ACCOUNT, IsOrganizationTrail=True)
    stub.add_response("describe_trails", {"trailList": [org]})
    stub.add_response("get_trail_status", {"IsLogging": True})
    stub.add_client_error("get_event_selectors", "CloudTrailARNInvalidException")
    with stub:
        found = trail.find_trail(client, REGION, ACCOUNT)
    assert (found.name, found.checked) == ("org-trail", False)


def test_other_errors_are_not_swallowed() -> None:
    client, stub = stubbed("cloudtrail")
    stub.add_response("describe_trails", {"trailList": [trail_entry("mine", ACCOUNT)]})
    stub.add_client_error("get_trail_status", "ThrottlingException")
    with stub, pytest.raises(Exception, match="ThrottlingException"):
        trail.find_trail(client, REGION, ACCOUNT)


# --- 4. the CloudFormation template's change handler vs deploy's ------------------------------


def test_the_stack_never_names_a_resource_deploy_made_for_a_real_pool() -> None:
    """Real pool ids are about 20 characters: names built from them are not digested, so
    the template and deploy must differ by prefix, or the stack fails with "already exists"
    in an account that ran deploy."""
    pool_id = "eu-west-1_AbCdEfGhI"
    built = template.build()
    parameters = {**SAMPLE, "UserPoolId": pool_id}

    def name(resource: str, key: str) -> str:
        value = resolve(built["Resources"][resource]["Properties"], parameters, built["Conditions"])
        return str(value[key])

    stack = {
        name("ChangeFunction", "FunctionName"),
        name("ChangeRole", "RoleName"),
        name("ChangeDeadLetters", "QueueName"),
        name("ChangeRule", "Name"),
        name("ChangeLogGroup", "LogGroupName"),
    }
    deployed = models.ChangeNames(models.Target(pool_id, REGION, ACCOUNT))
    ours = {deployed.function, deployed.role, deployed.queue, deployed.rule, deployed.log_group}
    assert stack.isdisjoint(ours), stack & ours
    assert "livekart-users-stack-changes-eu-west-1_AbCdEfGhI-role" in stack
    assert all(len(n) <= 64 for n in stack - {name("ChangeLogGroup", "LogGroupName")})


# --- 8. every partition --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("us-east-1", "aws"),
        ("cn-northwest-1", "aws-cn"),
        ("us-gov-west-1", "aws-us-gov"),
        ("us-iso-east-1", "aws-iso"),
        ("us-isob-east-1", "aws-iso-b"),
        ("eu-isoe-west-1", "aws-iso-e"),
        ("us-isof-south-1", "aws-iso-f"),
        ("eusc-de-east-1", "aws-eusc"),
    ],
)
def test_arns_carry_the_regions_partition(region: str, partition: str) -> None:
    target = models.Target("x_AbCdEfGhI", region, ACCOUNT)
    arns = [
        target.pool_arn,
        target.table_arn,
        target.function_arn,
        target.role_arn,
        target.log_group_arn,
        models.ChangeNames(target).queue_arn,
        models.ChangeNames(target).role_arn,
    ]
    assert {arn.split(":")[1] for arn in arns} == {partition}
    resources = [s["Resource"] for s in models.change_role_policy(target)["Statement"]]
    assert all(r.startswith(f"arn:{partition}:") for r in resources)


# --- 7. adopting the guide's nodejs18.x function ------------------------------------------


def test_adopting_a_nodejs_function_changes_its_runtime_before_its_code(
    managed_policies: None, clients: Clients
) -> None:
    pool_id = make_pool(clients)
    guide_setup(clients, pool_id)
    plan = planner.plan_deploy(target_for(pool_id), clients, code=CODE)
    calls = [
        c.operation
        for s in plan.steps
        for c in s.calls
        if c.params.get("FunctionName") == models.DEFAULT_FUNCTION
        and c.operation.startswith("update_function_")
    ]
    assert calls == ["update_function_configuration", "update_function_code"]
    [configure] = [
        c for s in plan.steps for c in s.calls if c.operation == "update_function_configuration"
    ]
    assert (configure.params["Runtime"], configure.params["Handler"]) == (
        models.RUNTIME,
        models.HANDLER,
    )


# --- 3. the first deploy races IAM --------------------------------------------------------

SEND_MESSAGE = "The provided execution role does not have permissions to call SendMessage on SQS"


def test_creating_the_change_function_waits_while_its_dead_letter_permission_propagates() -> None:
    client, stub = stubbed("lambda")
    fn = models.change_function(models.Target("eu-west-1_AbCdEfGhI", REGION, ACCOUNT))
    create = {"FunctionName": fn.name, **fn.settings, "Code": {"ZipFile": b"z"}}
    stub.add_client_error("create_function", "InvalidParameterValueException", SEND_MESSAGE)
    stub.add_client_error("create_function", "InvalidParameterValueException", SEND_MESSAGE)
    stub.add_response("create_function", {"FunctionName": fn.name}, create)
    pauses: list[float] = []
    plan = Plan(
        models.Target("p", REGION, ACCOUNT),
        [Step("f", "create", "", (Call("lambda_", "create_function", create),))],
    )
    with stub:
        executor.apply(plan, Clients(REGION, lambda_=client), sleep=pauses.append)
    stub.assert_no_pending_responses()
    assert len(pauses) == 2


def test_the_pool_is_attached_before_the_change_handler_is_planned(clients: Clients) -> None:
    """A failure in the change handler's steps must leave sign-ups served."""
    plan = planner.plan_deploy(target_for(make_pool(clients)), clients, code=CODE)
    resources = [s.resource for s in plan.changes]
    attach = next(i for i, r in enumerate(resources) if r.endswith(" triggers"))
    change = [i for i, r in enumerate(resources) if "livekart-users-changes-" in r]
    assert change and min(change) > attach


# --- 5. the change handler can starve sign-ins ------------------------------------------------


def test_the_change_function_is_created_with_reserved_concurrency(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    plan = planner.plan_deploy(target, clients, code=CODE)
    executor.apply(plan, clients, sleep=lambda _: None)
    name = models.ChangeNames(target).function
    found = clients.lambda_.get_function(FunctionName=name)
    assert found["Concurrency"]["ReservedConcurrentExecutions"] == models.CHANGE_CONCURRENCY
    # Changed by hand, deploy puts it back; as it is, the plan has nothing to change for it.
    clients.lambda_.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=50)
    again = planner.plan_deploy(target, clients, code=CODE)
    [step] = [s for s in again.changes if s.resource == f"function {name}"]
    assert step.reason == f"reserved concurrency 50 → {models.CHANGE_CONCURRENCY}"


def test_a_row_naming_its_user_costs_one_admin_get_user_and_no_list_users() -> None:
    """ListUsers draws on the 30 requests/s UserList quota; AdminGetUser on UserRead (120/s)."""
    from livekart_users import pool_users

    client, stub = stubbed("cognito-idp")
    user = {
        "Username": "alice",
        "UserAttributes": [{"Name": "sub", "Value": "sub-1"}],
        "Enabled": True,
        "UserStatus": "CONFIRMED",
    }
    stub.add_response("admin_get_user", user, {"UserPoolId": "p_1", "Username": "alice"})
    with stub:
        found = pool_users.find_user(client, "p_1", "sub-1", username_hint="alice")
    stub.assert_no_pending_responses()
    assert found is not None and found.username == "alice"


def test_a_reused_user_name_falls_back_to_listing_by_sub() -> None:
    from livekart_users import pool_users

    client, stub = stubbed("cognito-idp")
    someone_else = {"Username": "alice", "UserAttributes": [{"Name": "sub", "Value": "sub-2"}]}
    stub.add_response("admin_get_user", someone_else)
    stub.add_response("list_users", {"Users": []})
    with stub:
        assert pool_users.find_user(client, "p_1", "sub-1", username_hint="alice") is None
    stub.assert_no_pending_responses()


# --- 6. dropped change events are counted and alarmed ----------------------------------------


def test_a_dropped_change_event_is_counted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from livekart_users import changes

    monkeypatch.setenv("USER_POOL_ID", "eu-west-1_AbCdEfGhI")
    event = {
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cognito-idp",
        "detail": {"eventSource": "cognito-idp.amazonaws.com", "eventName": "AdminDeleteUser"},
    }  # no additionalEventData.sub: acknowledged, so never retried
    assert changes.handler(event, None)["outcome"] == "dropped"
    emf = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    [metric] = [m for m in emf if "ChangeEventDropped" in m]
    assert metric["ChangeEventDropped"] == [1.0]
    [directive] = metric["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LiveKartUsers"
    assert set(directive["Dimensions"][0]) == {"function_name", "service"}


def test_deploy_alarms_on_dropped_change_events_of_this_pools_handler(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    executor.apply(planner.plan_deploy(target, clients, code=CODE), clients, sleep=lambda _: None)
    names = models.ChangeNames(target)
    [alarm] = clients.cloudwatch.describe_alarms(AlarmNames=[names.alarm])["MetricAlarms"]
    assert alarm["MetricName"] == "ChangeEventDropped"
    assert {"Name": "function_name", "Value": names.function} in alarm["Dimensions"]
    from livekart_users.deploy import destroy

    executor.apply(destroy.plan_destroy(target, clients), clients, sleep=lambda _: None)
    assert clients.cloudwatch.describe_alarms(AlarmNames=[names.alarm])["MetricAlarms"] == []
