"""deploy / destroy on moto (the AWS control plane we cannot run here); the exact pool
requests, where moto is more lenient than AWS, are in test_pool.py."""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from livekart_users import aws
from livekart_users.deploy import destroy, executor, models, planner, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.deploy.plan import Plan

REGION = "us-east-1"
ACCOUNT = "123456789012"


def code_zip(marker: str = "v1") -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        # A fixed date: the same marker gives the same bytes (and CodeSha256) at any time.
        entry = zipfile.ZipInfo("livekart_users/triggers.py", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(entry, f"# {marker}\ndef handler(e, c): return e\n")
    return out.getvalue()


CODE = code_zip()


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    for variable in [v for v in os.environ if v.startswith("AWS_ENDPOINT_URL")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield Clients.create(REGION)


def make_pool(clients: Clients, **lambda_config: str) -> str:
    """A production-like pool: MFA, password policy, email, messages, tags, a foreign trigger."""
    answer = clients.cognito.create_user_pool(
        PoolName="livekart-prod",
        Policies={
            "PasswordPolicy": {
                "MinimumLength": 12,
                "RequireSymbols": True,
                "TemporaryPasswordValidityDays": 3,
            }
        },
        MfaConfiguration="OPTIONAL",
        AutoVerifiedAttributes=["email"],
        EmailConfiguration={
            "EmailSendingAccount": "COGNITO_DEFAULT",
            "ReplyToEmailAddress": "support@livekart.example",
        },
        EmailVerificationSubject="Your LiveKart code",
        EmailVerificationMessage="Your LiveKart code is {####}",
        UserPoolTags={"team": "marketplace"},
        LambdaConfig={
            "PreSignUp": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fraud-check",
            **lambda_config,
        },
        Schema=[{"Name": "role", "AttributeDataType": "String", "Mutable": False}],
    )
    pool_id: str = answer["UserPool"]["Id"]
    clients.cognito.set_user_pool_mfa_config(
        UserPoolId=pool_id,
        MfaConfiguration="OPTIONAL",
        SoftwareTokenMfaConfiguration={"Enabled": True},
    )
    return pool_id


def target_for(pool_id: str, **changes: Any) -> Target:
    return Target(user_pool_id=pool_id, region=REGION, account=ACCOUNT, **changes)


def deploy(clients: Clients, target: Target, *, force: bool = False, code: bytes = CODE) -> Plan:
    plan = planner.plan_deploy(target, clients, force=force, code=code)
    executor.apply(plan, clients, sleep=lambda _: None)
    return plan


def pool_settings(clients: Clients, pool_id: str) -> dict[str, Any]:
    settings = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    for volatile in ("LastModifiedDate", "LambdaConfig"):
        settings.pop(volatile, None)
    # Deprecated (TemporaryPasswordValidityDays carries it; AWS rejects both in one update):
    # moto invents a default for it, deploy deliberately does not send it back.
    settings.get("AdminCreateUserConfig", {}).pop("UnusedAccountValidityDays", None)
    return dict(settings)


def test_first_deploy_creates_everything_and_keeps_every_pool_setting(clients: Clients) -> None:
    pool_id = make_pool(clients)
    before = pool_settings(clients, pool_id)
    plan = deploy(clients, target_for(pool_id))
    assert {s.action for s in plan.changes} == {"create", "update"}
    assert pool_settings(clients, pool_id) == before
    config = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    # The pool names the alias, so a later code update switches in one call.
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{models.DEFAULT_FUNCTION}:live"
    assert config == {
        "PreSignUp": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:fraud-check",
        "PostConfirmation": function_arn,
        "PostAuthentication": function_arn,
    }


def test_second_deploy_plans_no_changes(clients: Clients) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    again = planner.plan_deploy(target, clients, code=CODE)
    assert again.changes == [], [f"{s.resource}: {s.reason}" for s in again.changes]


def test_the_resources_are_exactly_least_privilege(clients: Clients) -> None:
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    role = clients.iam.get_role(RoleName=models.DEFAULT_ROLE)["Role"]
    assert models.normalise_policy(role["AssumeRolePolicyDocument"]) == models.normalise_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    # The confused-deputy condition: Lambda, on behalf of this account only.
                    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
                }
            ],
        }
    )
    assert clients.iam.list_role_policies(RoleName=models.DEFAULT_ROLE)["PolicyNames"] == [
        models.POLICY_NAME
    ]
    assert (
        clients.iam.list_attached_role_policies(RoleName=models.DEFAULT_ROLE)["AttachedPolicies"]
        == []
    )
    document = clients.iam.get_role_policy(
        RoleName=models.DEFAULT_ROLE, PolicyName=models.POLICY_NAME
    )["PolicyDocument"]
    assert models.normalise_policy(document) == models.normalise_policy(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
                    "Resource": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/livekart-users",
                },
                {
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/"
                    "livekart-post-confirmation-trigger:log-stream:*",
                },
            ],
        }
    )
    config = clients.lambda_.get_function(FunctionName=models.DEFAULT_FUNCTION)["Configuration"]
    assert config["Runtime"] == "python3.13"
    assert config["Handler"] == "livekart_users.triggers.handler"
    assert config["Timeout"] <= 4
    assert config["Architectures"] == ["arm64"]
    variables = config["Environment"]["Variables"]
    assert variables["USERS_TABLE"] == "livekart-users"
    assert not set(variables) & models.RESERVED_VARIABLES
    [statement] = planner.cognito_statements(clients, target, models.ALIAS)
    assert statement["Resource"] == target.alias_arn
    assert statement["Sid"] == f"livekart-users-cognito-invoke-{pool_id}"
    assert statement["Principal"] == {"Service": "cognito-idp.amazonaws.com"}
    assert statement["Condition"] == {
        "ArnLike": {"AWS:SourceArn": target.pool_arn},
        "StringEquals": {"AWS:SourceAccount": ACCOUNT},
    }
    table = clients.dynamodb.describe_table(TableName="livekart-users")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "email-index"
    assert table["DeletionProtectionEnabled"] is True
    backups = clients.dynamodb.describe_continuous_backups(TableName="livekart-users")
    assert (
        backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"][
            "PointInTimeRecoveryStatus"
        ]
        == "ENABLED"
    )
    [group] = clients.logs.describe_log_groups(logGroupNamePrefix=target.log_group)["logGroups"]
    assert group["retentionInDays"] == models.LOG_RETENTION_DAYS
    [alarm] = clients.cloudwatch.describe_alarms(AlarmNames=[target.alarm_name])["MetricAlarms"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("LiveKartUsers", "UserWriteFailed")


def test_the_memory_size_is_deploy_s_default_or_the_one_asked_for(clients: Clients) -> None:
    pool_id = make_pool(clients)
    deploy(clients, target_for(pool_id))
    function = clients.lambda_.get_function_configuration(FunctionName=models.DEFAULT_FUNCTION)
    assert function["MemorySize"] == models.MEMORY_MB == 1024
    plan = deploy(clients, target_for(pool_id, memory_mb=512))
    # The function's configuration, then its release through the alias: nothing else changes.
    assert {step.resource.split(":")[0] for step in plan.changes} == {
        f"function {models.DEFAULT_FUNCTION}"
    }
    function = clients.lambda_.get_function_configuration(FunctionName=models.DEFAULT_FUNCTION)
    assert function["MemorySize"] == 512


def test_each_deployment_s_alarm_counts_only_its_own_function_s_failed_writes(
    clients: Clients,
) -> None:
    # GIVEN two deployments in one account (dev and prod, say)
    dev = target_for(make_pool(clients), function="dev-users-trigger", role="dev-users-role")
    prod = target_for(make_pool(clients), function="prod-users-trigger", role="prod-users-role")
    alarms = {}
    for target in (dev, prod):
        deploy(clients, target)
        [alarms[target.function]] = clients.cloudwatch.describe_alarms(
            AlarmNames=[target.alarm_name]
        )["MetricAlarms"]
    # THEN each alarm watches the metric its own function emits (the trigger's EMF dimensions)
    for function, alarm in alarms.items():
        assert alarm["MetricName"] == "UserWriteFailed"  # refused or never sent, not unknown
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
            "function_name": function,
            "service": "livekart-users",
        }
        assert "UserWriteUnknown" in alarm["AlarmDescription"]


