"""A live pool keeps working through deploy, doctor --fix and destroy (issue 9, §1 and §3).

moto does instantly what AWS does slowly, so a passing deploy proves little by itself. Here
every request deploy makes is followed by a look at the pool, as Cognito would see it at that
moment: each trigger slot must name a function that exists, that Cognito may invoke from this
pool, and whose code matches its runtime and handler. One request that leaves the pool
otherwise is a window in which every sign-up fails.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from livekart_users.deploy import destroy, executor, models, package, planner
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.deploy.plan import Plan

from .test_deploy import (  # noqa: F401
    ACCOUNT,
    CODE,
    REGION,
    clients,
    code_zip,
    guide_setup,
    make_pool,
    managed_policies,
    target_for,
)

NODE_CODE = code_zip("node")  # what guide_setup uploads
V2 = code_zip("v2")
# (runtime, handler, code) that belong together: anything else fails every invocation.
COHERENT = {
    ("nodejs18.x", "postConfirmation.handler", package.code_sha256_b64(NODE_CODE)),
    ("python3.13", models.HANDLER, package.code_sha256_b64(CODE)),
    ("python3.13", models.HANDLER, package.code_sha256_b64(V2)),
}
SLOTS = models.TRIGGER_SLOTS


@dataclass
class Watch:
    """Records every request of the watched clients, and after each one what is wrong with
    the pools, seen through other clients (so the look itself is not recorded)."""

    look: Clients
    pools: list[str]
    calls: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    coherent: set[tuple[str, str, str]] = field(default_factory=lambda: set(COHERENT))
    _label: str = ""

    def attach(self, clients: Clients) -> None:
        for name in ("iam", "lambda_", "logs", "cloudwatch", "dynamodb", "cognito"):
            events = getattr(clients, name).meta.events
            events.register("before-parameter-build", self._before)
            events.register("after-call", self._after)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self._label = model.name
        # Which resource a call acts on, where several of one kind are in play (the trigger's
        # function and role, and the change handler's).
        if "StatementId" in params:
            self._label += f"({params['StatementId']})"
        elif model.name.startswith("Delete"):
            for key in ("FunctionName", "RoleName", "logGroupName", "AlarmNames"):
                if key in params:
                    self._label += f"({params[key]})"
                    break

    def _after(self, model: Any, **_: Any) -> None:
        label = self._label if self._label.startswith(model.name) else model.name
        self.calls.append(label)
        for pool_id in self.pools:
            self.broken += [
                f"after {label}: {p}" for p in problems(self.look, pool_id, self.coherent)
            ]

    def index(self, call: str) -> int:
        return next(i for i, c in enumerate(self.calls) if c.startswith(call))


def problems(
    look: Clients, pool_id: str, coherent: set[tuple[str, str, str]] = COHERENT
) -> list[str]:
    """What would fail a sign-up on this pool right now."""
    config = look.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]["LambdaConfig"]
    pool_arn = f"arn:aws:cognito-idp:{REGION}:{ACCOUNT}:userpool/{pool_id}"
    found: list[str] = []
    for slot in SLOTS:
        arn = config.get(slot)
        if not arn:
            continue
        try:
            fn = look.lambda_.get_function_configuration(FunctionName=arn)
        except look.lambda_.exceptions.ResourceNotFoundException:
            found.append(f"{slot} names {arn}, which does not exist")
            continue
        if (fn["Runtime"], fn["Handler"], fn["CodeSha256"]) not in coherent:
            found.append(f"{slot}: {fn['Runtime']} {fn['Handler']} runs code it cannot run")
        name, _, qualifier = arn.split(":function:", 1)[1].partition(":")
        policy = json.loads(
            look.lambda_.get_policy(
                FunctionName=name, **({"Qualifier": qualifier} if qualifier else {})
            )["Policy"]
        )
        if not any(may_invoke(s, arn, pool_arn) for s in policy["Statement"]):
            found.append(f"{slot}: Cognito may not invoke {arn} from {pool_id}")
    return found


def may_invoke(statement: dict[str, Any], arn: str, pool_arn: str) -> bool:
    condition = statement.get("Condition") or {}
    source = (condition.get("ArnLike") or {}).get("AWS:SourceArn", "*")
    account = (condition.get("StringEquals") or {}).get("AWS:SourceAccount", ACCOUNT)
    return (
        statement.get("Principal") == {"Service": "cognito-idp.amazonaws.com"}
        # moto keeps one policy for every qualifier; AWS one per qualifier: match the ARN.
        and statement.get("Resource") == arn
        and fnmatch.fnmatchcase(pool_arn, source)
        and account == ACCOUNT
    )


@pytest.fixture
def look(clients: Clients) -> Clients:
    return Clients.create(REGION)


def deploy(clients: Clients, target: Target, code: bytes = CODE) -> Plan:
    plan = planner.plan_deploy(target, clients, code=code)
    executor.apply(plan, clients, sleep=lambda _: None)
    return plan


def guide_pool(clients: Clients) -> str:
    """A pool attached by hand to the guide's Node.js function (wildcard-account permission)."""
    bare = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{models.DEFAULT_FUNCTION}"
    pool_id = make_pool(clients, PostConfirmation=bare)
    guide_setup(clients, pool_id)
    return pool_id


