"""doctor: every broken setup on moto names its failing check and the fix; the local stack
only passes and skips; --fix goes through deploy and leaves nothing failing.

Each moto test builds the healthy setup (what deploy makes, written out by hand here so the
checks are not tested against the code that fixes them), breaks one thing, and looks at the
one check that must catch it.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from click.testing import CliRunner
from moto import mock_aws

from livekart_users import doctor
from livekart_users.cli import main
from livekart_users.deploy import models
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.doctor import Status
from livekart_users.local.stack import LocalStack

REGION = "us-east-1"
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
SETTINGS = ("USERS_TABLE", "LIVEKART_FUNCTION", "LIVEKART_ROLE", "USERS_EXTRA_FIELDS")


def tiny_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(
            "livekart_users/triggers.py", "def handler(event, context):\n    return event\n"
        )
    return out.getvalue()


@pytest.fixture(scope="module")
def moto_clients() -> Clients:
    """Built once: moto intercepts clients made before a mock starts, and building seven
    clients costs more than most of these tests."""
    saved = dict(os.environ)
    try:
        for variable in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
            del os.environ[variable]
        os.environ["AWS_DEFAULT_REGION"] = REGION
        return Clients.create(REGION)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the environment that could point elsewhere or rename anything."""
    for variable in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(variable)
    for variable in (*SETTINGS, "LIVEKART_USER_POOL_ID", "LIVEKART_LOCAL_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture
def clients(moto_clients: Clients, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    _no_overrides(monkeypatch)
    with mock_aws():
        yield moto_clients


@pytest.fixture
def guide(moto_clients: Clients, monkeypatch: pytest.MonkeyPatch) -> Iterator[Target]:
    """The original guide's setup, on a moto that knows AWS's managed policies."""
    _no_overrides(monkeypatch)
    with mock_aws(config={"iam": {"load_aws_managed_policies": True}}):
        yield guide_setup(moto_clients)


def healthy_setup(clients: Clients) -> Target:
    """Everything as deploy makes it."""
    cognito = clients.cognito
    pool_id = cognito.create_user_pool(
        PoolName="livekart",
        Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": False}],
    )["UserPool"]["Id"]
    cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="livekart-web", WriteAttributes=["email", "custom:role"]
    )
    # An alarm that notifies someone: deploy's own, given --alarm-topic-arn.
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="ops")["TopicArn"]
    target = Target(pool_id, REGION, clients.account(), alarm_topic_arn=topic)
    clients.dynamodb.create_table(**models.table_spec(target))
    clients.dynamodb.update_continuous_backups(
        TableName=target.table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    clients.iam.create_role(
        RoleName=target.role, AssumeRolePolicyDocument=json.dumps(models.trust_policy())
    )
    put_policy(clients, target, models.role_policy(target), models.POLICY_NAME)
    clients.logs.create_log_group(logGroupName=target.log_group)
    clients.lambda_.create_function(
        FunctionName=target.function,
        Code={"ZipFile": tiny_zip()},
        **models.function_settings(target),
    )
    clients.lambda_.add_permission(FunctionName=target.function, **models.invoke_permission(target))
    clients.cloudwatch.put_metric_alarm(**models.alarm(target))
    set_triggers(clients, target, dict.fromkeys(models.TRIGGER_SLOTS, target.function_arn))
    change_events_setup(clients, target)
    return target


def change_events_setup(clients: Clients, target: Target) -> None:
    """The change handler's rule (as deploy makes it) and a trail logging management events."""
    names = models.ChangeNames(target)
    clients.events.put_rule(Name=names.rule, EventPattern=json.dumps(models.event_pattern(target)))
    clients.events.put_targets(Rule=names.rule, Targets=[models.rule_target(target)])
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="org-trail-logs")
    clients.cloudtrail.create_trail(Name="org-trail", S3BucketName="org-trail-logs")
    clients.cloudtrail.start_logging(Name="org-trail")


def guide_setup(clients: Clients) -> Target:
    """The original setup guide, step by step: Node.js 18, AWSLambdaBasicExecutionRole plus
    PutItem/GetItem on any account's table, AWS_REGION set, a wildcard-account permission,
    only the Post Confirmation trigger, a mutable custom:role, no alarm, no log group."""
    cognito = clients.cognito
    pool_id = cognito.create_user_pool(
        PoolName="livekart",
        Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="livekart-web", WriteAttributes=["email", "custom:role"]
    )
    target = Target(pool_id, REGION, clients.account())
    spec = models.table_spec(target)
    del spec["DeletionProtectionEnabled"], spec["Tags"]
    clients.dynamodb.create_table(**spec)
    role = clients.iam.create_role(
        RoleName=target.role, AssumeRolePolicyDocument=json.dumps(models.trust_policy())
    )["Role"]
    clients.iam.attach_role_policy(RoleName=target.role, PolicyArn=BASIC_EXECUTION)
    guide_policy = allow(
        ["dynamodb:PutItem", "dynamodb:GetItem"],
        "arn:aws:dynamodb:us-east-1:*:table/livekart-users",
    )
    put_policy(clients, target, guide_policy, "livekart-users-dynamodb")
    clients.lambda_.create_function(
        FunctionName=target.function,
        Runtime="nodejs18.x",
        Role=role["Arn"],
        Handler="postConfirmation.handler",
        Code={"ZipFile": tiny_zip()},
        Environment={"Variables": {"USERS_TABLE": "livekart-users", "AWS_REGION": "us-east-1"}},
    )
    clients.lambda_.add_permission(
        FunctionName=target.function,
        StatementId="AllowCognitoInvoke",
        Action="lambda:InvokeFunction",
        Principal="cognito-idp.amazonaws.com",
        SourceArn=f"arn:aws:cognito-idp:us-east-1:*:userpool/{pool_id}",
    )
    set_triggers(clients, target, {"PostConfirmation": target.function_arn})
    return target