@pytest.mark.parametrize(
    ("change", "resource"),
    [
        (
            lambda c, t: c.lambda_.update_function_configuration(
                FunctionName=t.function, Timeout=30
            ),
            "function",
        ),
        (
            lambda c, t: c.logs.put_retention_policy(logGroupName=t.log_group, retentionInDays=7),
            "log group",
        ),
        (
            lambda c, t: c.lambda_.update_function_code(
                FunctionName=t.function, ZipFile=code_zip("v2")
            ),
            "function",
        ),
        (
            lambda c, t: c.cloudwatch.put_metric_alarm(**{**models.alarm(t), "Threshold": 5.0}),
            "alarm",
        ),
        (
            lambda c, t: c.iam.put_role_policy(
                RoleName=t.role,
                PolicyName=models.POLICY_NAME,
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}],
                    }
                ),
            ),
            "role",
        ),
    ],
    ids=["timeout", "retention", "code", "alarm", "policy"],
)
def test_changing_one_setting_plans_exactly_one_step(
    clients: Clients, change: Any, resource: str
) -> None:
    target = target_for(make_pool(clients))
    deploy(clients, target)
    change(clients, target)
    step, *release = planner.plan_deploy(target, clients, code=CODE).changes
    assert step.resource.startswith(resource)
    assert step.action == "update"
    # A change to the function is published, then the alias moves: nothing else changes.
    expected = [f"function {target.function}:live"] if resource == "function" else []
    assert [s.resource for s in release] == expected


