"""Reads what exists (read-only calls only) and returns the steps that make it what should be.

Each step names a resource, an action (create / update / delete / no change) and the reason,
and carries the exact API calls the executor will make (`deploy.plan`). A dry run prints the
steps; `apply` hands the same plan to the executor. Destroying is planned in `deploy.destroy`.

One planner per kind of resource, used for every resource of that kind: `_plan_role` for the
trigger's role and the change handler's, `_plan_function` for both functions' `$LATEST`, the
log group planner for both log groups. So trust repair, extra-policy removal, tag adoption and
the order of configuration and code apply to every one of them.

The order of the steps is what keeps a live pool working (docs/deploy.md, "No downtime"): the
pool names the function's alias `live`; `$LATEST` changes, is published, then the alias moves
in one call; a permission is added before any is removed; the pool is detached before anything
it names is deleted. One function may serve several pools, with one statement each.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from livekart_users import aws, contract, erasure
from livekart_users.deploy import models, pool, trail
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import OWNER_TAG, FunctionModel, RoleModel, Target
from livekart_users.deploy.package import code_sha256_b64
from livekart_users.deploy.plan import (
    CREATE,
    DELETE,
    NO_CHANGE,
    UPDATE,
    Call,
    Notice,
    Plan,
    Step,
    tag_list,
    tag_map,
    tagged,
)
from livekart_users.exceptions import LivekartUsersError
from livekart_users.table import EMAIL_INDEX, UsersTable

# What point-in-time recovery keeps when no period is set (DynamoDB API reference,
# PointInTimeRecoverySpecification: RecoveryPeriodInDays 1-35, default 35).
DEFAULT_RECOVERY_DAYS = 35

class TableKeyMismatch(LivekartUsersError):
    def __init__(self, table: str, key: Any) -> None:
        super().__init__(
            f"table {table} exists with another key schema ({key}); livekart-users needs "
            "partition key user_id (S) and never replaces a table: pass --table to use another"
        )


def _differences(actual: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {actual.get(k)!r} → {v!r}" for k, v in desired.items() if actual.get(k) != v]


# --- deploy ---------------------------------------------------------------------------------


def plan_deploy(target: Target, clients: Clients, *, code: bytes, force: bool = False) -> Plan:
    """Every step that makes the account match `target`; reads only. `code` is the zip both
    functions run (`package.build_zip`): building it is packaging's work, not the planner's.

    The order is what keeps a live pool working: the function is complete (code, settings,
    published version, invoke permission) before the pool names it, and a statement or a
    version the pool may still use is removed only after the pool has moved off it.
    """
    models.environment(target)  # validates the extra-fields setting before anything else
    erasure.parse_policy(target.erasure_policy)  # and the erasure policy
    settings = pool.describe(clients.cognito, target.user_pool_id)
    bare = cognito_statements(clients, target)
    function_steps, moved = _trigger_function_steps(target, clients, code, settings, force)
    steps = [
        *_table_steps(target, clients),
        *log_group_steps(clients, target.log_group, target.log_retention_days),
        *_plan_role(models.trigger_role(target), target, clients),
        *function_steps,
        *_plan_alarm(models.alarm(target), clients),
    ]
    trigger_step, refused = _trigger_step(target, clients, settings, force, moved)
    steps.append(trigger_step)
    steps += _bare_permission_cleanup(target, bare)
    # The change handler last: sign-ups are served once the pool is attached, and a failure
    # here (a role still propagating past the executor's patience) leaves them served.
    steps += _change_handler_steps(target, clients, code)
    if target.reconcile_every_seconds:
        steps += _reconcile_steps(target, clients, code)
    trail_step, notices = _trail(target, clients)
    steps.append(trail_step)
    notices += _shared_table(target, clients)
    return Plan(target, steps, refused, notices)


def _enable_point_in_time_recovery(target: Target) -> Call:
    specification: dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
    if target.recovery_period_days is not None:
        # Omitted, DynamoDB keeps 35 days: erased users' data stays restorable that long.
        specification["RecoveryPeriodInDays"] = target.recovery_period_days
    return Call(
        "dynamodb",
        "update_continuous_backups",
        {"TableName": target.table, "PointInTimeRecoverySpecification": specification},
    )


def _wait_table(target: Target) -> Call:
    # One UpdateTable at a time: "while it's UPDATING, you can't issue another UpdateTable
    # request" (DynamoDB developer guide), and a new GSI must have started backfilling.
    return Call("dynamodb", "wait_table", {"TableName": target.table})


def _update_table(target: Target, **changes: Any) -> tuple[Call, Call]:
    return _wait_table(target), Call(
        "dynamodb", "update_table", {"TableName": target.table, **changes}
    )


def _table_steps(target: Target, clients: Clients) -> list[Step]:
    name = f"table {target.table}"
    described = aws.unless_missing(lambda: clients.dynamodb.describe_table(TableName=target.table))
    spec = models.table_spec(target)
    if described is None:
        return [
            Step(
                name,
                CREATE,
                "no table of that name",
                (
                    Call("dynamodb", "create_table", spec),
                    _wait_table(target),
                    _enable_point_in_time_recovery(target),
                ),
            )
        ]
    table = described["Table"]
    if table.get("KeySchema") != spec["KeySchema"] or {
        "AttributeName": "user_id",
        "AttributeType": "S",
    } not in table.get("AttributeDefinitions", []):
        raise TableKeyMismatch(target.table, table.get("KeySchema"))
    steps: list[Step] = []
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    if billing != "PAY_PER_REQUEST":
        # First: on a PROVISIONED table a new GSI would need its own ProvisionedThroughput.
        steps.append(
            Step(
                name,
                UPDATE,
                f"billing mode {billing} → PAY_PER_REQUEST (on-demand)",
                _update_table(target, BillingMode="PAY_PER_REQUEST"),
            )
        )
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(EMAIL_INDEX)
    wanted_index = spec["GlobalSecondaryIndexes"][0]
    if index is None:
        steps.append(
            Step(
                f"{name} GSI {EMAIL_INDEX}",
                CREATE,
                "the email index is missing (built in the background: the table stays usable)",
                _update_table(
                    target,
                    AttributeDefinitions=spec["AttributeDefinitions"],
                    GlobalSecondaryIndexUpdates=[{"Create": wanted_index}],
                ),
            )
        )
    elif (
        index.get("KeySchema") != wanted_index["KeySchema"]
        or index.get("Projection", {}).get("ProjectionType") != "ALL"
    ):
        raise LivekartUsersError(
            f"table {target.table} has an index {EMAIL_INDEX} that is not on email with "
            "projection ALL: drop it or use another table (--table); deploy never replaces one"
        )
    if not table.get("DeletionProtectionEnabled"):
        steps.append(
            Step(
                name,
                UPDATE,
                "deletion protection off → on",
                _update_table(target, DeletionProtectionEnabled=True),
            )
        )
    backups = clients.dynamodb.describe_continuous_backups(TableName=target.table)
    pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
    period = pitr.get("RecoveryPeriodInDays", DEFAULT_RECOVERY_DAYS)
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        steps.append(
            Step(
                name,
                UPDATE,
                "point-in-time recovery off → on",
                (_enable_point_in_time_recovery(target),),
            )
        )
    elif target.recovery_period_days not in (None, period):
        steps.append(
            Step(
                name,
                UPDATE,
                f"point-in-time recovery period {period} → {target.recovery_period_days} days "
                "(how long erased users' data stays restorable)",
                (_enable_point_in_time_recovery(target),),
            )
        )
    tags = table_tags(clients, table)
    if not tagged(tag_map(tags)):
        steps.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (
                    Call(
                        "dynamodb",
                        "tag_resource",
                        {"ResourceArn": table["TableArn"], "Tags": tag_list()},
                    ),
                ),
            )
        )
    return steps or [Step(name, NO_CHANGE, "key, index, billing and protection as they should be")]


def table_tags(clients: Clients, table: Mapping[str, Any]) -> list[dict[str, str]]:
    answer = clients.dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])
    return list(answer.get("Tags", []))


def log_group_steps(clients: Clients, log_group: str, retention_days: int) -> list[Step]:
    """A function's log group, ours, with its retention (deploy and the change handler)."""
    name = f"log group {log_group}"
    groups = clients.logs.describe_log_groups(logGroupNamePrefix=log_group)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == log_group), None)
    retention = {"logGroupName": log_group, "retentionInDays": retention_days}
    if group is None:
        create = {"logGroupName": log_group, "tags": dict([OWNER_TAG])}
        calls = (
            Call("logs", "create_log_group", create),
            Call("logs", "put_retention_policy", retention),
        )
        return [Step(name, CREATE, f"missing; retention {retention_days} days", calls)]
    if group.get("retentionInDays") != retention_days:
        was = group.get("retentionInDays", "never expire")
        put = Call("logs", "put_retention_policy", retention)
        return [Step(name, UPDATE, f"retention {was} → {retention_days} days", (put,))]
    return [Step(name, NO_CHANGE, f"retention {retention_days} days")]