def allow(actions: list[str], resource: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": resource}],
    }


def put_policy(clients: Clients, target: Target, document: dict[str, Any], name: str) -> None:
    clients.iam.put_role_policy(
        RoleName=target.role, PolicyName=name, PolicyDocument=json.dumps(document)
    )


def set_triggers(clients: Clients, target: Target, config: dict[str, str]) -> None:
    clients.cognito.update_user_pool(UserPoolId=target.user_pool_id, LambdaConfig=config)


def set_function(clients: Clients, target: Target, **changes: Any) -> None:
    clients.lambda_.update_function_configuration(FunctionName=target.function, **changes)


def results(clients: Clients, target: Target, **options: Any) -> dict[str, doctor.Result]:
    return {r.name: r for r in doctor.run(target, clients, **options)}


def result(clients: Clients, target: Target, name: str) -> doctor.Result:
    return results(clients, target)[name]


def deploy_fix(target: Target) -> str:
    return f"livekart-users deploy --user-pool-id {target.user_pool_id}"


@pytest.fixture
def target(clients: Clients) -> Target:
    return healthy_setup(clients)


# --- the healthy setup ------------------------------------------------------------------------


def test_the_setup_deploy_makes_passes_every_check(clients: Clients, target: Target) -> None:
    found = results(clients, target)
    assert [r.name for r in found.values()] == [c.name for c in doctor.CHECKS]
    assert {n: r.status for n, r in found.items() if r.status != Status.PASS} == {
        "probe": Status.SKIP,
        # No scheduled reconcile unless deploy --reconcile-every (test_reconcile_deploy.py).
        "reconcile.last-run": Status.SKIP,
    }
    assert all(r.fix is None for r in found.values())
    assert doctor.exit_status(found.values()) == 0


def test_each_resource_is_read_once_per_run(clients: Clients, target: Target) -> None:
    calls: Counter[tuple[str, str, str]] = Counter()

    def count(service: str) -> Any:
        def record(model: Any, params: Any, **_: Any) -> None:
            calls[(service, model.name, json.dumps(params, sort_keys=True, default=str))] += 1

        return record

    for service in ("iam", "lambda_", "logs", "cloudwatch", "dynamodb", "cognito"):
        client = getattr(clients, service)
        client.meta.events.register("before-call.*.*", count(service))
    doctor.run(target, clients)
    assert calls and max(calls.values()) == 1, [c for c, n in calls.items() if n > 1]
    assert ("cognito", "DescribeUserPool") in {(s, op) for s, op, _ in calls}


# --- the table ----------------------------------------------------------------------------


def test_a_missing_table_fails_and_deploy_creates_it(clients: Clients, target: Target) -> None:
    clients.dynamodb.update_table(TableName=target.table, DeletionProtectionEnabled=False)
    clients.dynamodb.delete_table(TableName=target.table)
    found = results(clients, target)
    assert found["table"].status == Status.FAIL
    assert (
        found["table"].finding == "table livekart-users does not exist: every trigger write fails"
    )
    assert found["table"].fix == deploy_fix(target)
    assert found["table.key"].status == Status.SKIP
    assert found["table.email-index"].finding == "table livekart-users does not exist"


def test_a_table_keyed_otherwise_fails(clients: Clients, target: Target) -> None:
    clients.dynamodb.create_table(
        TableName="users-by-id",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    found = result(clients, replace(target, table="users-by-id"), "table.key")
    assert found.status == Status.FAIL
    assert "key is id (S, HASH), not partition key user_id (S) alone" in found.finding
    assert found.fix and "USERS_TABLE=<new table>" in found.fix


@pytest.mark.parametrize("projection", [None, "KEYS_ONLY"])
def test_an_email_index_missing_or_not_projecting_all_fails(
    clients: Clients, target: Target, projection: str | None
) -> None:
    spec = models.table_spec(replace(target, table="users-2"))
    del spec["DeletionProtectionEnabled"]
    if projection:
        spec["GlobalSecondaryIndexes"][0]["Projection"] = {"ProjectionType": projection}
    else:
        del spec["GlobalSecondaryIndexes"]
        spec["AttributeDefinitions"] = spec["AttributeDefinitions"][:1]
    clients.dynamodb.create_table(**spec)
    found = result(clients, replace(target, table="users-2"), "table.email-index")
    assert found.status == Status.FAIL
    if projection:
        assert "projection KEYS_ONLY" in found.finding
        assert found.fix and found.fix.startswith("delete the index")
    else:
        assert found.finding == "no GSI email-index: users cannot be found by email"
        assert found.fix == deploy_fix(target)


def test_point_in_time_recovery_and_deletion_protection_off_warn(
    clients: Clients, target: Target
) -> None:
    clients.dynamodb.update_continuous_backups(
        TableName=target.table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )
    clients.dynamodb.update_table(TableName=target.table, DeletionProtectionEnabled=False)
    found = results(clients, target)
    assert found["table.point-in-time-recovery"].status == Status.WARN
    assert found["table.deletion-protection"].status == Status.WARN
    assert found["table.deletion-protection"].fix == deploy_fix(target)
    assert doctor.exit_status(found.values()) == 0  # warnings allowed


# --- the role -----------------------------------------------------------------------------


def test_rows_of_other_pools_are_counted_and_rows_without_a_pool_warn(
    clients: Clients, target: Target
) -> None:
    def put(sub: str, pool: str | None) -> None:
        item = {"user_id": {"S": sub}}
        if pool:
            item["userPoolId"] = {"S": pool}
        clients.dynamodb.put_item(TableName=target.table, Item=item)

    put("mine", target.user_pool_id)
    put("theirs-1", "us-east-1_OtherPool1")
    put("theirs-2", "us-east-1_OtherPool1")
    shared = results(clients, target)["table.pools"]
    assert shared.status == Status.PASS  # a count, not a fault
    assert shared.finding == (
        "1 row of this pool, 2 of pool us-east-1_OtherPool1: the table is shared, each row "
        "records its pool"
    )
    put("legacy", None)
    legacy = results(clients, target)["table.pools"]
    assert legacy.status == Status.WARN
    assert "1 row records no pool" in legacy.finding
    assert legacy.fix is not None and "reconcile" in legacy.fix


def test_a_missing_role_fails(clients: Clients, target: Target) -> None:
    clients.iam.delete_role_policy(RoleName=target.role, PolicyName=models.POLICY_NAME)
    clients.iam.delete_role(RoleName=target.role)
    found = results(clients, target)
    assert found["role"].status == Status.FAIL
    assert found["role"].finding == f"role {target.role} does not exist"
    assert found["role.grants"].status == found["role.least-privilege"].status == Status.SKIP


def test_a_role_trusting_more_than_lambda_fails(clients: Clients, target: Target) -> None:
    trust = models.trust_policy()
    trust["Statement"].append(
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
            "Action": "sts:AssumeRole",
        }
    )
    clients.iam.update_assume_role_policy(RoleName=target.role, PolicyDocument=json.dumps(trust))
    found = result(clients, target, "role")
    assert found.status == Status.FAIL
    assert "trusts more than Lambda" in found.finding
    assert "arn:aws:iam::210987654321:root" in found.finding