def test_a_foreign_post_confirmation_trigger_is_refused_without_force(clients: Clients) -> None:
    theirs = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:legacy-welcome-email"
    pool_id = make_pool(clients, PostConfirmation=theirs)
    plan = deploy(clients, target_for(pool_id))
    assert plan.refused == {"PostConfirmation": theirs}
    trigger = next(s for s in plan.steps if s.resource.endswith("triggers"))
    assert "legacy-welcome-email" in trigger.reason and "--force" in trigger.reason
    config = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    assert config["PostConfirmation"] == theirs
    # The free slot is attached all the same; only the held one is refused.
    assert config["PostAuthentication"] == target_for(pool_id).alias_arn

    deploy(clients, target_for(pool_id), force=True)
    config = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    assert config["PostConfirmation"] == target_for(pool_id).alias_arn


@pytest.fixture
def managed_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guide attaches an AWS managed policy; moto loads them (slowly) only when asked."""
    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")


def guide_setup(clients: Clients, pool_id: str) -> None:
    """What the original guide leaves behind when followed by hand."""
    clients.iam.create_role(
        RoleName=models.DEFAULT_ROLE, AssumeRolePolicyDocument=json.dumps(models.trust_policy())
    )
    clients.iam.attach_role_policy(
        RoleName=models.DEFAULT_ROLE,
        PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    )
    clients.iam.put_role_policy(
        RoleName=models.DEFAULT_ROLE,
        PolicyName="DynamoDBAccess",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["dynamodb:PutItem", "dynamodb:GetItem"],
                        "Resource": "arn:aws:dynamodb:us-east-1:*:table/livekart-users",
                    }
                ],
            }
        ),
    )
    clients.lambda_.create_function(
        FunctionName=models.DEFAULT_FUNCTION,
        Runtime="nodejs18.x",
        Role=f"arn:aws:iam::{ACCOUNT}:role/{models.DEFAULT_ROLE}",
        Handler="postConfirmation.handler",
        Code={"ZipFile": code_zip("node")},
        Environment={"Variables": {"TABLE_NAME": "livekart-users", "AWS_REGION_X": "us-east-1"}},
    )
    clients.lambda_.add_permission(
        FunctionName=models.DEFAULT_FUNCTION,
        StatementId="AllowCognitoInvoke",
        Action="lambda:InvokeFunction",
        Principal="cognito-idp.amazonaws.com",
        SourceArn=f"arn:aws:cognito-idp:{REGION}:*:userpool/{pool_id}",
    )


def test_the_guides_half_built_setup_is_converged(managed_policies: None, clients: Clients) -> None:
    pool_id = make_pool(clients)
    guide_setup(clients, pool_id)
    # x86_64, as the console's default: moto ignores an architecture change of existing code.
    target = target_for(pool_id, architecture="x86_64")
    plan = planner.plan_deploy(target, clients, code=CODE)
    reasons = "\n".join(f"{s.resource} {s.action}: {s.reason}" for s in plan.changes)
    assert "AWSLambdaBasicExecutionRole" in reasons
    assert "inline policy DynamoDBAccess" in reasons
    assert "nodejs18.x" in reasons
    assert "invoke permission AllowCognitoInvoke delete" in reasons
    assert "adopt: tag" in reasons
    executor.apply(plan, clients, sleep=lambda _: None)
    assert planner.plan_deploy(target, clients, code=CODE).changes == []
    assert (
        clients.iam.list_attached_role_policies(RoleName=models.DEFAULT_ROLE)["AttachedPolicies"]
        == []
    )
    config = clients.lambda_.get_function(FunctionName=models.DEFAULT_FUNCTION)
    assert config["Configuration"]["Runtime"] == "python3.13"
    assert config["Configuration"]["Environment"]["Variables"] == models.environment(target)
    assert config["Tags"]["managed-by"] == "livekart-users"


def test_destroy_restores_the_pool_and_keeps_the_table(clients: Clients) -> None:
    pool_id = make_pool(clients)
    before = pool_settings(clients, pool_id)
    config_before = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"][
        "LambdaConfig"
    ]
    target = target_for(pool_id)
    deploy(clients, target)
    plan = destroy.plan_destroy(target, clients)
    executor.apply(plan, clients, sleep=lambda _: None)
    assert pool_settings(clients, pool_id) == before
    assert (
        clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
        == config_before
    )
    assert clients.dynamodb.describe_table(TableName="livekart-users")["Table"]
    assert clients.logs.describe_log_groups(logGroupNamePrefix=target.log_group)["logGroups"]
    with pytest.raises(Exception, match=r"ResourceNotFound|not found"):
        clients.lambda_.get_function(FunctionName=target.function)
    with pytest.raises(Exception, match=r"NoSuchEntity|cannot be found"):
        clients.iam.get_role(RoleName=target.role)
    assert clients.cloudwatch.describe_alarms(AlarmNames=[target.alarm_name])["MetricAlarms"] == []


def test_destroy_leaves_what_is_not_ours(managed_policies: None, clients: Clients) -> None:
    pool_id = make_pool(clients)
    guide_setup(clients, pool_id)  # nothing tagged as ours
    plan = destroy.plan_destroy(target_for(pool_id), clients)
    assert plan.changes == []


def test_an_existing_table_with_another_key_is_an_error(clients: Clients) -> None:
    pool_id = make_pool(clients)
    clients.dynamodb.create_table(
        TableName="livekart-users",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
    )
    with pytest.raises(planner.TableKeyMismatch, match="never replaces a table"):
        planner.plan_deploy(target_for(pool_id), clients, code=CODE)


def test_bad_extra_fields_stop_the_deploy_before_any_change(clients: Clients) -> None:
    pool_id = make_pool(clients)
    with pytest.raises(Exception, match="USERS_EXTRA_FIELDS 'role' is a field"):
        planner.plan_deploy(target_for(pool_id, extra_fields='{"role": "x"}'), clients, code=CODE)


def test_a_pool_setting_botocore_does_not_model_stops_the_deploy(clients: Clients) -> None:
    pool_id = make_pool(clients)

    def newer_service(response_dict: dict[str, Any], **_: Any) -> None:
        body = json.loads(response_dict["body"])
        body["UserPool"]["PasskeyConfiguration"] = {"RelyingPartyId": "livekart.example"}
        response_dict["body"] = json.dumps(body).encode()

    clients.cognito.meta.events.register(
        "before-parse.cognito-identity-provider.DescribeUserPool", newer_service
    )
    with pytest.raises(pool.UnsupportedPoolSetting, match="PasskeyConfiguration"):
        planner.plan_deploy(target_for(pool_id), clients, code=CODE)
    config = clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    assert "PostConfirmation" not in config


# --- the exact UpdateUserPool request: tests/test_pool.py (a loopback Cognito serves raw JSON)


def test_writable_fields_come_from_the_service_model() -> None:
    cognito = aws.client("cognito-idp", region_name=REGION)
    writable = pool.writable_fields(cognito)
    assert {"LambdaConfig", "MfaConfiguration", "Policies", "EmailConfiguration"} <= writable
    assert not writable & pool.READ_ONLY


# --- the commands ------------------------------------------------------------------------------


def test_deploy_command_plans_applies_and_then_has_nothing_to_do(clients: Clients) -> None:
    from click.testing import CliRunner

    from livekart_users.cli import main

    pool_id = make_pool(clients)
    runner = CliRunner()
    dry = runner.invoke(main, ["deploy", "--user-pool-id", pool_id, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "dry run:" in dry.output and "nothing changed" in dry.output
    assert clients.lambda_.list_functions()["Functions"] == []
    applied = runner.invoke(main, ["deploy", "--user-pool-id", pool_id])
    assert applied.exit_code == 0, applied.output
    assert "change(s) made" in applied.output
    again = runner.invoke(main, ["deploy", "--user-pool-id", pool_id, "--dry-run"])
    assert again.exit_code == 0
    assert "no changes" in again.output
    gone = runner.invoke(main, ["destroy", "--user-pool-id", pool_id])
    assert gone.exit_code == 0, gone.output
    assert clients.lambda_.list_functions()["Functions"] == []


def test_a_pool_of_another_region_is_one_clear_line(clients: Clients) -> None:
    from click.testing import CliRunner

    from livekart_users.cli import main

    result = CliRunner().invoke(
        main, ["deploy", "--user-pool-id", "eu-west-1_AbC123", "--region", "us-east-1", "--dry-run"]
    )
    assert result.exit_code == 1
    assert "user pool eu-west-1_AbC123 is in eu-west-1" in result.output
    assert "--region eu-west-1" in result.output
    assert "Traceback" not in result.output


def test_a_missing_pool_is_one_clear_line(clients: Clients) -> None:
    from click.testing import CliRunner

    from livekart_users.cli import main

    result = CliRunner().invoke(
        main, ["deploy", "--user-pool-id", "us-east-1_Missing1", "--dry-run"]
    )
    assert result.exit_code == 1
    assert "user pool us-east-1_Missing1 was not found in us-east-1" in result.output


def _recovery_days(clients: Clients) -> Any:
    backups = clients.dynamodb.describe_continuous_backups(TableName="livekart-users")
    return backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"].get(
        "RecoveryPeriodInDays"
    )


def test_the_recovery_period_is_set_when_asked_and_otherwise_left_as_it_is(
    clients: Clients,
) -> None:
    # Erased users' data stays restorable from point-in-time recovery for this many days.
    pool_id = make_pool(clients)
    deploy(clients, target_for(pool_id, recovery_period_days=7))
    assert _recovery_days(clients) == 7
    again = planner.plan_deploy(target_for(pool_id, recovery_period_days=7), clients, code=CODE)
    assert not [s for s in again.changes if s.resource.startswith("table")]

    shorter = deploy(clients, target_for(pool_id, recovery_period_days=1))
    [step] = [s for s in shorter.changes if s.resource.startswith("table")]
    assert "recovery period 7 → 1 days" in step.reason
    assert _recovery_days(clients) == 1
    # Not asked: the table's own period stays.
    unasked = deploy(clients, target_for(pool_id))
    assert not [s for s in unasked.changes if s.resource.startswith("table")]
    assert _recovery_days(clients) == 1


def test_the_plan_says_plainly_when_the_table_holds_another_pools_users(
    clients: Clients,
) -> None:
    first, second = make_pool(clients), make_pool(clients)
    plan = deploy(clients, target_for(first))
    assert not [n for n in plan.notices if n.resource.startswith("table")]
    rows = [("us-east-1_OtherPool1", "a"), ("us-east-1_OtherPool1", "b"), (None, "c")]
    for owner, sub in rows:
        item = {"user_id": {"S": sub}}
        if owner:
            item["userPoolId"] = {"S": owner}
        clients.dynamodb.put_item(TableName="livekart-users", Item=item)
    shared = planner.plan_deploy(target_for(second), clients, code=CODE)
    [notice] = [n for n in shared.notices if n.resource == "table livekart-users"]
    assert "2 rows of pool us-east-1_OtherPool1" in notice.message
    assert "1 row that records no pool" in notice.message
    assert f"pool {second} will share it" in notice.message
    assert "--table" in notice.fix