def _plan_role(role: RoleModel, target: Target, clients: Clients) -> list[Step]:
    """A function's role: trusts Lambda for this account only (trust repaired where it does
    not), exactly one inline policy (others and managed ones removed), tagged as ours."""
    name = f"role {role.name}"
    policy = json.dumps(role.policy)
    put = Call(
        "iam",
        "put_role_policy",
        {"RoleName": role.name, "PolicyName": role.policy_name, "PolicyDocument": policy},
    )
    found = aws.unless_missing(lambda: clients.iam.get_role(RoleName=role.name))
    if found is None:
        create = {
            "RoleName": role.name,
            "AssumeRolePolicyDocument": json.dumps(models.trust_policy(target.account)),
            "Description": role.description,
            "Tags": tag_list(),
        }
        return [
            Step(
                name,
                CREATE,
                f"trusts Lambda only, for account {target.account}; {role.summary}",
                (
                    Call("iam", "create_role", create),
                    put,
                    Call("iam", "wait_role", {"RoleName": role.name}),
                ),
            )
        ]
    found_role = found["Role"]
    steps: list[Step] = []
    trust = trust_update(found_role["AssumeRolePolicyDocument"], target.account)
    if trust is not None:
        update = {"RoleName": role.name, "PolicyDocument": json.dumps(trust)}
        steps.append(
            Step(
                name,
                UPDATE,
                "trust policy → lambda.amazonaws.com only, for account "
                f"{target.account} (conditions and Deny statements already there are kept)",
                (Call("iam", "update_assume_role_policy", update),),
            )
        )
    inline = clients.iam.list_role_policies(RoleName=role.name)["PolicyNames"]
    current = None
    if role.policy_name in inline:
        current = clients.iam.get_role_policy(RoleName=role.name, PolicyName=role.policy_name)[
            "PolicyDocument"
        ]
    if current is None or models.normalise_policy(current) != models.normalise_policy(policy):
        action = CREATE if current is None else UPDATE
        steps.append(
            Step(name, action, f"inline policy {role.policy_name}: {role.summary}", (put,))
        )
    for other in sorted(set(inline) - {role.policy_name}):
        delete = {"RoleName": role.name, "PolicyName": other}
        steps.append(
            Step(
                name,
                DELETE,
                f"inline policy {other}: broader than the function needs",
                (Call("iam", "delete_role_policy", delete),),
            )
        )
    attached = clients.iam.list_attached_role_policies(RoleName=role.name)["AttachedPolicies"]
    for managed in attached:
        detach = {"RoleName": role.name, "PolicyArn": managed["PolicyArn"]}
        steps.append(
            Step(
                name,
                DELETE,
                f"managed policy {managed['PolicyName']}: grants more "
                "than the function's own log group",
                (Call("iam", "detach_role_policy", detach),),
            )
        )
    if not tagged(tag_map(found_role.get("Tags"))):
        steps.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (Call("iam", "tag_role", {"RoleName": role.name, "Tags": tag_list()}),),
            )
        )
    return steps or [Step(name, NO_CHANGE, "trust and policy as they should be")]