def test_a_role_that_cannot_update_the_table_fails(clients: Clients, target: Target) -> None:
    policy = models.role_policy(target)
    policy["Statement"][0]["Action"] = ["dynamodb:PutItem"]
    put_policy(clients, target, policy, models.POLICY_NAME)
    found = result(clients, target, "role.grants")
    assert found.status == Status.FAIL
    assert found.finding == f"role {target.role} cannot UpdateItem on livekart-users"
    assert found.fix == deploy_fix(target)


def test_the_guides_managed_policy_and_wildcard_account_fail(
    moto_clients: Clients, guide: Target
) -> None:
    clients, target = moto_clients, guide
    found = results(clients, target)
    broad = found["role.least-privilege"]
    assert broad.status == Status.FAIL
    assert "managed policy AWSLambdaBasicExecutionRole" in broad.finding
    assert "wildcard resource arn:aws:dynamodb:us-east-1:*:table/livekart-users" in broad.finding
    assert "wildcard resource *" in broad.finding  # the managed policy's logs:* on everything
    assert broad.fix == deploy_fix(target)
    # PutItem and GetItem: the guide's role cannot refresh a row at sign-in.
    assert found["role.grants"].finding == f"role {target.role} cannot UpdateItem on livekart-users"


def test_a_wildcard_action_fails(clients: Clients, target: Target) -> None:
    put_policy(clients, target, allow(["dynamodb:*"], target.table_arn), "anything-on-the-table")
    found = result(clients, target, "role.least-privilege")
    assert found.status == Status.FAIL
    assert found.finding == "broader than the trigger needs: wildcard action dynamodb:*"


def test_an_extra_action_warns(clients: Clients, target: Target) -> None:
    put_policy(clients, target, allow(["dynamodb:GetItem"], target.table_arn), "reads")
    found = result(clients, target, "role.least-privilege")
    assert found.status == Status.WARN
    assert found.finding == "more than the trigger needs: dynamodb:GetItem"
    assert found.fix == deploy_fix(target)


# --- the function -------------------------------------------------------------------------


def test_a_missing_function_fails_and_its_checks_skip(clients: Clients, target: Target) -> None:
    clients.lambda_.delete_function(FunctionName=target.function)
    found = results(clients, target)
    assert found["function"].status == Status.FAIL
    assert found["function"].fix == deploy_fix(target)
    for name in ("function.runtime", "function.timeout", "permission"):
        assert found[name].status == Status.SKIP
        assert found[name].finding == f"function {target.function} does not exist"


def test_the_guides_nodejs_18_runtime_fails(clients: Clients, target: Target) -> None:
    set_function(clients, target, Runtime="nodejs18.x")
    found = result(clients, target, "function.runtime")
    assert found.status == Status.FAIL
    assert (
        found.finding == "runtime nodejs18.x is a deprecated runtime; the trigger needs python3.13"
    )
    assert found.fix == deploy_fix(target)


def test_another_handler_fails(clients: Clients, target: Target) -> None:
    set_function(clients, target, Handler="postConfirmation.handler")
    found = result(clients, target, "function.handler")
    assert found.status == Status.FAIL
    assert (
        found.finding == "handler postConfirmation.handler is not livekart_users.triggers.handler"
    )


def test_a_function_running_as_another_role_fails(clients: Clients, target: Target) -> None:
    other = clients.iam.create_role(
        RoleName="admin-ish", AssumeRolePolicyDocument=json.dumps(models.trust_policy())
    )["Role"]["Arn"]
    set_function(clients, target, Role=other)
    found = result(clients, target, "function.role")
    assert found.status == Status.FAIL
    assert found.finding == f"runs as role {other}, not {target.role}"


def test_users_table_naming_another_table_fails(clients: Clients, target: Target) -> None:
    set_function(clients, target, Environment={"Variables": {"USERS_TABLE": "users-staging"}})
    found = result(clients, target, "function.environment")
    assert found.status == Status.FAIL
    assert found.finding == "USERS_TABLE=users-staging, not livekart-users"


def test_the_guides_reserved_aws_region_fails(clients: Clients, target: Target) -> None:
    variables = {**models.environment(target), "AWS_REGION": "us-east-1"}
    set_function(clients, target, Environment={"Variables": variables})
    found = result(clients, target, "function.reserved-variables")
    assert found.status == Status.FAIL
    assert found.finding.startswith("sets AWS_REGION, reserved by Lambda")
    assert found.fix == deploy_fix(target)


