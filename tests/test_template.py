"""The CloudFormation template: valid for cfn-lint, and the same resources and least privilege
as `deploy` (deploy.models), checked by resolving it with sample parameter values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from click.testing import CliRunner

from livekart_users.cli import main
from livekart_users.deploy import models, template

SAMPLE = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "UserPoolId": "eu-west-1_AbC123",
    "TableName": "shop-users",
    "FunctionName": "shop-users-trigger",
    "RoleName": "shop-users-trigger-role",
    "Architecture": "arm64",
    "LogRetentionDays": "30",
    "MemorySize": "1024",
    "AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms",
    "CreateTable": "no",
    "ErasurePolicy": "anonymize",
    "ReconcileEverySeconds": "86400",
    "RecoveryPeriodDays": "7",
}
TARGET = models.Target(
    user_pool_id="eu-west-1_AbC123",
    region="eu-west-1",
    account="123456789012",
    table="shop-users",
    function="shop-users-trigger",
    role="shop-users-trigger-role",
    alarm_topic_arn="arn:aws:sns:eu-west-1:123456789012:alarms",
)
NO_VALUE = object()


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return template.build()


def resolve(node: Any, parameters: dict[str, str], conditions: dict[str, Any]) -> Any:
    """The template's value as CloudFormation would evaluate it with these parameters."""
    if isinstance(node, list):
        values = [resolve(item, parameters, conditions) for item in node]
        return [v for v in values if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        name = node["Ref"]
        return NO_VALUE if name == "AWS::NoValue" else parameters.get(name, f"<{name}>")
    if set(node) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: parameters[m.group(1)], node["Fn::Sub"])
    if set(node) == {"Fn::GetAtt"}:
        return "<{}.{}>".format(*node["Fn::GetAtt"])
    if set(node) == {"Fn::If"}:
        condition, then, otherwise = node["Fn::If"]
        chosen = then if is_true(conditions[condition], parameters) else otherwise
        return resolve(chosen, parameters, conditions)
    values = {key: resolve(value, parameters, conditions) for key, value in node.items()}
    return {key: value for key, value in values.items() if value is not NO_VALUE}


def is_true(condition: dict[str, Any], parameters: dict[str, str]) -> bool:
    if "Fn::Not" in condition:
        return not is_true(condition["Fn::Not"][0], parameters)
    left, right = (resolve(side, parameters, {}) for side in condition["Fn::Equals"])
    return bool(left == right)


def properties(built: dict[str, Any], resource: str, **changes: str) -> Any:
    parameters = {**SAMPLE, **changes}
    return resolve(built["Resources"][resource]["Properties"], parameters, built["Conditions"])


def test_cfn_lint_finds_nothing_not_even_informational() -> None:
    config = ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])
    assert [str(match) for match in lint(template.render(), config=config)] == []


def test_the_role_may_do_exactly_what_models_role_policy_allows(built: dict[str, Any]) -> None:
    role = properties(built, "Role")
    assert role["AssumeRolePolicyDocument"] == models.trust_policy(TARGET.account)
    [policy] = role["Policies"]
    assert policy["PolicyName"] == models.POLICY_NAME
    assert models.normalise_policy(policy["PolicyDocument"]) == models.normalise_policy(
        models.role_policy(TARGET)
    )


def test_no_policy_allows_a_wildcard_action(built: dict[str, Any]) -> None:
    actions = re.findall(r'"(?:Not)?Action": (\[[^\]]*\]|"[^"]*")', json.dumps(built))
    assert actions
    for action in actions:
        assert "*" not in action


def test_cognito_may_invoke_only_from_the_pool_of_this_account(built: dict[str, Any]) -> None:
    permission = properties(built, "CognitoInvokePermission")
    expected = models.invoke_permission(TARGET)
    del expected["StatementId"]
    assert permission == {**expected, "FunctionName": "<Function.Arn>"}