def trust_update(document: Any, account: str) -> dict[str, Any] | None:
    """The trust policy deploy writes, or None when the role's is already right.

    Right means: Lambda is the only principal allowed, and only on behalf of this account
    (`aws:SourceAccount`, the confused-deputy condition). What an operator added to narrow it
    further — other conditions on Lambda's statement, Deny statements — is kept.
    """
    if isinstance(document, str):
        document = json.loads(unquote(document))
    found = document.get("Statement", []) if isinstance(document, dict) else []
    statements = [s for s in (found if isinstance(found, list) else [found]) if isinstance(s, dict)]
    wanted = models.trust_policy(account)["Statement"][0]
    denies = [s for s in statements if s.get("Effect") == "Deny"]
    lambdas = [
        s
        for s in statements
        if s.get("Effect") == "Allow"
        and models.normalise_policy({"P": s.get("Principal"), "A": s.get("Action")})
        == models.normalise_policy({"P": wanted["Principal"], "A": wanted["Action"]})
    ]
    condition = copy.deepcopy(lambdas[0].get("Condition") or {}) if lambdas else {}
    has_account = any(
        key.lower() == "aws:sourceaccount" and account in ([v] if isinstance(v, str) else v)
        for operator in condition.values()
        for key, v in (operator or {}).items()
    )
    if not has_account:
        for operator in condition.values():
            for key in [k for k in operator or {} if k.lower() == "aws:sourceaccount"]:
                del operator[key]  # another account's: it would stop Lambda assuming the role
        condition.setdefault("StringEquals", {})["aws:SourceAccount"] = account
    statement = {k: v for k, v in wanted.items() if k != "Condition"}
    statement["Condition"] = {k: v for k, v in condition.items() if v}
    desired = {"Version": "2012-10-17", "Statement": [statement, *denies]}
    if len(lambdas) == 1 and has_account and len(statements) == 1 + len(denies):
        return None
    return desired


# --- the function, its alias and who may invoke it ------------------------------------------


class SharedFunctionConflict(LivekartUsersError):
    """The function serves other pools with settings this deploy would change."""

    def __init__(self, target: Target, pools: list[str], differences: list[str]) -> None:
        super().__init__(
            f"function {target.function} also serves pool {', '.join(pools)}, and this deploy "
            f"would change its settings for them too ({'; '.join(differences)}). Nothing was "
            "changed: give this pool its own function, role and table (--function-name, "
            "--role-name, --table), or deploy with the same settings"
        )


class BareFunctionInUse(LivekartUsersError):
    """Another pool may invoke the function's $LATEST, which this deploy would change."""

    def __init__(self, target: Target, pools: list[str]) -> None:
        super().__init__(
            f"function {target.function} may be invoked directly (not through its alias "
            f"{models.ALIAS}) by pool {', '.join(pools)}, and this deploy changes its code or "
            f"configuration: run `livekart-users deploy --user-pool-id {pools[0]}` first (it "
            f"moves that pool onto the alias {models.ALIAS}), then this one"
        )


@dataclass(frozen=True)
class FunctionState:
    """The function as it is: `$LATEST` (with tags), the alias and the version it names."""

    latest: Mapping[str, Any] | None
    alias: Mapping[str, Any] | None
    live: Mapping[str, Any] | None

    @classmethod
    def read(cls, clients: Clients, target: Target) -> FunctionState:
        lam = clients.lambda_
        latest = aws.unless_missing(lambda: lam.get_function(FunctionName=target.function))
        if latest is None:
            return cls(None, None, None)
        alias = aws.unless_missing(
            lambda: lam.get_alias(FunctionName=target.function, Name=models.ALIAS)
        )
        live = None
        if alias is not None:
            live = lam.get_function_configuration(
                FunctionName=target.function, Qualifier=models.ALIAS
            )
        return cls(latest, alias, live)


def pool_of(statement: Mapping[str, Any]) -> str | None:
    """The pool id a Cognito statement names ("*" when it names none or a wildcard)."""
    sources = [
        v
        for operator in (statement.get("Condition") or {}).values()
        for key, value in (operator or {}).items()
        if key.lower() == "aws:sourcearn"
        for v in ([value] if isinstance(value, str) else value)
    ]
    if len(sources) != 1 or "/" not in sources[0]:
        return "*"
    pool_id = sources[0].rsplit("/", 1)[1]
    return "*" if "*" in pool_id or "?" in pool_id else pool_id


def cognito_statements(
    clients: Clients, target: Target, qualifier: str | None = None
) -> list[dict[str, Any]]:
    """The statements letting Cognito invoke the function (or its alias `qualifier`)."""
    kwargs = {"FunctionName": target.function}
    if qualifier:
        kwargs["Qualifier"] = qualifier
    answer = aws.unless_missing(lambda: clients.lambda_.get_policy(**kwargs))
    if answer is None:
        return []
    arn = target.function_arn + (f":{qualifier}" if qualifier else "")
    statements = json.loads(answer["Policy"]).get("Statement", [])
    return [
        s
        for s in statements
        if (s.get("Principal") or {}).get("Service") == "cognito-idp.amazonaws.com"
        # Each qualifier has its own policy on AWS; keep only this one's (moto shares them).
        and s.get("Resource", arn) == arn
    ]