def test_a_timeout_above_four_seconds_fails(clients: Clients, target: Target) -> None:
    set_function(clients, target, Timeout=10)
    found = result(clients, target, "function.timeout")
    assert found.status == Status.FAIL
    assert found.finding.startswith("timeout 10 s: Cognito gives a trigger 5 s including")


# --- the invoke permission ----------------------------------------------------------------


def test_no_invoke_permission_fails_every_sign_up(clients: Clients, target: Target) -> None:
    clients.lambda_.remove_permission(
        FunctionName=target.function, StatementId=target.permission_id
    )
    found = result(clients, target, "permission")
    assert found.status == Status.FAIL
    assert found.finding == (
        f"no permission lets cognito-idp.amazonaws.com invoke {target.function} from "
        f"{target.user_pool_id}: every sign-up fails with AccessDeniedException"
    )
    assert found.fix == deploy_fix(target)


def test_a_permission_for_another_pool_fails(clients: Clients, target: Target) -> None:
    clients.lambda_.remove_permission(
        FunctionName=target.function, StatementId=target.permission_id
    )
    other = replace(target, user_pool_id="us-east-1_Other")
    clients.lambda_.add_permission(FunctionName=target.function, **models.invoke_permission(other))
    found = result(clients, target, "permission")
    assert found.status == Status.FAIL
    assert f"(it allows only {other.pool_arn})" in found.finding


def test_the_guides_wildcard_account_permission_warns(clients: Clients, target: Target) -> None:
    clients.lambda_.remove_permission(
        FunctionName=target.function, StatementId=target.permission_id
    )
    clients.lambda_.add_permission(
        FunctionName=target.function,
        StatementId="AllowCognitoInvoke",
        Action="lambda:InvokeFunction",
        Principal="cognito-idp.amazonaws.com",
        SourceArn=f"arn:aws:cognito-idp:us-east-1:*:userpool/{target.user_pool_id}",
    )
    found = result(clients, target, "permission")
    assert found.status == Status.WARN
    assert found.finding == (
        f"AllowCognitoInvoke allows pool {target.user_pool_id} of any account (SourceArn "
        f"arn:aws:cognito-idp:us-east-1:*:userpool/{target.user_pool_id}); "
        "AllowCognitoInvoke has no SourceAccount"
    )
    assert found.fix == deploy_fix(target)


def test_a_permission_without_source_account_warns(clients: Clients, target: Target) -> None:
    clients.lambda_.remove_permission(
        FunctionName=target.function, StatementId=target.permission_id
    )
    exact = models.invoke_permission(target)
    del exact["SourceAccount"]
    clients.lambda_.add_permission(FunctionName=target.function, **exact)
    found = result(clients, target, "permission")
    assert found.status == Status.WARN
    assert found.finding == f"{target.permission_id} has no SourceAccount"


# --- the pool -----------------------------------------------------------------------------


@pytest.mark.parametrize("slot", models.TRIGGER_SLOTS)
def test_a_missing_trigger_fails(clients: Clients, target: Target, slot: str) -> None:
    others = [s for s in models.TRIGGER_SLOTS if s != slot]
    set_triggers(clients, target, dict.fromkeys(others, target.function_arn))
    name = (
        "triggers.post-confirmation"
        if slot == "PostConfirmation"
        else "triggers.post-authentication"
    )
    found = result(clients, target, name)
    assert found.status == Status.FAIL
    assert found.finding.startswith("no Post ")
    assert found.fix == deploy_fix(target)


def legacy_function(clients: Clients, target: Target) -> str:
    """Another team's function (it exists), whose ARN is returned."""
    answer = clients.lambda_.create_function(
        FunctionName="legacy-post-confirmation",
        Code={"ZipFile": tiny_zip()},
        **models.function_settings(target),
    )
    return str(answer["FunctionArn"])


def test_a_trigger_of_another_function_fails_naming_it(clients: Clients, target: Target) -> None:
    legacy = legacy_function(clients, target)
    set_triggers(
        clients, target, {"PostConfirmation": legacy, "PostAuthentication": target.function_arn}
    )
    found = result(clients, target, "triggers.post-confirmation")
    assert found.status == Status.FAIL
    assert (
        found.finding == f"Post Confirmation runs legacy-post-confirmation, not {target.function}"
    )
    assert (
        found.fix == f"{deploy_fix(target)} --force (replaces legacy-post-confirmation's trigger)"
    )


@pytest.mark.parametrize("whose", ["ours", "another"])
def test_a_trigger_naming_a_missing_function_fails(
    clients: Clients, target: Target, whose: str
) -> None:
    gone = (
        target.function_arn
        if whose == "ours"
        else target.function_arn.replace(target.function, "deleted-by-hand")
    )
    if whose == "ours":
        clients.lambda_.delete_function(FunctionName=target.function)
    set_triggers(clients, target, {"PostConfirmation": gone})
    found = result(clients, target, "triggers.post-confirmation")
    assert found.status == Status.FAIL
    assert "which does not exist: every sign-up fails" in found.finding


def test_a_pool_without_custom_role_warns(clients: Clients, target: Target) -> None:
    pool_id = clients.cognito.create_user_pool(PoolName="no-roles")["UserPool"]["Id"]
    found = results(clients, replace(target, user_pool_id=pool_id))
    assert found["pool.role-attribute"].status == Status.WARN
    assert "every user becomes a customer" in found["pool.role-attribute"].finding
    fix = found["pool.role-attribute"].fix or ""
    assert fix.startswith(f"aws cognito-idp add-custom-attributes --user-pool-id {pool_id}")
    assert found["pool.role-writable"].status == Status.SKIP


