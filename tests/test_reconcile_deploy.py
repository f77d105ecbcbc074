"""deploy --reconcile-every / destroy / doctor cover the scheduled reconcile, on moto.

moto proves our calls and their order, not AWS's validation (the invocations themselves are
tested in test_scheduled.py on DynamoDB Local).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from click.testing import CliRunner

from livekart_users import doctor
from livekart_users.cli import main
from livekart_users.deploy import destroy, executor, models, planner
from livekart_users.deploy.clients import Clients

from .test_deploy import CODE, clients, deploy, make_pool, target_for  # noqa: F401

SIX_HOURS = 6 * 3600


def statements(document: Any) -> dict[str, dict[str, Any]]:
    if isinstance(document, str):
        document = json.loads(unquote(document))
    return {s["Sid"]: s for s in document["Statement"]}


def test_deploy_creates_the_schedule_the_function_and_its_checkpoint_table(
    clients: Clients,
) -> None:
    target = target_for(make_pool(clients), reconcile_every_seconds=SIX_HOURS)
    deploy(clients, target)
    names = models.ReconcileNames(target)

    rule = clients.events.describe_rule(Name=names.rule)
    assert (rule["ScheduleExpression"], rule["State"]) == ("rate(15 minutes)", "ENABLED")
    [rule_target] = clients.events.list_targets_by_rule(Rule=names.rule)["Targets"]
    assert rule_target["Arn"] == names.function_arn

    function = clients.lambda_.get_function(FunctionName=names.function)
    configuration = function["Configuration"]
    assert configuration["Handler"] == "livekart_users.scheduled.handler"
    assert (configuration["Timeout"], configuration["Role"]) == (900, names.role_arn)
    assert configuration["Environment"]["Variables"] == {
        "USERS_TABLE": target.table,
        "USER_POOL_ID": target.user_pool_id,
        "RECONCILE_STATE_TABLE": names.state_table,
        "RECONCILE_EVERY_SECONDS": str(SIX_HOURS),
        "RECONCILE_RATE": "10",
        "RECONCILE_ERASE_ORPHANS": "",  # never erases unless configured to
        "POWERTOOLS_SERVICE_NAME": "livekart-users",
    }
    concurrency = clients.lambda_.get_function_concurrency(FunctionName=names.function)
    assert concurrency["ReservedConcurrentExecutions"] == 1

    policy = json.loads(clients.lambda_.get_policy(FunctionName=names.function)["Policy"])
    [permission] = policy["Statement"]
    assert permission["Principal"] == {"Service": "events.amazonaws.com"}
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"] == names.rule_arn

    table = clients.dynamodb.describe_table(TableName=names.state_table)["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["run", "part"]

    # Least privilege: this pool, this table (no delete, no AdminGetUser: it never erases),
    # its own checkpoint table and log streams; nothing else.
    document = clients.iam.get_role_policy(
        RoleName=names.role, PolicyName=models.RECONCILE_POLICY_NAME
    )["PolicyDocument"]
    found = statements(document)
    assert set(found) == {"ReadPoolUsers", "HealUserRecords", "OwnCheckpoint", "WriteOwnLogs"}
    assert found["ReadPoolUsers"]["Resource"] == target.pool_arn
    assert sorted(found["ReadPoolUsers"]["Action"]) == [
        "cognito-idp:DescribeUserPool",
        "cognito-idp:ListUsers",
    ]
    assert found["HealUserRecords"]["Resource"] == target.table_arn
    assert sorted(found["HealUserRecords"]["Action"]) == [
        "dynamodb:DescribeTable",
        "dynamodb:PutItem",
        "dynamodb:Scan",
        "dynamodb:UpdateItem",
    ]
    assert found["OwnCheckpoint"]["Resource"] == names.state_table_arn
    assert clients.iam.list_attached_role_policies(RoleName=names.role)["AttachedPolicies"] == []

    # A second deploy plans nothing for it.
    again = planner.plan_deploy(target, clients, code=CODE)
    assert [s for s in again.changes if "reconcile" in s.resource] == []


def test_erasing_orphans_is_configured_explicitly_and_widens_the_role_only_then(
    clients: Clients,
) -> None:
    target = target_for(
        make_pool(clients),
        reconcile_every_seconds=SIX_HOURS,
        reconcile_erase_orphans=True,
        erasure_policy="delete",
    )
    deploy(clients, target)
    names = models.ReconcileNames(target)
    variables = clients.lambda_.get_function_configuration(FunctionName=names.function)[
        "Environment"
    ]["Variables"]
    assert variables["RECONCILE_ERASE_ORPHANS"] == "delete"
    found = statements(
        clients.iam.get_role_policy(RoleName=names.role, PolicyName=models.RECONCILE_POLICY_NAME)[
            "PolicyDocument"
        ]
    )
    assert "cognito-idp:AdminGetUser" in found["ReadPoolUsers"]["Action"]
    assert "dynamodb:GetItem" in found["HealUserRecords"]["Action"]
    assert "dynamodb:DeleteItem" not in found["HealUserRecords"]["Action"]  # tombstones only


def test_without_the_option_deploy_makes_no_scheduled_reconcile(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    plan = deploy(clients, target)
    assert [s for s in plan.steps if "reconcile" in s.resource] == []


def test_destroy_removes_the_schedule_function_role_and_checkpoint_table(clients: Clients) -> None:
    target = target_for(make_pool(clients), reconcile_every_seconds=SIX_HOURS)
    deploy(clients, target)
    names = models.ReconcileNames(target)
    plan = destroy.plan_destroy(target, clients)
    executor.apply(plan, clients, sleep=lambda _: None)
    assert clients.events.list_rules(NamePrefix=names.rule)["Rules"] == []
    assert names.function not in [
        f["FunctionName"] for f in clients.lambda_.list_functions()["Functions"]
    ]
    assert names.role not in [r["RoleName"] for r in clients.iam.list_roles()["Roles"]]
    assert names.state_table not in clients.dynamodb.list_tables()["TableNames"]
    assert target.table in clients.dynamodb.list_tables()["TableNames"]  # the users' data stays
    again = destroy.plan_destroy(target, clients)
    assert [s for s in again.changes if "reconcile" in s.resource] == []


def test_a_period_under_an_hour_is_one_clear_line(clients: Clients) -> None:
    pool_id = make_pool(clients)
    result = CliRunner().invoke(
        main, ["deploy", "--user-pool-id", pool_id, "--reconcile-every", "30m", "--dry-run"]
    )
    assert result.exit_code == 2
    assert "'30m' is not a period of at least an hour: give e.g. 6h or 1d" in result.output
    assert "Traceback" not in result.output


def test_doctor_checks_the_scheduled_reconcile_s_last_run(clients: Clients) -> None:
    target = target_for(make_pool(clients), reconcile_every_seconds=SIX_HOURS)
    deploy(clients, target)
    names = models.ReconcileNames(target)
    found = {r.name: r for r in doctor.run(target, clients)}["reconcile.last-run"]
    assert found.status == doctor.Status.WARN
    assert found.finding == (
        f"the scheduled reconcile {names.function} has not completed a run yet"
    )
    clients.dynamodb.put_item(
        TableName=names.state_table,
        Item={
            "run": {"S": f"{target.user_pool_id}#{target.table}#apply#finished"},
            "part": {"N": "0"},
            "at": {"S": "2026-12-02T09:00:00.000Z"},
        },
    )
    found = {r.name: r for r in doctor.run(target, clients, now=lambda: 1_764_666_000.0 + 3600)}[
        "reconcile.last-run"
    ]
    assert found.status == doctor.Status.PASS
    assert found.finding.startswith(f"the scheduled reconcile {names.function} last completed")