def permission_is_exact(statement: Mapping[str, Any], target: Target) -> bool:
    condition = statement.get("Condition") or {}
    return (
        str(statement.get("Sid", "")).startswith(target.permission_id)
        and statement.get("Effect") == "Allow"
        and statement.get("Action") == "lambda:InvokeFunction"
        and (condition.get("ArnLike") or {}).get("AWS:SourceArn") == target.pool_arn
        and (condition.get("StringEquals") or {}).get("AWS:SourceAccount") == target.account
    )


def _code_differences(
    config: Mapping[str, Any], fn: FunctionModel, sha: str
) -> tuple[list[str], list[str]]:
    """What differs in a function configuration: (code, settings). The architecture goes
    with the code: UpdateFunctionCode is the call that changes it."""
    wanted = fn.settings
    code: list[str] = []
    if config.get("CodeSha256") != sha:
        code.append(f"code {config.get('CodeSha256')} → {sha}")
    if config.get("Architectures") != wanted["Architectures"]:
        code.append(f"architecture {config.get('Architectures')} → {wanted['Architectures']}")
    actual = {
        **config,
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables", {})},
    }
    # moto's GetFunction leaves DeadLetterConfig out even when set (AWS returns it): compared
    # only where the answer has it, so a function we created is not "updated" at every run.
    settings = {
        k: v
        for k, v in wanted.items()
        if k != "Architectures" and (k != "DeadLetterConfig" or k in actual)
    }
    return code, _differences(actual, settings)


def _configuration(fn: FunctionModel) -> dict[str, Any]:
    """UpdateFunctionConfiguration's parameters (the architecture is set with the code)."""
    return {
        "FunctionName": fn.name,
        **{k: v for k, v in fn.settings.items() if k != "Architectures"},
    }


def _plan_function(
    fn: FunctionModel, latest: Mapping[str, Any] | None, code: bytes, sha: str
) -> list[Step]:
    """A function's `$LATEST`: created, or its code, configuration and tag brought in line.
    Empty when nothing differs. Who may invoke it and what the pool names is the caller's."""
    name = f"function {fn.name}"
    # After CreateFunction the function is Pending until Active; after an update, its
    # LastUpdateStatus is InProgress until Successful (Lambda's function_*_v2 waiters).
    wait = Call("lambda_", "wait_function_updated", {"FunctionName": fn.name})
    if latest is None:
        create = {
            "FunctionName": fn.name,
            **fn.settings,
            "Code": {"ZipFile": code},
            "PackageType": "Zip",
            "Description": fn.description,
            "Tags": dict([OWNER_TAG]),
        }
        calls = [
            Call("lambda_", "create_function", create),
            Call("lambda_", "wait_function_active", {"FunctionName": fn.name}),
        ]
        if fn.reserved_concurrency is not None:
            calls.append(_reserve_concurrency(fn))
        return [Step(name, CREATE, f"{fn.summary}, {len(code):,} byte zip", tuple(calls))]
    code_diff, settings_diff = _code_differences(latest["Configuration"], fn, sha)
    steps: list[Step] = []
    # Configuration (runtime, handler) first: after a runtime's "block function update" date
    # Lambda refuses updates to a function still on it (Lambda's runtime deprecation policy),
    # the guide's nodejs18.x included; moved to python3.13 first, its code can then change.
    # The pool runs the alias meanwhile, never this half-updated $LATEST.
    if settings_diff:
        steps.append(
            Step(
                name,
                UPDATE,
                "; ".join(settings_diff),
                (Call("lambda_", "update_function_configuration", _configuration(fn)), wait),
            )
        )
    if code_diff:
        update = {
            "FunctionName": fn.name,
            "ZipFile": code,
            "Architectures": fn.settings["Architectures"],
        }
        steps.append(
            Step(
                name,
                UPDATE,
                "; ".join(code_diff),
                (Call("lambda_", "update_function_code", update), wait),
            )
        )
    reserved = (latest.get("Concurrency") or {}).get("ReservedConcurrentExecutions")
    if fn.reserved_concurrency is not None and reserved != fn.reserved_concurrency:
        steps.append(
            Step(
                name,
                UPDATE,
                f"reserved concurrency {reserved} → {fn.reserved_concurrency}",
                (_reserve_concurrency(fn),),
            )
        )
    if not tagged(latest.get("Tags")):
        steps.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (
                    Call(
                        "lambda_",
                        "tag_resource",
                        {"Resource": fn.arn, "Tags": dict([OWNER_TAG])},
                    ),
                ),
            )
        )
    return steps


def _reserve_concurrency(fn: FunctionModel) -> Call:
    params = {"FunctionName": fn.name, "ReservedConcurrentExecutions": fn.reserved_concurrency}
    return Call("lambda_", "put_function_concurrency", params)


def _release(target: Target, sha: str, *, alias_exists: bool) -> Call:
    return Call(
        "lambda_",
        "release",
        {"FunctionName": target.function, "CodeSha256": sha, "alias_exists": alias_exists},
    )


def _add_permission(target: Target, statement_id: str) -> Call:
    wanted = {**models.invoke_permission(target), "StatementId": statement_id}
    return Call(
        "lambda_",
        "add_permission",
        {"FunctionName": target.function, "Qualifier": models.ALIAS, **wanted},
    )


