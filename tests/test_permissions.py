"""docs/permissions.md stays in step with the code.

Each command runs on moto with every client recording the API calls it makes: a call the
documented policy does not allow fails the test, and so does a documented action that the code
never makes (or implies, like iam:PassRole).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livekart_users import erasure
from livekart_users.deploy import destroy, executor, permissions, planner, pool
from livekart_users.deploy.clients import Clients

# The moto fixtures and the guide's setup are shared with the deploy tests.
from .test_deploy import (  # noqa: F401
    CODE,
    clients,
    guide_setup,
    make_pool,
    managed_policies,
    target_for,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "permissions.md"
SOURCE = Path(__file__).resolve().parents[1] / "src" / "livekart_users"
# IAM checks these without an API call of their own (the table is the package's).
IMPLIED = set().union(*permissions.IMPLIED.values())
PREFIX = {"monitoring": "cloudwatch"}
FREE = {"sts:GetCallerIdentity"}
# The few actions not named after their API operation.
OPERATION_OF = {"lambda:InvokeFunction": "invoke"}


def documented_statements() -> dict[str, list[dict[str, Any]]]:
    """Command → the statements of its policy in docs/permissions.md."""
    text = DOC.read_text()
    found = re.findall(r"^## (.+?)\n.*?```json\n(.*?)```", text, re.S | re.M)
    return {command: json.loads(block)["Statement"] for command, block in found}


def documented() -> dict[str, set[str]]:
    """Command → the actions its policy in docs/permissions.md allows."""
    return {
        command: {a for s in statements for a in s["Action"]}
        for command, statements in documented_statements().items()
    }


def record(clients: Clients) -> set[str]:
    calls: set[str] = set()
    for name in (
        "sts",
        "iam",
        "lambda_",
        "logs",
        "cloudwatch",
        "dynamodb",
        "cognito",
        "events",
        "sqs",
        "cloudtrail",
    ):
        client = getattr(clients, name)
        prefix = client.meta.service_model.endpoint_prefix
        prefix = PREFIX.get(prefix, prefix)

        def seen(model: Any, prefix: str = prefix, **_: Any) -> None:
            calls.add(f"{prefix}:{model.name}")

        client.meta.events.register("before-call", seen)
    return calls


@pytest.fixture
def recorded(clients: Clients) -> Iterator[tuple[Clients, set[str]]]:
    yield clients, record(clients)


def run_deploy(clients: Clients, pool_id: str) -> None:
    executor.apply(
        planner.plan_deploy(target_for(pool_id), clients, code=CODE), clients, sleep=lambda _: None
    )


def run_doctor(clients: Clients, pool_id: str) -> None:
    from livekart_users import doctor

    doctor.run(target_for(pool_id), clients)


def prepare_reconcile(clients: Clients, pool_id: str) -> None:
    """A user the trigger never saw, and a row whose user is gone."""
    clients.dynamodb.put_item(TableName="livekart-users", Item={"user_id": {"S": "gone-user"}})
    clients.cognito.admin_create_user(
        UserPoolId=pool_id, Username="ops@bazaar.example", MessageAction="SUPPRESS"
    )


def run_reconcile(clients: Clients, pool_id: str) -> None:
    from livekart_users.reconcile import reconcile
    from livekart_users.table import UsersTable

    table = UsersTable(clients.dynamodb, "livekart-users")
    reconcile(
        clients.cognito,
        table,
        pool_id,
        apply=True,
        delete_orphans=True,
        confirm_delete=lambda count: True,
    )
    # And the erasure of an orphan (--erase-orphans), which reads the row for its user name.
    clients.dynamodb.put_item(
        TableName="livekart-users",
        Item={"user_id": {"S": "gone-too"}, "username": {"S": "gone@bazaar.example"}},
    )
    reconcile(
        clients.cognito,
        table,
        pool_id,
        apply=True,
        erase_orphans=erasure.Policy.ANONYMIZE,
        confirm_delete=lambda count: True,
    )


def run_users(clients: Clients, pool_id: str) -> None:
    from livekart_users.table import UsersTable

    table = UsersTable(clients.dynamodb, "livekart-users")
    table.get("someone")
    table.find_by_email("someone@example.com")
    list(table.scan_where(role="vendor"))
    table.set_role("someone", "vendor")
    table.set_status("someone", "suspended")
    # users delete: the Cognito user, then the row, under each policy.
    for policy in erasure.Policy:
        user = clients.cognito.admin_get_user(UserPoolId=pool_id, Username=_leaving(policy))
        sub = next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")
        erasure.delete_user(clients.cognito, table, pool_id, sub, policy)


def _leaving(policy: str) -> str:
    return f"leaving-{policy}@bazaar.example"


def prepare_users(clients: Clients, pool_id: str) -> None:
    """Users for `users delete`, each with a row."""
    for policy in erasure.Policy:
        created = clients.cognito.admin_create_user(
            UserPoolId=pool_id, Username=_leaving(policy), MessageAction="SUPPRESS"
        )["User"]
        sub = next(a["Value"] for a in created["Attributes"] if a["Name"] == "sub")
        clients.dynamodb.put_item(
            TableName="livekart-users",
            Item={"user_id": {"S": sub}, "username": {"S": created["Username"]}},
        )


def run_logs(clients: Clients, pool_id: str) -> None:
    """A read of the window, then one poll of --follow, and one Live Tail session."""
    from datetime import timedelta

    from livekart_users import logs

    target = target_for(pool_id)

    def stop(_: float) -> None:
        raise KeyboardInterrupt

    source = logs.CloudWatchLogs(clients.logs, target.log_group, target.region, sleep=stop)
    source.read(timedelta(hours=1), logs.Filters(), limit=10)
    with pytest.raises(KeyboardInterrupt):
        list(source.follow(logs.Filters()))
    with pytest.raises(KeyboardInterrupt):
        list(source.follow(logs.Filters(), live_tail_arn=target.log_group_arn))


COMMANDS: dict[str, Callable[[Clients, str], None]] = {
    "logs": run_logs,
    "reconcile": run_reconcile,
    "users": run_users,
    "doctor": run_doctor,
    "deploy": run_deploy,
    "destroy": lambda c, p: executor.apply(
        destroy.plan_destroy(target_for(p), c, delete_table=True, delete_logs=True), c
    ),
    "attach": lambda c, p: pool.attach(
        c.cognito,
        p,
        planner.attach_arn(c, target_for(p)),
        ("PostConfirmation", "PostAuthentication"),
        owner_arn=target_for(p).function_arn,
    ),
    "detach": lambda c, p: pool.detach(
        c.cognito, p, target_for(p).function_arn, ("PostConfirmation", "PostAuthentication")
    ),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_call_a_command_makes_is_documented(
    command: str, recorded: tuple[Clients, set[str]], managed_policies: None
) -> None:
    clients_, calls = recorded
    pool_id = make_pool(clients_)
    if command in ("deploy", "doctor"):
        guide_setup(clients_, pool_id)  # the adopt path and a broken setup read the most
    else:
        run_deploy(clients_, pool_id)
    if command == "reconcile":
        prepare_reconcile(clients_, pool_id)
    if command == "users":
        prepare_users(clients_, pool_id)
    calls.clear()
    COMMANDS[command](clients_, pool_id)
    allowed = documented()[command]
    # With the actions IAM checks without a call of their own (GetFunction's tags need
    # lambda:ListTags: without it attach refuses every function as unmanaged).
    wanted = permissions.needed(calls - FREE)
    assert wanted <= allowed, f"undocumented: {sorted(wanted - allowed)}"


def test_no_policy_reaches_log_groups_or_passes_roles_beyond_its_own() -> None:
    """Only listing calls and reads IAM cannot narrow get `*`; log-group actions name our
    groups (not `log-group:*`: that would let a deployer shorten or delete CloudTrail's);
    iam:PassRole names our roles and passes them to Lambda only."""
    ours = re.compile(
        r"^arn:aws:logs:REGION:ACCOUNT:log-group:/aws/lambda/"
        r"(livekart-post-confirmation-trigger|livekart-users-changes-POOL_ID)(:\*)?$"
    )
    for command, statements in documented_statements().items():
        for statement in statements:
            actions = set(statement["Action"])
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            if "*" in resources:
                assert actions <= permissions.UNSCOPED, (command, statement["Sid"])
            if any(a.startswith("logs:") for a in actions - permissions.UNSCOPED):
                assert all(ours.match(r) for r in resources), (command, statement["Sid"])
            if "iam:PassRole" in actions:
                assert statement.get("Condition") == permissions.PASSED_TO_LAMBDA, command
                assert all(r.startswith("arn:aws:iam::ACCOUNT:role/livekart-") for r in resources)


def test_every_documented_action_is_one_the_code_makes() -> None:
    code = "\n".join(p.read_text() for p in SOURCE.rglob("*.py"))
    for command, actions in documented().items():
        for action in actions - IMPLIED:
            operation = action.split(":", 1)[1]
            snake = OPERATION_OF.get(action) or re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()
            assert re.search(rf"\b{snake}\b", code), f"{command}: {action} is never called"