def role_pool(clients: Clients, target: Target, *, writers: list[str]) -> Target:
    """The guide's pool: "custom:role (String, mutable)", an app client writing `writers`."""
    pool_id = clients.cognito.create_user_pool(
        PoolName="guide",
        Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": True}],
    )["UserPool"]["Id"]
    clients.cognito.create_user_pool_client(
        UserPoolId=pool_id, ClientName="livekart-web", WriteAttributes=writers
    )
    return replace(target, user_pool_id=pool_id)


def test_a_mutable_role_an_app_client_writes_warns(clients: Clients, target: Target) -> None:
    pool = role_pool(clients, target, writers=["email", "custom:role"])
    found = result(clients, pool, "pool.role-writable")
    assert found.status == Status.WARN
    assert "app client livekart-web can write it" in found.finding
    assert "authorize from the table's role, never the token's" in found.finding
    assert found.fix and "WriteAttributes of app client livekart-web" in found.fix


def test_a_mutable_role_no_client_writes_passes(clients: Clients, target: Target) -> None:
    pool = role_pool(clients, target, writers=["email"])
    found = result(clients, pool, "pool.role-writable")
    assert found.status == Status.PASS
    assert found.finding == "custom:role is mutable, but no app client can write it"


def test_a_pool_that_does_not_exist_cannot_be_checked(clients: Clients, target: Target) -> None:
    from livekart_users.exceptions import PoolNotFound

    with pytest.raises(PoolNotFound, match="user pool us-east-1_Nope was not found in us-east-1"):
        doctor.run(replace(target, user_pool_id="us-east-1_Nope"), clients)


# --- monitoring ---------------------------------------------------------------------------


def test_a_missing_alarm_fails(clients: Clients, target: Target) -> None:
    clients.cloudwatch.delete_alarms(AlarmNames=[target.alarm_name])
    found = result(clients, target, "alarm")
    assert found.status == Status.FAIL
    assert found.finding.startswith(f"no alarm {target.alarm_name}: a failed write is silent")
    assert found.fix == deploy_fix(target)


def test_an_alarm_that_fired_warns_and_reconcile_heals(clients: Clients, target: Target) -> None:
    clients.cloudwatch.set_alarm_state(
        AlarmName=target.alarm_name, StateValue="ALARM", StateReason="writes failed"
    )
    found = result(clients, target, "alarm")
    assert found.status == Status.WARN
    assert found.fix == (
        f"livekart-users reconcile --user-pool-id {target.user_pool_id} --apply (creates the "
        "rows the failed writes missed)"
    )


def log_lines(clients: Clients, target: Target, lines: list[tuple[float, dict[str, Any]]]) -> None:
    clients.logs.create_log_stream(logGroupName=target.log_group, logStreamName="s")
    clients.logs.put_log_events(
        logGroupName=target.log_group,
        logStreamName="s",
        logEvents=[{"timestamp": int(t * 1000), "message": json.dumps(m)} for t, m in lines],
    )


def put_writes(clients: Clients, target: Target, metric: str, at: list[float]) -> None:
    """What CloudWatch makes of the trigger's EMF lines: one count per write, with the
    function's dimensions (moto does not read EMF from logs, so they are put directly)."""
    clients.cloudwatch.put_metric_data(
        Namespace="LiveKartUsers",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": models.metric_dimensions(target),
                "Timestamp": datetime.fromtimestamp(t, UTC),
                "Value": 1.0,
                "Unit": "Count",
            }
            for t in at
        ],
    )


def test_failed_writes_in_the_last_day_are_counted_from_the_alarm_s_metric(
    clients: Clients, target: Target
) -> None:
    now = time.time()
    failed = {"outcome": "failed", "user_id": "0c00f17e-a0b7", "email": "someone@example.com"}
    log_lines(
        clients,
        target,
        [
            (now - 26 * 3600, {**failed, "error_code": "AccessDeniedException"}),  # too old
            (now - 3600, {**failed, "error_code": "AccessDeniedException"}),
            (now - 1800, {**failed, "error_code": "AccessDeniedException"}),
            (now - 900, {**failed, "error_code": "DeadlineExceeded"}),
            (now - 600, {"outcome": "created", "user_id": "1"}),
        ],
    )
    put_writes(
        clients, target, "UserWriteFailed", [now - 26 * 3600, now - 3600, now - 1800, now - 900]
    )
    put_writes(clients, target, "UserWriteUnknown", [now - 700, now - 650])
    # Another deployment's failures are its own alarm's business, not this one's
    other = replace(target, function="other-trigger")
    put_writes(clients, other, "UserWriteFailed", [now - 100] * 5)
    found = result(clients, target, "logs.failed-writes")
    assert found.status == Status.WARN
    assert found.finding == (
        "3 failed writes (UserWriteFailed; in the logs read: AccessDeniedException x2, "
        "DeadlineExceeded x1) and 2 writes of unknown outcome, sent and never answered "
        "(UserWriteUnknown: they may have landed) in the last 24 h"
    )
    assert "0c00f17e" not in found.finding and "example.com" not in found.finding
    assert found.fix == (
        f"livekart-users reconcile --user-pool-id {target.user_pool_id} --apply (creates the "
        "rows the failed writes missed)"
    )


def test_no_failed_writes_pass_only_when_the_metric_says_so(
    clients: Clients, target: Target
) -> None:
    found = result(clients, target, "logs.failed-writes")
    assert found.status == Status.PASS
    assert found.finding == (
        "no failed writes in the last 24 h (UserWriteFailed and UserWriteUnknown of "
        f"{target.function}: 0; AWS/Lambda Errors and Throttles: 0)"
    )