def _alias_permission_steps(
    target: Target, statements: list[dict[str, Any]]
) -> tuple[list[Step], list[Step]]:
    """(add, remove): this pool's exact statement on the alias is added before any other
    statement for this pool is removed, so Cognito may invoke at every moment."""
    name = f"invoke permission {target.permission_id}"
    exact = [s for s in statements if permission_is_exact(s, target)]
    mine = [s for s in statements if pool_of(s) == target.user_pool_id and s not in exact]
    add: list[Step] = []
    if not exact:
        taken = {str(s.get("Sid")) for s in statements}
        sid = next(
            sid
            for n in range(1, 100)
            if (sid := target.permission_id + ("" if n == 1 else f"-{n}")) not in taken
        )
        add.append(
            Step(
                name,
                CREATE,
                f"cognito-idp.amazonaws.com may invoke {target.function}:{models.ALIAS} from "
                f"{target.pool_arn}, account {target.account} only (without it every sign-up "
                "fails with AccessDeniedException)",
                (_add_permission(target, sid),),
            )
        )
    remove = [
        Step(
            f"invoke permission {s.get('Sid')} ({models.ALIAS})",
            DELETE,
            f"lets Cognito invoke for {target.user_pool_id} more broadly than the statement "
            "above (removed after it was added)",
            (
                Call(
                    "lambda_",
                    "remove_permission",
                    {
                        "FunctionName": target.function,
                        "Qualifier": models.ALIAS,
                        "StatementId": s.get("Sid"),
                    },
                ),
            ),
        )
        for s in mine
    ]
    return add, remove


def _bare_permission_cleanup(target: Target, statements: list[dict[str, Any]]) -> list[Step]:
    """Statements of the bare function for this pool: unused once the pool names the alias
    (the guide's wildcard-account `AllowCognitoInvoke`, or an older deploy's)."""
    return [
        Step(
            f"invoke permission {s.get('Sid')}",
            DELETE,
            f"on the bare function, for {target.user_pool_id}: the pool now invokes the alias "
            f"{models.ALIAS} (removed only after the pool was moved)",
            (
                Call(
                    "lambda_",
                    "remove_permission",
                    {"FunctionName": target.function, "StatementId": s.get("Sid")},
                ),
            ),
        )
        for s in statements
        if pool_of(s) == target.user_pool_id
    ]


def _trigger_function_steps(
    target: Target,
    clients: Clients,
    code: bytes,
    settings: pool.PoolSettings,
    force: bool,
) -> tuple[list[Step], list[str]]:
    """The trigger function's steps, in an order that never lets the pool invoke a
    half-updated function; and the trigger slots already moved onto the alias by them."""
    fn = models.trigger_function(target)
    name = f"function {target.function}"
    sha = code_sha256_b64(code)
    state = FunctionState.read(clients, target)
    alias_statements = (
        cognito_statements(clients, target, models.ALIAS) if state.alias is not None else []
    )
    add, remove = _alias_permission_steps(target, alias_statements)
    latest = _plan_function(fn, state.latest, code, sha)
    if state.latest is None:
        release = Step(
            f"{name}:{models.ALIAS}",
            CREATE,
            f"publish the new code as a version; alias {models.ALIAS} names it",
            (_release(target, sha, alias_exists=False),),
        )
        return [*latest, release, *add, *remove], []

    config = state.latest["Configuration"]
    code_diff, settings_diff = _code_differences(config, fn, sha)
    _refuse_shared_change(target, clients, state, alias_statements, sha)
    changes_code = bool(code_diff or settings_diff)
    live_code, live_settings = (
        _code_differences(state.live, fn, sha) if state.live is not None else (["-"], [])
    )
    live_diff = live_code + live_settings
    steps: list[Step] = []
    moved: list[str] = []
    config_now = settings.lambda_config
    on_bare = [
        s
        for s in models.TRIGGER_SLOTS
        if config_now.get(s) in (target.function_arn, f"{target.function_arn}:$LATEST")
    ]
    if on_bare and changes_code:
        # The pool runs $LATEST, which is about to change: first freeze what it runs now into
        # a version, let Cognito invoke the alias naming it, and move the pool there.
        if state.alias is None:
            steps.append(
                Step(
                    f"{name}:{models.ALIAS}",
                    CREATE,
                    f"publish the code the pool runs now ({config.get('Runtime')}) as a "
                    f"version; alias {models.ALIAS} names it, so $LATEST can change while "
                    "the pool keeps running it",
                    (_release(target, str(config.get("CodeSha256")), alias_exists=False),),
                )
            )
        steps += add
        add = []
        steps.append(
            Step(
                f"user pool {target.user_pool_id} triggers",
                UPDATE,
                f"{', '.join(on_bare)} → {target.function}:{models.ALIAS} (the same code, "
                "before it changes); every other setting sent back unchanged",
                (
                    Call(
                        "pool",
                        "attach",
                        {"slots": tuple(on_bare), "function_arn": target.alias_arn, "force": False},
                    ),
                ),
            )
        )
        moved = on_bare
    steps += latest
    if changes_code or live_diff:
        steps.append(
            Step(
                f"{name}:{models.ALIAS}",
                UPDATE if state.alias is not None or moved else CREATE,
                f"publish the updated function as a version, then move alias {models.ALIAS} "
                "to it in one call: Cognito switches from the old code to the new at once",
                (_release(target, sha, alias_exists=state.alias is not None or bool(moved)),),
            )
        )
    steps += add + remove
    if not steps:
        steps.append(
            Step(
                name,
                NO_CHANGE,
                f"code and configuration as they should be, alias {models.ALIAS} names them",
            )
        )
    return steps, moved


