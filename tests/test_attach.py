"""attach, detach, and commands that refuse what cannot work (issue 9, §4 and §7)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner, Result

from livekart_users.cli import main
from livekart_users.deploy import models
from livekart_users.deploy.clients import Clients

from .test_deploy import (  # noqa: F401
    ACCOUNT,
    CODE,
    REGION,
    clients,
    code_zip,
    deploy,
    make_pool,
    target_for,
)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def lambda_config(clients: Clients, pool_id: str) -> dict[str, str]:
    return dict(clients.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"])


def test_attach_refuses_a_function_that_does_not_exist(clients: Clients) -> None:
    pool_id = make_pool(clients)
    result = run("attach", "--user-pool-id", pool_id, "--function-name", "nope")
    assert result.exit_code == 1
    assert "function nope does not exist in us-east-1" in result.output
    assert "Traceback" not in result.output
    assert set(lambda_config(clients, pool_id)) == {"PreSignUp"}


def unmanaged_function(clients: Clients, name: str = "someone-elses") -> None:
    clients.iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
    clients.lambda_.create_function(
        FunctionName=name,
        Runtime="python3.13",
        Role=f"arn:aws:iam::{ACCOUNT}:role/r",
        Handler="x.handler",
        Code={"ZipFile": code_zip("theirs")},
    )


def test_attach_refuses_a_function_that_is_not_ours_unless_told(clients: Clients) -> None:
    pool_id = make_pool(clients)
    unmanaged_function(clients)
    result = run("attach", "--user-pool-id", pool_id, "--function-name", "someone-elses")
    assert result.exit_code == 1
    assert "not managed by livekart-users" in result.output and "--allow-unmanaged" in result.output
    # Told, it still refuses a function Cognito may not invoke from this pool.
    told = run(
        "attach", "--user-pool-id", pool_id, "--function-name", "someone-elses", "--allow-unmanaged"
    )
    assert told.exit_code == 1
    assert "AccessDeniedException" in told.output
    clients.lambda_.add_permission(
        FunctionName="someone-elses",
        StatementId="cognito",
        Action="lambda:InvokeFunction",
        Principal="cognito-idp.amazonaws.com",
        SourceArn=target_for(pool_id).pool_arn,
    )
    told = run(
        "attach", "--user-pool-id", pool_id, "--function-name", "someone-elses", "--allow-unmanaged"
    )
    assert told.exit_code == 0, told.output
    assert lambda_config(clients, pool_id)["PostConfirmation"].endswith(":function:someone-elses")


def test_attach_names_the_alias_and_detach_is_its_reverse(clients: Clients) -> None:
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    before = lambda_config(clients, pool_id)
    detached = run("detach", "--user-pool-id", pool_id)
    assert detached.exit_code == 0, detached.output
    assert lambda_config(clients, pool_id) == {"PreSignUp": before["PreSignUp"]}
    assert "no change" in run("detach", "--user-pool-id", pool_id).output
    attached = run("attach", "--user-pool-id", pool_id)
    assert attached.exit_code == 0, attached.output
    assert lambda_config(clients, pool_id) == before
    assert before["PostConfirmation"] == target.alias_arn


@pytest.mark.parametrize("command", ["attach", "deploy", "doctor"])
def test_one_slot_held_by_another_function_attaches_the_other_and_exits_1(
    clients: Clients, command: str
) -> None:
    theirs = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:legacy-welcome-email"
    pool_id = make_pool(clients, PostConfirmation=theirs)
    if command == "attach":
        deploy(clients, target_for(pool_id))
        clients.cognito.update_user_pool(
            UserPoolId=pool_id, LambdaConfig={"PostConfirmation": theirs}
        )
    args = ["--user-pool-id", pool_id] + (["--fix"] if command == "doctor" else [])
    result = run(command, *args)
    assert result.exit_code == 1, result.output
    assert "refused" in result.output and "legacy-welcome-email" in result.output
    config = lambda_config(clients, pool_id)
    assert config["PostConfirmation"] == theirs
    assert config["PostAuthentication"] == target_for(pool_id).alias_arn


@pytest.mark.parametrize("days", ["0", "2", "10", "366", "abc"])
def test_log_retention_accepts_only_cloudwatch_logs_periods(days: str) -> None:
    result = run("deploy", "--user-pool-id", "us-east-1_AbC123", "--log-retention-days", days)
    assert result.exit_code == 2
    assert "--log-retention-days" in result.output and "731" in result.output


def test_log_retention_periods_are_cloudwatch_logs_own() -> None:
    # PutRetentionPolicy's documented values (CloudWatch Logs API reference).
    assert models.RETENTION_DAYS == (
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
        2922, 3288, 3653,
    )  # fmt: skip