@pytest.fixture
def watched(clients: Clients, look: Clients) -> Iterator[tuple[Clients, Watch]]:
    yield clients, Watch(look, [])


# --- §1 no downtime -------------------------------------------------------------------------


def test_adopting_the_guides_live_node_function_never_breaks_a_sign_up(
    managed_policies: None, watched: tuple[Clients, Watch]
) -> None:
    clients, watch = watched
    pool_id = guide_pool(clients)
    assert problems(watch.look, pool_id) == []  # the guide's setup works (badly, but works)
    watch.pools.append(pool_id)
    watch.attach(clients)

    # x86_64, the console's default: moto ignores an architecture change of existing code.
    target = target_for(pool_id, architecture="x86_64")
    deploy(clients, target)

    assert watch.broken == []
    # The pool was moved off $LATEST (onto the published Node.js code) before it changed.
    assert watch.index("UpdateUserPool") < watch.index("UpdateFunctionCode")
    assert watch.index("UpdateFunctionConfiguration") < watch.calls.index("UpdateAlias")
    # Add before remove: Cognito may invoke the alias before the guide's statement goes.
    assert watch.index("AddPermission") < watch.index("RemovePermission(AllowCognitoInvoke)")
    config = watch.look.cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert config["LambdaConfig"]["PostConfirmation"] == target_for(pool_id).alias_arn
    assert config["LambdaConfig"]["PostAuthentication"] == target_for(pool_id).alias_arn
    live = watch.look.lambda_.get_function_configuration(
        FunctionName=models.DEFAULT_FUNCTION, Qualifier=models.ALIAS
    )
    assert (live["Runtime"], live["Handler"]) == ("python3.13", models.HANDLER)
    assert planner.plan_deploy(target, clients, code=CODE).changes == []


def test_doctor_fix_adopts_the_guides_setup_without_a_window_either(
    managed_policies: None, watched: tuple[Clients, Watch]
) -> None:
    from livekart_users import doctor

    clients, watch = watched
    pool_id = guide_pool(clients)
    watch.pools.append(pool_id)
    watch.attach(clients)
    plan = doctor.plan_fixes(target_for(pool_id), clients)
    # doctor builds the real zip: its code is coherent with our runtime too.
    [built] = {
        c.params["CodeSha256"] for s in plan.changes for c in s.calls if c.operation == "release"
    } - {package.code_sha256_b64(NODE_CODE)}
    watch.coherent.add(("python3.13", models.HANDLER, built))
    executor.apply(plan, clients, sleep=lambda _: None)
    assert watch.broken == []
    assert "UpdateAlias" in watch.calls


def test_a_code_update_of_our_function_switches_in_one_call(
    watched: tuple[Clients, Watch],
) -> None:
    clients, watch = watched
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    watch.pools.append(pool_id)
    watch.attach(clients)

    deploy(clients, target, code=V2)

    assert watch.broken == []
    # The pool is not touched: only the alias moves, after the new version is published.
    assert "UpdateUserPool" not in watch.calls
    assert watch.calls.index("PublishVersion") < watch.calls.index("UpdateAlias")
    assert watch.calls.index("UpdateFunctionCode") < watch.calls.index("PublishVersion")
    live = watch.look.lambda_.get_function_configuration(
        FunctionName=target.function, Qualifier=models.ALIAS
    )
    assert live["CodeSha256"] == package.code_sha256_b64(V2)


def test_destroy_detaches_before_it_deletes(watched: tuple[Clients, Watch]) -> None:
    clients, watch = watched
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    watch.pools.append(pool_id)
    watch.attach(clients)
    executor.apply(destroy.plan_destroy(target, clients), clients, sleep=lambda _: None)
    assert watch.broken == []
    assert watch.calls.index("UpdateUserPool") < watch.index("DeleteFunction")
    assert watch.calls.index("UpdateUserPool") < watch.index("RemovePermission")


# --- §3 several pools, one account ----------------------------------------------------------