def _refuse_shared_change(
    target: Target,
    clients: Clients,
    state: FunctionState,
    alias_statements: list[dict[str, Any]],
    sha: str,
) -> None:
    """One function may serve several pools (one permission statement each), but then it has
    one table and one configuration: a deploy for one pool must not change it for another."""
    others = sorted(
        {p for s in alias_statements if (p := pool_of(s)) not in (None, "*", target.user_pool_id)}
    )
    if others and state.live is not None:
        _, settings_diff = _code_differences(state.live, models.trigger_function(target), sha)
        variables = [d for d in settings_diff if d.startswith(("Environment", "Role"))]
        if variables:
            raise SharedFunctionConflict(target, others, variables)
    bare = [
        p
        for s in cognito_statements(clients, target)
        if (p := pool_of(s)) not in (None, "*", target.user_pool_id)
    ]
    assert state.latest is not None
    code_diff, settings_diff = _code_differences(
        state.latest["Configuration"], models.trigger_function(target), sha
    )
    if bare and (code_diff or settings_diff):
        raise BareFunctionInUse(target, sorted(set(bare)))


def _plan_alarm(wanted: Mapping[str, Any], clients: Clients) -> list[Step]:
    """An alarm as `wanted` describes it (the trigger's failed writes, the change handler's
    dropped events)."""
    alarm_name = wanted["AlarmName"]
    name = f"alarm {alarm_name}"
    metric = wanted["MetricName"]
    found = clients.cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    if not found:
        return [
            Step(
                name,
                CREATE,
                f"any {metric} in 5 minutes",
                (Call("cloudwatch", "put_metric_alarm", {**wanted, "Tags": tag_list()}),),
            )
        ]
    diff = _differences(found[0], wanted)
    if diff:
        return [
            Step(name, UPDATE, "; ".join(diff), (Call("cloudwatch", "put_metric_alarm", wanted),))
        ]
    return [Step(name, NO_CHANGE, f"on {metric}")]


def _trigger_step(
    target: Target, clients: Clients, settings: pool.PoolSettings, force: bool, moved: list[str]
) -> tuple[Step, dict[str, str]]:
    """Attach every slot that is free or ours; a slot another function holds is refused
    (replaced with `force`) — and the others are attached all the same."""
    name = f"user pool {target.user_pool_id} triggers"
    slots = models.TRIGGER_SLOTS
    config = settings.lambda_config
    foreign = pool.foreign_slots(settings, slots, target.function_arn)
    refused = {} if force else foreign
    pending = [
        s
        for s in slots
        if config.get(s) != target.alias_arn and s not in refused and s not in moved
    ]
    held = "".join(
        f"; refused: {s} is {arn} (--force replaces it)" for s, arn in sorted(refused.items())
    )
    if pending:
        # Refuses now, in the plan, a pool whose settings UpdateUserPool would reset.
        pool.update_request(clients.cognito, settings, config)
        replaced = "".join(f"; replaces {foreign[s]}" for s in pending if s in foreign)
        return Step(
            name,
            UPDATE,
            f"{', '.join(pending)} → {target.function}:{models.ALIAS}, every other "
            f"setting sent back unchanged{replaced}{held}",
            (
                Call(
                    "pool",
                    "attach",
                    {"slots": tuple(pending), "function_arn": target.alias_arn, "force": force},
                ),
            ),
        ), refused
    done = [s for s in slots if s not in refused]
    shown = f"{' and '.join(done)} → {target.function}:{models.ALIAS}" if done else "nothing"
    return Step(name, NO_CHANGE, f"{shown}{held}"), refused


# --- the change handler -------------------------------------------------------------------


def _change_handler_steps(target: Target, clients: Clients, code: bytes) -> list[Step]:
    """The change handler's resources: its queue, log group, role and function (the same
    planners as the trigger's), its rule and the rule's permission to invoke it."""
    fn = models.change_function(target)
    latest = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=fn.name))
    function = _plan_function(fn, latest, code, code_sha256_b64(code)) or [
        Step(f"function {fn.name}", NO_CHANGE, "code and configuration as they should be")
    ]
    return [
        *_queue_steps(target, clients),
        *log_group_steps(clients, fn.log_group, target.log_retention_days),
        *_plan_role(models.change_role(target), target, clients),
        *function,
        *_rule_steps(target, clients),
        *_permission_steps(target, clients),
        *_plan_alarm(models.change_alarm(target), clients),
    ]


def _reconcile_steps(target: Target, clients: Clients, code: bytes) -> list[Step]:
    """The scheduled reconcile (`livekart_users.scheduled`): its checkpoint table, log group,
    role and function (the same planners as the others'), reserved concurrency 1 (two
    invocations never work on one run), the schedule's rule and its permission to invoke."""
    from livekart_users.checkpoint import state_table_spec

    names = models.ReconcileNames(target)
    fn = models.reconcile_function(target)
    latest = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=fn.name))
    function = _plan_function(fn, latest, code, code_sha256_b64(code)) or [
        Step(f"function {fn.name}", NO_CHANGE, "code and configuration as they should be")
    ]
    steps: list[Step] = []
    table = aws.unless_missing(lambda: clients.dynamodb.describe_table(TableName=names.state_table))
    if table is None:
        spec = {**state_table_spec(names.state_table), "Tags": tag_list()}
        wait = Call("dynamodb", "wait_table", {"TableName": names.state_table})
        steps.append(
            Step(
                f"table {names.state_table}",
                CREATE,
                "the scheduled reconcile's checkpoints (no user data)",
                (Call("dynamodb", "create_table", spec), wait),
            )
        )
    else:
        steps.append(Step(f"table {names.state_table}", NO_CHANGE, "its checkpoints"))
    steps += log_group_steps(clients, fn.log_group, target.log_retention_days)
    steps += _plan_role(models.reconcile_role(target), target, clients)
    steps += function
    concurrency = {} if latest is None else _concurrency(clients, fn.name)
    if concurrency.get("ReservedConcurrentExecutions") != 1:
        put = {"FunctionName": fn.name, "ReservedConcurrentExecutions": 1}
        steps.append(
            Step(
                f"function {fn.name}",
                UPDATE,
                "reserved concurrency 1: one invocation at a time works on a run",
                (Call("lambda_", "put_function_concurrency", put),),
            )
        )
    steps += _schedule_steps(target, clients)
    steps += _schedule_permission_steps(target, clients)
    return steps