def test_the_table_is_retained_and_created_only_when_asked(built: dict[str, Any]) -> None:
    table = built["Resources"]["UsersTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    assert built["Parameters"]["CreateTable"]["Default"] == "no"
    condition = built["Conditions"][table["Condition"]]
    assert is_true(condition, {**SAMPLE, "CreateTable": "yes"})
    assert not is_true(condition, SAMPLE)
    props = properties(built, "UsersTable")
    # How long erased users' data stays restorable: a parameter (DynamoDB's default, 35).
    assert props["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True,
        "RecoveryPeriodInDays": "7",
    }
    assert built["Parameters"]["RecoveryPeriodDays"]["Default"] == 35
    assert props["DeletionProtectionEnabled"] is True
    spec = models.table_spec(TARGET)
    assert {k: v for k, v in props.items() if k in spec and k != "Tags"} == {
        k: v for k, v in spec.items() if k != "Tags"
    }


def test_the_function_is_configured_as_deploy_configures_it(built: dict[str, Any]) -> None:
    function = properties(built, "Function")
    assert function["FunctionName"] == TARGET.function
    assert function["Code"] == {"S3Bucket": "<CodeBucket>", "S3Key": "<CodeKey>"}
    assert built["Resources"]["Function"]["DependsOn"] == ["LogGroup"]
    expected = {
        **models.function_settings(TARGET),
        "Role": "<Role.Arn>",
        "MemorySize": str(TARGET.memory_mb),  # parameters resolve as text here
    }
    assert {k: v for k, v in function.items() if k in expected} == expected


def test_the_memory_size_is_a_parameter_with_deploy_s_default(built: dict[str, Any]) -> None:
    assert built["Resources"]["Function"]["Properties"]["MemorySize"] == {"Ref": "MemorySize"}
    parameter = built["Parameters"]["MemorySize"]
    assert parameter["Default"] == models.MEMORY_MB == TARGET.memory_mb
    assert (parameter["MinValue"], parameter["MaxValue"]) == (128, 10240)
    # When the stack creates the table, the function names it (and so waits for it).
    created = properties(built, "Function", CreateTable="yes")
    assert created["Environment"]["Variables"]["USERS_TABLE"] == "<UsersTable>"


def test_logs_are_kept_for_the_retention_period(built: dict[str, Any]) -> None:
    logs = properties(built, "LogGroup")
    assert logs["LogGroupName"] == TARGET.log_group
    assert logs["RetentionInDays"] == "30"
    assert built["Parameters"]["LogRetentionDays"]["Default"] == models.LOG_RETENTION_DAYS


def test_the_alarm_is_the_models_alarm_with_or_without_a_topic(built: dict[str, Any]) -> None:
    alarm = properties(built, "FailedWritesAlarm")
    assert {k: v for k, v in alarm.items() if k != "Tags"} == models.alarm(TARGET)
    without = models.Target(**{**vars(TARGET), "alarm_topic_arn": None})
    expected = {k: v for k, v in models.alarm(without).items() if k != "AlarmActions"}
    alarm = properties(built, "FailedWritesAlarm", AlarmTopicArn="")
    assert {k: v for k, v in alarm.items() if k != "Tags"} == expected


def test_the_outputs_print_the_exact_attach_command(built: dict[str, Any]) -> None:
    command = resolve(built["Outputs"]["AttachCommand"]["Value"], SAMPLE, {})
    assert command == (
        "livekart-users attach --user-pool-id eu-west-1_AbC123 "
        "--function-name shop-users-trigger --region eu-west-1"
    )
    # ...and the CLI takes exactly those options.
    args = command.split()[1:]
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output


def test_template_command_prints_or_writes_the_template(tmp_path: Path) -> None:
    printed = CliRunner().invoke(main, ["template"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == template.build()
    path = tmp_path / "cfn" / "livekart-users.json"
    written = CliRunner().invoke(main, ["template", "--output", str(path)])
    assert written.exit_code == 0, written.output
    assert path.read_text() == template.render()
    assert "AttachCommand" in written.output


def test_default_names_do_not_collide_with_deploys_or_the_guides(built: dict[str, Any]) -> None:
    # CloudFormation does not adopt a resource that exists under its name: a stack created
    # where the guide or deploy ran would fail on the function, role or log group.
    parameters = built["Parameters"]
    taken = {models.DEFAULT_FUNCTION, models.DEFAULT_ROLE}  # deploy's, which are the guide's
    assert parameters["FunctionName"]["Default"] not in taken
    assert parameters["RoleName"]["Default"] not in taken
    defaults = {name: p["Default"] for name, p in parameters.items() if "Default" in p}
    names = properties(built, "Function", **defaults)
    assert names["FunctionName"] != models.DEFAULT_FUNCTION
    log_group = properties(built, "LogGroup", **defaults)["LogGroupName"]
    assert log_group != models.Target("p", "r", "a").log_group
    alarm = properties(built, "FailedWritesAlarm", **defaults)["AlarmName"]
    assert alarm != models.Target("p", "r", "a").alarm_name


# A permission and a queue policy take no tags; the rule carries none of ours (destroy deletes a
# rule only when it is tagged as ours, so it leaves the stack's alone).
UNTAGGED = {"AWS::Lambda::Permission", "AWS::SQS::QueuePolicy", "AWS::Events::Rule"}


def test_every_resource_carries_the_stacks_name_so_destroy_leaves_it(
    built: dict[str, Any],
) -> None:
    for name, resource in built["Resources"].items():
        if resource["Type"] in UNTAGGED:
            continue  # destroy removes none of these: they carry no tag of ours
        tags = {t["Key"]: t["Value"] for t in resource["Properties"]["Tags"]}
        assert tags[models.STACK_TAG] == {"Ref": "AWS::StackName"}, name


def test_detach_is_the_step_before_delete_stack(built: dict[str, Any]) -> None:
    assert "DetachCommand" in built["Description"]
    output = built["Outputs"]["DetachCommand"]
    assert "BEFORE deleting the stack" in output["Description"]
    command = resolve(output["Value"], SAMPLE, {})
    assert command == (
        "livekart-users detach --user-pool-id eu-west-1_AbC123 "
        "--function-name shop-users-trigger --region eu-west-1"
    )
    result = CliRunner().invoke(main, [*command.split()[1:], "--help"])
    assert result.exit_code == 0, result.output


# --- the change handler ------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["anonymize", "delete", "keep"])
def test_the_change_role_is_the_models_least_privilege_for_each_erasure_policy(
    built: dict[str, Any], policy: str
) -> None:
    from dataclasses import replace

    role = properties(built, "ChangeRole", ErasurePolicy=policy)
    [document] = role["Policies"]
    stack = replace(TARGET, erasure_policy=policy, change_prefix=template.CHANGE_PREFIX)
    wanted = models.change_role_policy(stack)
    # The queue's ARN is the resource's own attribute in the template.
    for statement in wanted["Statement"]:
        if statement["Sid"] == "DeadLetters":
            statement["Resource"] = "arn:aws:sqs:eu-west-1:123456789012:" + (
                "livekart-users-stack-changes-eu-west-1_AbC123-dlq"
            )
    assert models.normalise_policy(document["PolicyDocument"]) == models.normalise_policy(wanted)
    assert role["RoleName"] == "livekart-users-stack-changes-eu-west-1_AbC123-role"
    # The confused-deputy condition, as deploy gives it (one trust statement for both roles).
    assert role["AssumeRolePolicyDocument"] == models.trust_policy(TARGET.account)


def test_the_change_rule_matches_this_pool_and_only_the_rule_may_invoke(
    built: dict[str, Any],
) -> None:
    rule = properties(built, "ChangeRule")
    assert rule["EventPattern"] == models.event_pattern(TARGET)
    [target] = rule["Targets"]
    assert target["Arn"] == "<ChangeFunction.Arn>"
    assert target["DeadLetterConfig"] == {"Arn": "<ChangeDeadLetters.Arn>"}
    permission = properties(built, "ChangeInvokePermission")
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == "<ChangeRule.Arn>"
    function = properties(built, "ChangeFunction", ErasurePolicy="delete")
    assert function["Handler"] == "livekart_users.changes.handler"
    assert function["Environment"]["Variables"]["USER_POOL_ID"] == "eu-west-1_AbC123"
    assert function["Environment"]["Variables"]["USERS_ERASURE_POLICY"] == "delete"
    assert function["DeadLetterConfig"] == {"TargetArn": "<ChangeDeadLetters.Arn>"}


# --- the scheduled reconcile ---------------------------------------------------------------


def test_the_scheduled_reconcile_is_there_only_with_a_period_and_never_erases(
    built: dict[str, Any],
) -> None:
    from dataclasses import replace

    condition = built["Conditions"][template.HAS_RECONCILE]
    assert is_true(condition, SAMPLE)
    assert not is_true(condition, {**SAMPLE, "ReconcileEverySeconds": "0"})
    ours = [n for n in built["Resources"] if n.startswith("Reconcile")]
    assert len(ours) == 6
    assert all(built["Resources"][n]["Condition"] == template.HAS_RECONCILE for n in ours)
    stack = replace(TARGET, reconcile_prefix=template.RECONCILE_PREFIX)
    role = properties(built, "ReconcileRole")
    [document] = role["Policies"]
    assert models.normalise_policy(document["PolicyDocument"]) == models.normalise_policy(
        models.reconcile_role_policy(stack)
    )
    function = properties(built, "ReconcileFunction")
    assert function["Handler"] == "livekart_users.scheduled.handler"
    assert function["ReservedConcurrentExecutions"] == 1
    variables = function["Environment"]["Variables"]
    assert variables["RECONCILE_EVERY_SECONDS"] == "86400"
    assert variables["RECONCILE_ERASE_ORPHANS"] == ""
    rule = properties(built, "ReconcileRule")
    assert rule["ScheduleExpression"] == "rate(15 minutes)"
    assert rule["Targets"][0]["Arn"] == "<ReconcileFunction.Arn>"
    permission = properties(built, "ReconcileInvokePermission")
    assert (permission["Principal"], permission["SourceArn"]) == (
        "events.amazonaws.com",
        "<ReconcileRule.Arn>",
    )