def test_a_second_pool_shares_the_function_and_the_first_keeps_working(
    watched: tuple[Clients, Watch],
) -> None:
    clients, watch = watched
    dev, prod = make_pool(clients), make_pool(clients)
    deploy(clients, target_for(prod))
    watch.pools += [prod, dev]
    watch.attach(clients)

    deploy(clients, target_for(dev))
    assert watch.broken == []
    statements = planner.cognito_statements(clients, target_for(dev), models.ALIAS)
    assert sorted(s["Sid"] for s in statements) == sorted(
        f"livekart-users-cognito-invoke-{p}" for p in (dev, prod)
    )
    # Each pool's deploy is then a no-op: neither undoes the other.
    assert planner.plan_deploy(target_for(prod), clients, code=CODE).changes == []
    assert planner.plan_deploy(target_for(dev), clients, code=CODE).changes == []

    plan = destroy.plan_destroy(target_for(dev), clients)
    executor.apply(plan, clients, sleep=lambda _: None)
    assert watch.broken == []
    # The trigger's function and role serve prod still (dev's own change handler goes).
    assert f"DeleteFunction({models.DEFAULT_FUNCTION})" not in watch.calls
    assert f"DeleteRole({models.DEFAULT_ROLE})" not in watch.calls
    assert any(c.startswith("DeleteFunction(livekart-users-changes-") for c in watch.calls)
    kept = next(s for s in plan.steps if s.resource == f"function {models.DEFAULT_FUNCTION}")
    assert prod in kept.reason
    config = clients.cognito.describe_user_pool(UserPoolId=prod)["UserPool"]["LambdaConfig"]
    assert config["PostConfirmation"] == target_for(prod).alias_arn
    assert not problems(watch.look, prod)
    assert (
        "PostConfirmation"
        not in (clients.cognito.describe_user_pool(UserPoolId=dev)["UserPool"]["LambdaConfig"])
    )


def test_a_second_pool_with_another_table_is_refused_before_any_change(
    clients: Clients,
) -> None:
    prod, dev = make_pool(clients), make_pool(clients)
    deploy(clients, target_for(prod))
    with pytest.raises(
        planner.SharedFunctionConflict, match=rf"also serves pool {prod}.*--function-name"
    ):
        planner.plan_deploy(target_for(dev, table="livekart-users-dev"), clients, code=CODE)
    # With names of its own, the dev pool gets its own deployment beside prod's.
    own = target_for(
        dev, table="livekart-users-dev", function="dev-trigger", role="dev-trigger-role"
    )
    deploy(clients, own)
    assert not problems(clients, prod) and not problems(clients, dev)


# --- §7 destroy never deletes what a CloudFormation stack owns --------------------------------


def test_destroy_leaves_a_stacks_resources_alone(watched: tuple[Clients, Watch]) -> None:
    clients, watch = watched
    pool_id = make_pool(clients)
    target = target_for(pool_id)
    deploy(clients, target)
    # What a stack of our template leaves: CloudFormation's own tag on the function, the
    # template's stack tag on the role and the table.
    clients.lambda_.tag_resource(
        Resource=target.function_arn, Tags={"aws:cloudformation:stack-name": "users"}
    )
    clients.iam.tag_role(RoleName=target.role, Tags=[{"Key": models.STACK_TAG, "Value": "users"}])
    table_arn = clients.dynamodb.describe_table(TableName=target.table)["Table"]["TableArn"]
    clients.dynamodb.tag_resource(
        ResourceArn=table_arn, Tags=[{"Key": models.STACK_TAG, "Value": "users"}]
    )
    watch.pools.append(pool_id)
    watch.attach(clients)
    plan = destroy.plan_destroy(target, clients, delete_table=True, delete_logs=True)
    executor.apply(plan, clients, sleep=lambda _: None)
    writes = [c for c in watch.calls if not c.startswith(("Describe", "Get", "List"))]
    # Detached, and nothing of the stack's deleted; the change handler that deploy (not the
    # stack) made for this pool goes, as destroy promises.
    assert [w for w in writes if "livekart-users-changes-" not in w] == ["UpdateUserPool"]
    kept = [s.reason for s in plan.steps if s.action == "no change"]
    assert any("CloudFormation stack users owns it" in r for r in kept)
    assert clients.lambda_.get_function(FunctionName=target.function)
    assert clients.iam.get_role(RoleName=target.role)

    # The table too, when only the table is a stack's.
    clients.lambda_.untag_resource(
        Resource=target.function_arn, TagKeys=["aws:cloudformation:stack-name"]
    )
    plan = destroy.plan_destroy(target, clients, delete_table=True)
    table = next(s for s in plan.steps if s.resource == f"table {target.table}")
    assert table.action == "no change" and "stack users" in table.reason


def test_code_another_pool_runs_directly_is_not_changed_under_it(
    managed_policies: None, clients: Clients
) -> None:
    # Pool A runs the guide's function directly ($LATEST); deploying pool B would change it.
    a = guide_pool(clients)
    b = make_pool(clients)
    with pytest.raises(planner.BareFunctionInUse, match=rf"deploy --user-pool-id {a}` first"):
        planner.plan_deploy(target_for(b, architecture="x86_64"), clients, code=CODE)
    assert not problems(clients, a)
    # Deployed for A first (A moves onto the alias), B's deploy then leaves A working.
    deploy(clients, target_for(a, architecture="x86_64"))
    deploy(clients, target_for(b, architecture="x86_64"))
    assert not problems(clients, a) and not problems(clients, b)