def _concurrency(clients: Clients, function: str) -> dict[str, Any]:
    return dict(clients.lambda_.get_function_concurrency(FunctionName=function))


def _schedule_steps(target: Target, clients: Clients) -> list[Step]:
    names = models.ReconcileNames(target)
    name = f"EventBridge rule {names.rule}"
    every = target.reconcile_every_seconds
    put_rule = Call(
        "events",
        "put_rule",
        {
            "Name": names.rule,
            "ScheduleExpression": models.RECONCILE_SCHEDULE,
            "State": "ENABLED",
            "Description": f"livekart-users: reconcile {target.user_pool_id} every {every} s",
            "Tags": tag_list(),
        },
    )
    wanted = models.reconcile_rule_target(target)
    put_targets = Call("events", "put_targets", {"Rule": names.rule, "Targets": [wanted]})
    found = aws.unless_missing(lambda: clients.events.describe_rule(Name=names.rule))
    if found is None:
        return [
            Step(
                name,
                CREATE,
                f"{models.RECONCILE_SCHEDULE} → {names.function} (a run every {every} s)",
                (put_rule, put_targets),
            )
        ]
    steps: list[Step] = []
    if (
        found.get("ScheduleExpression") != models.RECONCILE_SCHEDULE
        or found.get("State") != "ENABLED"
    ):
        steps.append(Step(name, UPDATE, f"{models.RECONCILE_SCHEDULE}; enabled", (put_rule,)))
    targets = clients.events.list_targets_by_rule(Rule=names.rule).get("Targets", [])
    if [_comparable(t) for t in targets] != [_comparable(wanted)]:
        steps.append(Step(name, UPDATE, f"target → {names.function}", (put_targets,)))
    return steps or [Step(name, NO_CHANGE, f"{models.RECONCILE_SCHEDULE} → {names.function}")]


def _schedule_permission_steps(target: Target, clients: Clients) -> list[Step]:
    permission = models.reconcile_invoke_permission(target)
    names = models.ReconcileNames(target)
    return _events_permission_steps(clients, names, models.RECONCILE_PERMISSION_ID, permission)


def queue_url(clients: Clients, name: str) -> str | None:
    try:
        return str(clients.sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except Exception as exc:
        if "NonExistentQueue" in aws.error_code(exc) or "QueueDoesNotExist" in aws.error_code(exc):
            return None
        raise


def _queue_steps(target: Target, clients: Clients) -> list[Step]:
    names = models.ChangeNames(target)
    name = f"dead-letter queue {names.queue}"
    wanted = {
        "MessageRetentionPeriod": str(models.QUEUE_RETENTION_SECONDS),
        "Policy": json.dumps(models.queue_policy(target)),
    }
    url = queue_url(clients, names.queue)
    if url is None:
        return [
            Step(
                name,
                CREATE,
                "failed change events are kept 14 days, not lost",
                (
                    Call(
                        "sqs",
                        "create_queue",
                        {
                            "QueueName": names.queue,
                            "Attributes": wanted,
                            "tags": dict([OWNER_TAG]),
                        },
                    ),
                ),
            )
        ]
    found = clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["MessageRetentionPeriod", "Policy"]
    ).get("Attributes", {})
    same_policy = found.get("Policy") and models.normalise_policy(
        found["Policy"]
    ) == models.normalise_policy(wanted["Policy"])
    if found.get("MessageRetentionPeriod") != wanted["MessageRetentionPeriod"] or not same_policy:
        return [
            Step(
                name,
                UPDATE,
                "retention 14 days; only the rule may send",
                (Call("sqs", "set_queue_attributes", {"QueueUrl": url, "Attributes": wanted}),),
            )
        ]
    return [Step(name, NO_CHANGE, "14 days; only the rule may send")]


def _rule_steps(target: Target, clients: Clients) -> list[Step]:
    names = models.ChangeNames(target)
    name = f"EventBridge rule {names.rule}"
    pattern = models.event_pattern(target)
    put_rule = Call(
        "events",
        "put_rule",
        {
            "Name": names.rule,
            "EventPattern": json.dumps(pattern),
            "State": "ENABLED",
            "Description": f"livekart-users: user changes in {target.user_pool_id}",
            "Tags": tag_list(),
        },
    )
    put_targets = Call(
        "events", "put_targets", {"Rule": names.rule, "Targets": [models.rule_target(target)]}
    )
    found = aws.unless_missing(lambda: clients.events.describe_rule(Name=names.rule))
    if found is None:
        return [
            Step(
                name,
                CREATE,
                f"CloudTrail's {len(contract.HANDLED)} user calls of this pool → "
                f"{names.function} (dead letters to {names.queue})",
                (put_rule, put_targets),
            )
        ]
    steps: list[Step] = []
    same = json.loads(found.get("EventPattern") or "{}") == pattern
    if not same or found.get("State") != "ENABLED":
        steps.append(Step(name, UPDATE, "pattern → this pool's calls; enabled", (put_rule,)))
    targets = clients.events.list_targets_by_rule(Rule=names.rule).get("Targets", [])
    if [_comparable(t) for t in targets] != [_comparable(models.rule_target(target))]:
        steps.append(Step(name, UPDATE, f"target → {names.function}", (put_targets,)))
    return steps or [Step(name, NO_CHANGE, f"this pool's calls → {names.function}")]


def _comparable(target: Mapping[str, Any]) -> dict[str, Any]:
    return {k: target.get(k) for k in ("Id", "Arn", "RetryPolicy", "DeadLetterConfig")}