@pytest.mark.parametrize(
    "answer",
    [
        # PartialData and no token: CloudWatch did not return everything, and says so
        {"Id": "m0", "Label": "x", "Timestamps": [], "Values": [], "StatusCode": "PartialData"},
        {"Id": "m0", "Label": "x", "Timestamps": [], "Values": [], "StatusCode": "InternalError"},
    ],
    ids=["partial", "internal-error"],
)
def test_an_incomplete_metric_answer_is_never_a_pass(
    clients: Clients, target: Target, answer: dict[str, Any]
) -> None:
    complete = {**answer, "Id": "m1", "StatusCode": "Complete"}

    def canned(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # Only GetMetricData is answered here (Stubber hooks this same event, but would
        # answer every call); the other checks' calls reach moto.
        return AWSResponse("", 200, {}, None), {"MetricDataResults": [answer, complete]}

    event = "before-call.cloudwatch.GetMetricData"
    clients.cloudwatch.meta.events.register(event, canned)
    try:
        found = result(clients, target, "logs.failed-writes")
    finally:
        clients.cloudwatch.meta.events.unregister(event, canned)
    assert found.status == Status.WARN
    assert found.finding == (
        "failed writes not counted: CloudWatch returned incomplete data for UserWriteFailed "
        "over the last 24 h"
    )


def test_an_alarm_that_notifies_nobody_warns_with_the_fix(clients: Clients, target: Target) -> None:
    # GIVEN the alarm deploy makes without --alarm-topic-arn: it changes state, silently
    clients.cloudwatch.put_metric_alarm(**models.alarm(replace(target, alarm_topic_arn=None)))
    found = result(clients, target, "alarm")
    assert found.status == Status.WARN
    assert found.finding == (
        f"alarm {target.alarm_name} notifies nobody (it has no actions): failed writes change "
        "its state and no one hears of it"
    )
    assert found.fix == (
        f"{deploy_fix(target)} --alarm-topic-arn arn:aws:sns:{REGION}:{target.account}:TOPIC "
        "(an SNS topic someone is subscribed to)"
    )


def put_lambda_metric(clients: Clients, function: str, metric: str, at: list[float]) -> None:
    """What Lambda itself records for the function, whatever the handler did or did not emit."""
    clients.cloudwatch.put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": metric,
                "Dimensions": [{"Name": "FunctionName", "Value": function}],
                "Timestamp": datetime.fromtimestamp(t, UTC),
                "Value": 1.0,
                "Unit": "Count",
            }
            for t in at
        ],
    )


def test_timeouts_crashes_and_throttles_count_though_the_handler_emitted_nothing(
    clients: Clients, target: Target
) -> None:
    # GIVEN no handler metric at all (a timed-out invocation emits none), but Lambda's own
    # Errors and Throttles, and, with JSON logs, its reports of a timeout and an init crash
    now = time.time()
    put_lambda_metric(clients, target.function, "Errors", [now - 600, now - 500])
    put_lambda_metric(clients, target.function, "Throttles", [now - 400])
    put_lambda_metric(clients, "someone-else", "Errors", [now - 300] * 4)

    # JSON logs (moto keeps no LoggingConfig: AWS's answer is given its field here).
    def json_logs(parsed: dict[str, Any], **_: Any) -> None:
        parsed["LoggingConfig"] = {"LogFormat": "JSON", "LogGroup": target.log_group}

    event = "after-call.lambda.GetFunctionConfiguration"
    clients.lambda_.meta.events.register(event, json_logs)
    report = {"type": "platform.report", "record": {"requestId": "r", "metrics": {}}}
    log_lines(
        clients,
        target,
        [
            (now - 600, {**report, "record": {**report["record"], "status": "timeout"}}),
            (now - 500, {**report, "record": {**report["record"], "status": "error"}}),
            (now - 450, {**report, "record": {**report["record"], "status": "success"}}),
        ],
    )
    try:
        found = result(clients, target, "logs.failed-writes")
    finally:
        clients.lambda_.meta.events.unregister(event, json_logs)
    assert found.status == Status.WARN
    assert found.finding == (
        "2 failed and 1 throttled invocations (AWS/Lambda Errors/Throttles, timeouts and "
        "crashes included) and invocations reported timeout x1, error x1 (platform.report) "
        "in the last 24 h"
    )
    assert found.fix is not None and "reconcile" in found.fix


def test_a_throttled_log_read_is_retried_and_if_still_refused_that_check_is_incomplete(
    clients: Clients, target: Target
) -> None:
    from botocore.exceptions import ClientError

    refusals = {"left": 0}

    def throttled(**_: Any) -> None:
        if refusals["left"]:
            refusals["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}},
                "FilterLogEvents",
            )

    event = "before-call.cloudwatch-logs.FilterLogEvents"
    clients.logs.meta.events.register(event, throttled)
    waits: list[float] = []
    try:
        refusals["left"] = 2  # WHEN throttled twice, THEN retried, and the check completes
        found = {r.name: r for r in doctor.run(target, clients, sleep=waits.append)}
        assert found["logs.failed-writes"].status == Status.PASS
        assert waits == [0.5, 1.0]
        refusals["left"] = 100  # WHEN throttled every time, THEN only that check is incomplete
        found = {r.name: r for r in doctor.run(target, clients, sleep=waits.append)}
    finally:
        clients.logs.meta.events.unregister(event, throttled)
    assert found["logs.failed-writes"].status == Status.WARN
    assert found["logs.failed-writes"].finding == (
        "incomplete: FilterLogEvents stayed throttled (its quota is shared by the account)"
    )
    assert found["alarm"].status == Status.PASS and found["table"].status == Status.PASS