def _events_statement(clients: Clients, function: str, sid: str) -> dict[str, Any] | None:
    answer = aws.unless_missing(lambda: clients.lambda_.get_policy(FunctionName=function))
    if answer is None:
        return None
    for statement in json.loads(answer["Policy"]).get("Statement", []):
        if statement.get("Sid") == sid:
            return dict(statement)
    return None


def _permission_steps(target: Target, clients: Clients) -> list[Step]:
    permission = models.change_invoke_permission(target)
    names = models.ChangeNames(target)
    return _events_permission_steps(clients, names, models.CHANGE_PERMISSION_ID, permission)


def _events_permission_steps(
    clients: Clients, names: models.ChangeNames, sid: str, permission: dict[str, Any]
) -> list[Step]:
    """EventBridge may invoke the function from its own rule only (the change handler's rule
    or the reconcile schedule): the statement `sid`, repaired when its source differs."""
    name = f"invoke permission {sid}"
    add = Call("lambda_", "add_permission", {"FunctionName": names.function, **permission})
    ours = _events_statement(clients, names.function, sid)
    if ours is None:
        return [Step(name, CREATE, f"events.amazonaws.com from {names.rule_arn} only", (add,))]
    condition = (ours.get("Condition") or {}).get("ArnLike") or {}
    if condition.get("AWS:SourceArn") != names.rule_arn:
        remove = Call(
            "lambda_", "remove_permission", {"FunctionName": names.function, "StatementId": sid}
        )
        return [Step(name, UPDATE, f"source → {names.rule_arn}", (remove, add))]
    return [Step(name, NO_CHANGE, f"EventBridge from {names.rule} only")]


def _trail(target: Target, clients: Clients) -> tuple[Step, list[Notice]]:
    """No trail, no change events: deploy still succeeds, and warns what that means."""
    found = trail.find_trail(clients.cloudtrail, target.region, target.account)
    if found.found:
        return Step("CloudTrail", NO_CHANGE, found.describe(target.region)), []
    missing = f"no trail logs management write events in {target.region}"
    notice = Notice(
        "CloudTrail",
        f"{missing}: deletions and attribute changes reach the table only through sign-in "
        "and reconcile until one does",
        trail.trail_fix(target.region),
    )
    return Step("CloudTrail", NO_CHANGE, f"{missing} (see the warning)"), [notice]


def _rows(count: int) -> str:
    return f"{count:,} row" + ("" if count == 1 else "s")


def _shared_table(target: Target, clients: Clients) -> list[Notice]:
    """Say plainly when the table already holds another pool's users (or rows recording no
    pool, which may be anyone's). Sharing is supported — each row records its pool, and
    nothing one pool does changes another's rows — so this warns, it does not refuse."""
    table = UsersTable(clients.dynamodb, target.table)
    if not table.exists():
        return []
    census = table.pool_census()
    others = census.others(target.user_pool_id)
    if not others and not census.no_pool:
        return []
    sample = "" if census.complete else f" (in the first {census.rows:,} rows read)"
    parts = [f"{_rows(n)} of pool {p}" for p, n in sorted(others.items())]
    if census.no_pool:
        record = "records" if census.no_pool == 1 else "record"
        parts.append(f"{_rows(census.no_pool)} that {record} no pool (written before rows did)")
    return [
        Notice(
            f"table {target.table}",
            f"already holds {', '.join(parts)}{sample}: pool {target.user_pool_id} will share "
            "it. Each row records its pool and no pool changes another's rows, but they share "
            "capacity, backups and every scan",
            f"for a table of its own: livekart-users deploy --user-pool-id "
            f"{target.user_pool_id} --table livekart-users-{target.user_pool_id}",
        )
    ]


# --- attach / detach (the step CloudFormation cannot take) --------------------------------------


class CannotAttach(LivekartUsersError):
    """Attaching would point the pool at a function that cannot serve it."""


def attach_arn(clients: Clients, target: Target, *, allow_unmanaged: bool = False) -> str:
    """The ARN the pool's triggers should name: the function's alias `live` if it has one (a
    deploy's), else the function itself (a CloudFormation stack's). Refuses a function that
    does not exist, one not managed by livekart-users unless `allow_unmanaged`, and one
    Cognito may not invoke from this pool: each would fail every sign-up, or run someone
    else's code."""
    lam = clients.lambda_
    found = aws.unless_missing(lambda: lam.get_function(FunctionName=target.function))
    if found is None:
        raise CannotAttach(
            f"function {target.function} does not exist in {target.region}: attaching it would "
            "fail every sign-up. Check --function-name, or create it first (`livekart-users "
            "deploy`, or the CloudFormation template)"
        )
    if not tagged(found.get("Tags")) and not allow_unmanaged:
        raise CannotAttach(
            f"function {target.function} is not managed by livekart-users (no tag "
            f"{OWNER_TAG[0]}={OWNER_TAG[1]}): pass --allow-unmanaged to attach it anyway"
        )
    alias = aws.unless_missing(
        lambda: lam.get_alias(FunctionName=target.function, Name=models.ALIAS)
    )
    qualifier = models.ALIAS if alias is not None else None
    arn = target.alias_arn if qualifier else target.function_arn
    statements = cognito_statements(clients, target, qualifier)
    if not any(pool_of(s) in (target.user_pool_id, "*") for s in statements):
        raise CannotAttach(
            f"Cognito may not invoke {arn.split(':function:', 1)[1]} from pool "
            f"{target.user_pool_id}: attaching it would fail every sign-up with "
            f"AccessDeniedException. Run `livekart-users deploy --user-pool-id "
            f"{target.user_pool_id}` (or give the stack this pool's UserPoolId) first"
        )
    return arn