def test_the_probe_invokes_the_alias_cognito_calls(clients: Clients, target: Target) -> None:
    from livekart_users.table import to_dynamo

    version = clients.lambda_.publish_version(FunctionName=target.function)["Version"]
    clients.lambda_.create_alias(FunctionName=target.function, Name="live", FunctionVersion=version)
    set_triggers(
        clients, target, dict.fromkeys(models.TRIGGER_SLOTS, f"{target.function_arn}:live")
    )
    invoked: list[dict[str, Any]] = []

    def sent(params: dict[str, Any], **_: Any) -> None:
        invoked.append(dict(params))

    def answer(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        # moto would need Docker to run the function: what it is asked is what matters here;
        # the row is written as the handler would.
        user_id = json.loads(invoked[-1]["Payload"])["request"]["userAttributes"]["sub"]
        clients.dynamodb.put_item(TableName=target.table, Item=to_dynamo({"user_id": user_id}))
        return AWSResponse("", 200, {}, None), {"StatusCode": 200, "Payload": io.BytesIO(b"{}")}

    hooks = [
        ("before-parameter-build.lambda.Invoke", sent),
        ("before-call.lambda.Invoke", answer),
    ]
    for event, hook in hooks:
        clients.lambda_.meta.events.register(event, hook)
    try:
        found = {r.name: r for r in doctor.run(target, clients, probe=True)}["probe"]
    finally:
        for event, hook in hooks:
            clients.lambda_.meta.events.unregister(event, hook)
    assert [p.get("Qualifier") for p in invoked] == ["live"]
    assert found.status == Status.PASS
    assert found.finding == (
        f"a synthetic sign-up through {target.function}:live wrote its row (read back, then "
        "removed)"
    )


def test_an_alarm_on_other_dimensions_fails(clients: Clients, target: Target) -> None:
    # The alarm deploy made before metrics named their function: it can no longer fire
    clients.cloudwatch.put_metric_alarm(
        **{**models.alarm(target), "Dimensions": [{"Name": "service", "Value": "livekart-users"}]}
    )
    found = result(clients, target, "alarm")
    assert found.status == Status.FAIL
    assert found.finding == (
        f"alarm {target.alarm_name} watches dimensions service=livekart-users, not the ones "
        f"{target.function} emits: it cannot fire"
    )


def test_no_log_group_warns(clients: Clients, target: Target) -> None:
    clients.logs.delete_log_group(logGroupName=target.log_group)
    found = result(clients, target, "logs.failed-writes")
    assert found.status == Status.WARN
    assert found.finding.startswith(f"no log group {target.log_group}")


# --- could not run --------------------------------------------------------------------------


def test_a_refused_read_means_doctor_could_not_run(clients: Clients, target: Target) -> None:
    with Stubber(clients.iam) as iam:
        iam.add_client_error("get_role", "AccessDenied", "not allowed", 403)
        with pytest.raises(doctor.CannotRun, match=r"GetRole was refused \(AccessDenied\)"):
            doctor.run(target, clients)


def test_the_cli_exits_2_in_one_line_for_a_missing_pool(clients: Clients, target: Target) -> None:
    outcome = CliRunner().invoke(main, ["doctor", "--user-pool-id", "us-east-1_Nope"])
    assert outcome.exit_code == 2
    assert outcome.output.strip().startswith("error: user pool us-east-1_Nope was not found")
    assert len(outcome.output.strip().splitlines()) == 1


def test_the_cli_exits_2_without_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for variable in [v for v in os.environ if v.startswith(("AWS_ENDPOINT_URL", "AWS_ACCESS"))]:
        monkeypatch.delenv(variable)
    for variable in ("AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    outcome = CliRunner().invoke(main, ["doctor", "--user-pool-id", "us-east-1_Abc", "--json"])
    assert outcome.exit_code == 2
    assert json.loads(outcome.stdout) == {
        "command": "doctor",
        "error": "no AWS credentials found: configure a profile or set AWS_PROFILE",
        "exit_code": 2,
        "outcome": "failed",
        "status": "error",
    }


# --- the command ------------------------------------------------------------------------------


def test_the_guides_setup_fails_in_json_for_ci(guide: Target) -> None:
    target = guide
    outcome = CliRunner().invoke(main, ["doctor", "--user-pool-id", target.user_pool_id, "--json"])
    assert outcome.exit_code == 1, outcome.output
    report = json.loads(outcome.stdout)
    assert report["status"] == "fail" and report["exit_code"] == 1
    assert report["target"]["user_pool_id"] == target.user_pool_id
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert [n for n, s in statuses.items() if s == "fail"] == [
        "role.grants",
        "role.least-privilege",
        "function.runtime",
        "function.handler",
        "function.reserved-variables",
        "triggers.post-authentication",
        "alarm",
        "changes.rule",
    ]
    assert [n for n, s in statuses.items() if s == "warn"] == [
        "table.point-in-time-recovery",
        "table.deletion-protection",
        "permission",
        "pool.role-writable",
        "logs.failed-writes",
        "changes.trail",
    ]
    assert report["summary"] == {"fail": 8, "pass": 11, "skip": 2, "warn": 6}
    assert set(report["checks"][0]) == {"name", "status", "finding", "fix"}


def test_the_human_output_names_each_fix(clients: Clients, target: Target) -> None:
    set_function(clients, target, Runtime="nodejs18.x")
    # A wide CI log (COLUMNS=160): each check and its finding on one line.
    outcome = CliRunner().invoke(
        main, ["doctor", "--user-pool-id", target.user_pool_id], env={"COLUMNS": "160"}
    )
    assert outcome.exit_code == 1
    lines = [line.rstrip() for line in outcome.output.splitlines()]
    at = next(i for i, line in enumerate(lines) if "function.runtime" in line)
    assert lines[at].split() == [
        *("✗", "fail", "function.runtime", "runtime", "nodejs18.x", "is", "a", "deprecated"),
        *("runtime;", "the", "trigger", "needs", "python3.13"),
    ]
    assert lines[at + 1].strip() == f"fix: {deploy_fix(target)}"
    assert lines[-2:] == [
        "1 fail, 24 pass, 2 skip",
        f"`livekart-users doctor --user-pool-id {target.user_pool_id} --fix` carries out "
        "deploy's fixes",
    ]


def test_fix_repairs_the_guides_setup_through_deploy(moto_clients: Clients, guide: Target) -> None:
    # Wide enough for a table row per step: moto's pool ids (43 characters) make long ARNs.
    fixed = CliRunner().invoke(
        main, ["doctor", "--user-pool-id", guide.user_pool_id, "--fix"], env={"COLUMNS": "250"}
    )
    assert fixed.exit_code == 0, fixed.output
    assert "--fix: 26 change(s), through deploy's plan" in fixed.output
    lines = [" ".join(line.split()) for line in fixed.output.splitlines()]
    assert (
        "delete role livekart-cognito-trigger-role managed policy AWSLambdaBasicExecutionRole:"
    ) in " ".join(lines)
    assert "grants more than the function's own log group" in " ".join(lines)
    assert "after --fix" in fixed.output
    # doctor again, from scratch: nothing fails; what deploy cannot change stays a warning
    # (the pool's mutable custom:role, which only the app's authorization can make safe).
    again = results(moto_clients, guide)
    assert doctor.exit_status(again.values()) == 0
    # No trail in the guide's account: deploy cannot make one (it needs a bucket of the team's);
    # nor an SNS topic someone reads for the alarm (--alarm-topic-arn).
    assert [n for n, r in again.items() if r.status == Status.WARN] == [
        "pool.role-writable",
        "alarm",
        "changes.trail",
    ]


def test_fix_never_replaces_another_functions_trigger(clients: Clients, target: Target) -> None:
    legacy = legacy_function(clients, target)
    set_triggers(clients, target, {"PostConfirmation": legacy})
    plan = doctor.plan_fixes(target, clients)
    assert plan.refused == {"PostConfirmation": legacy}
    doctor.apply_fixes(plan, clients, report=lambda step: None)
    found = results(clients, target)
    assert found["triggers.post-confirmation"].status == Status.FAIL
    assert found["triggers.post-confirmation"].fix == doctor.force_command(target) + (
        " (replaces legacy-post-confirmation's trigger)"
    )
    pool = clients.cognito.describe_user_pool(UserPoolId=target.user_pool_id)["UserPool"]
    assert pool["LambdaConfig"]["PostConfirmation"] == legacy


def test_fix_keeps_the_configured_extra_fields_memory_and_alarm_topic(
    clients: Clients, target: Target
) -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:ops"
    extra = replace(target, extra_fields='{"subscriptionTier": "free"}', alarm_topic_arn=topic)
    set_function(
        clients, target, Environment={"Variables": models.environment(extra)}, MemorySize=2048
    )
    clients.cloudwatch.put_metric_alarm(**models.alarm(extra))
    assert doctor.fix_target(target, clients) == replace(
        extra, extra_fields=models.environment(extra)["USERS_EXTRA_FIELDS"], memory_mb=2048
    )


# --- the local stack ------------------------------------------------------------------------

LOCAL_SKIPS = {
    "table.point-in-time-recovery",
    "table.deletion-protection",
    "role",
    "role.grants",
    "role.least-privilege",
    "function",
    "function.runtime",
    "function.handler",
    "function.role",
    "function.environment",
    "function.reserved-variables",
    "function.timeout",
    "permission",
    "alarm",
    "logs.failed-writes",
    "changes.trail",
    "changes.rule",
    "reconcile.last-run",
}


@pytest.mark.slow
def test_the_local_stack_only_passes_and_skips(stack_env: LocalStack) -> None:
    outcome = CliRunner().invoke(
        main, ["doctor", "--local-dir", str(stack_env.dir), "--probe", "--json"]
    )
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.stdout)
    assert report["target"]["local"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert {n for n, s in statuses.items() if s == "skip"} == LOCAL_SKIPS
    assert {n for n, s in statuses.items() if s != "skip"} == {
        "table",
        "table.key",
        "table.email-index",
        "table.pools",
        "triggers.post-confirmation",
        "triggers.post-authentication",
        "pool.role-attribute",
        "pool.role-writable",
        "probe",
    }
    assert set(statuses.values()) == {"pass", "skip"}
    skipped = [c["finding"] for c in report["checks"] if c["status"] == "skip"]
    assert all(f.startswith("local stack: ") for f in skipped)
    # The probe went through cognito-local's path (the local Invoke endpoint) and left no row.
    probes = [i for i in stack_env.invocations() if (i["user_id"] or "").startswith("livekart-doc")]
    assert probes and probes[-1]["outcome"] == "created"
    from livekart_users import aws
    from livekart_users.table import UsersTable

    rows = UsersTable(aws.client("dynamodb"), stack_env.settings.table).scan()
    assert not [r for r in rows if r["user_id"].startswith(doctor.PROBE_PREFIX)]


@pytest.mark.slow
def test_the_local_stack_is_found_from_the_environment(
    stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIVEKART_LOCAL_DIR", str(stack_env.dir))
    found = doctor.find_local_stack()
    assert found is not None and found.dir == stack_env.dir
    monkeypatch.setenv("LIVEKART_LOCAL_DIR", str(stack_env.dir / "elsewhere"))
    outcome = CliRunner().invoke(main, ["doctor"])
    assert outcome.exit_code == 2
    assert "pass --local-dir" in outcome.output


@pytest.mark.slow
def test_a_local_trigger_missing_from_cognito_locals_config_fails(stack_env: LocalStack) -> None:
    config_file = stack_env.dir / "cognito" / ".cognito" / "config.json"
    saved = config_file.read_text()
    config = json.loads(saved)
    del config["TriggerFunctions"]["PostAuthentication"]
    config_file.write_text(json.dumps(config))
    try:
        target, clients = doctor.local_target(stack_env)
        found = results(clients, target, local=stack_env)["triggers.post-authentication"]
    finally:
        config_file.write_text(saved)
    assert found.status == Status.FAIL
    assert found.finding == (
        "cognito-local's config has no Post Authentication trigger: sign-ins neither refresh "
        "nor heal rows"
    )
    assert found.fix == f"livekart-users local up --dir {stack_env.dir}"
