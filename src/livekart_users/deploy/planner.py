"""Reads what exists (read-only calls only) and returns the steps that make it what should be.

Each step names a resource, an action (create / update / delete / no change) and the reason,
and carries the exact API calls the executor will make. A dry run prints the steps; `apply`
hands the same plan to the executor. `plan_destroy` is "deploy nothing": remove what is ours.

The order of the steps is what keeps a live pool working (docs/deploy.md, "No downtime"): the
pool names the function's alias `live`; `$LATEST` changes, is published, then the alias moves
in one call; a permission is added before any is removed; the pool is detached before anything
it names is deleted. One function may serve several pools, with one statement each.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from livekart_users import aws, erasure
from livekart_users.deploy import models, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import OWNER_TAG, Target
from livekart_users.exceptions import LivekartUsersError
from livekart_users.table import EMAIL_INDEX

CREATE, UPDATE, DELETE, NO_CHANGE = "create", "update", "delete", "no change"


class TableKeyMismatch(LivekartUsersError):
    def __init__(self, table: str, key: Any) -> None:
        super().__init__(
            f"table {table} exists with another key schema ({key}); livekart-users needs "
            "partition key user_id (S) and never replaces a table: pass --table to use another"
        )


@dataclass(frozen=True)
class Call:
    """One API call: `service` is a Clients attribute (or "pool" for the trigger attach)."""

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    resource: str
    action: str
    reason: str
    calls: tuple[Call, ...] = ()


@dataclass
class Plan:
    target: Target
    steps: list[Step]
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> list[Step]:
        return [s for s in self.steps if s.action != NO_CHANGE]


def _tagged(tags: Mapping[str, str] | None) -> bool:
    return (tags or {}).get(OWNER_TAG[0]) == OWNER_TAG[1]


def _tag_map(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _stack_of(tags: Mapping[str, str] | None) -> str | None:
    """The CloudFormation stack that owns a resource (CloudFormation tags what it creates
    `aws:cloudformation:stack-name`; our template adds `STACK_TAG`, which IAM roles keep too)."""
    tags = tags or {}
    return tags.get("aws:cloudformation:stack-name") or tags.get(models.STACK_TAG)


def _tag_list() -> list[dict[str, str]]:
    return [{"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}]


def _differences(actual: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {actual.get(k)!r} → {v!r}" for k, v in desired.items() if actual.get(k) != v]


# --- deploy ---------------------------------------------------------------------------------


def plan_deploy(
    target: Target, clients: Clients, *, force: bool = False, code: bytes | None = None
) -> Plan:
    """Every step that makes the account match `target`; reads only.

    The order is what keeps a live pool working: the function is complete (code, settings,
    published version, invoke permission) before the pool names it, and a statement or a
    version the pool may still use is removed only after the pool has moved off it.
    """
    if code is None:
        from livekart_users.deploy import package

        code = package.build_zip(target.architecture).data
    from livekart_users.deploy import change_handler

    models.environment(target)  # validates the extra-fields setting before anything else
    erasure.parse_policy(target.erasure_policy)  # and the erasure policy
    settings = pool.describe(clients.cognito, target.user_pool_id)
    bare = cognito_statements(clients, target)
    function_steps, moved = _function_steps(target, clients, code, settings, force)
    steps = [
        *_table_steps(target, clients),
        *log_group_steps(clients, target.log_group, target.log_retention_days),
        *_role_steps(target, clients),
        *function_steps,
        *_alarm_steps(target, clients),
        *change_handler.plan_steps(target, clients, code),
    ]
    trigger_step, refused = _trigger_step(target, clients, settings, force, moved)
    steps.append(trigger_step)
    steps += _bare_permission_cleanup(target, bare)
    return Plan(target, steps, refused)


def _enable_point_in_time_recovery(target: Target) -> Call:
    return Call(
        "dynamodb",
        "update_continuous_backups",
        {
            "TableName": target.table,
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
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
    if pitr.get("PointInTimeRecoveryStatus") != "ENABLED":
        steps.append(
            Step(
                name,
                UPDATE,
                "point-in-time recovery off → on",
                (_enable_point_in_time_recovery(target),),
            )
        )
    tags = _table_tags(clients, table)
    if not _tagged(_tag_map(tags)):
        steps.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (
                    Call(
                        "dynamodb",
                        "tag_resource",
                        {"ResourceArn": table["TableArn"], "Tags": _tag_list()},
                    ),
                ),
            )
        )
    return steps or [Step(name, NO_CHANGE, "key, index, billing and protection as they should be")]


def _table_tags(clients: Clients, table: Mapping[str, Any]) -> list[dict[str, str]]:
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


def _role_steps(target: Target, clients: Clients) -> list[Step]:
    name = f"role {target.role}"
    policy = json.dumps(models.role_policy(target))
    found = aws.unless_missing(lambda: clients.iam.get_role(RoleName=target.role))
    if found is None:
        return [
            Step(
                name,
                CREATE,
                "trusts Lambda only; may PutItem/UpdateItem this table and write its own logs",
                (
                    Call(
                        "iam",
                        "create_role",
                        {
                            "RoleName": target.role,
                            "AssumeRolePolicyDocument": json.dumps(
                                models.trust_policy(target.account)
                            ),
                            "Description": "livekart-users Cognito trigger",
                            "Tags": _tag_list(),
                        },
                    ),
                    Call(
                        "iam",
                        "put_role_policy",
                        {
                            "RoleName": target.role,
                            "PolicyName": models.POLICY_NAME,
                            "PolicyDocument": policy,
                        },
                    ),
                    Call("iam", "wait_role", {"RoleName": target.role}),
                ),
            )
        ]
    role = found["Role"]
    steps: list[Step] = []
    trust = trust_update(role["AssumeRolePolicyDocument"], target.account)
    if trust is not None:
        steps.append(
            Step(
                name,
                UPDATE,
                "trust policy → lambda.amazonaws.com only, for account "
                f"{target.account} (conditions and Deny statements already there are kept)",
                (
                    Call(
                        "iam",
                        "update_assume_role_policy",
                        {"RoleName": target.role, "PolicyDocument": json.dumps(trust)},
                    ),
                ),
            )
        )
    inline = clients.iam.list_role_policies(RoleName=target.role)["PolicyNames"]
    current = None
    if models.POLICY_NAME in inline:
        current = clients.iam.get_role_policy(RoleName=target.role, PolicyName=models.POLICY_NAME)[
            "PolicyDocument"
        ]
    if current is None or models.normalise_policy(current) != models.normalise_policy(policy):
        steps.append(
            Step(
                name,
                CREATE if current is None else UPDATE,
                f"inline policy {models.POLICY_NAME}: PutItem/UpdateItem on "
                f"{target.table}, own log streams",
                (
                    Call(
                        "iam",
                        "put_role_policy",
                        {
                            "RoleName": target.role,
                            "PolicyName": models.POLICY_NAME,
                            "PolicyDocument": policy,
                        },
                    ),
                ),
            )
        )
    for other in sorted(set(inline) - {models.POLICY_NAME}):
        steps.append(
            Step(
                name,
                DELETE,
                f"inline policy {other}: broader than the trigger needs",
                (
                    Call(
                        "iam", "delete_role_policy", {"RoleName": target.role, "PolicyName": other}
                    ),
                ),
            )
        )
    attached = clients.iam.list_attached_role_policies(RoleName=target.role)["AttachedPolicies"]
    for managed in attached:
        steps.append(
            Step(
                name,
                DELETE,
                f"managed policy {managed['PolicyName']}: grants more "
                "than the function's own log group",
                (
                    Call(
                        "iam",
                        "detach_role_policy",
                        {"RoleName": target.role, "PolicyArn": managed["PolicyArn"]},
                    ),
                ),
            )
        )
    if not _tagged({t["Key"]: t["Value"] for t in role.get("Tags", [])}):
        steps.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (Call("iam", "tag_role", {"RoleName": target.role, "Tags": _tag_list()}),),
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


def _pool_of(statement: Mapping[str, Any]) -> str | None:
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
    config: Mapping[str, Any], target: Target, sha: str
) -> tuple[list[str], list[str]]:
    """What differs in a function configuration: (code, settings)."""
    wanted = models.function_settings(target)
    code: list[str] = []
    if config.get("CodeSha256") != sha:
        code.append(f"code {config.get('CodeSha256')} → {sha}")
    if config.get("Architectures") != wanted["Architectures"]:
        code.append(f"architecture {config.get('Architectures')} → {wanted['Architectures']}")
    actual = {
        **config,
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables", {})},
    }
    settings = {k: v for k, v in wanted.items() if k != "Architectures"}
    return code, _differences(actual, settings)


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
    mine = [s for s in statements if _pool_of(s) == target.user_pool_id and s not in exact]
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
        if _pool_of(s) == target.user_pool_id
    ]


def _function_steps(
    target: Target,
    clients: Clients,
    code: bytes,
    settings: pool.PoolSettings,
    force: bool,
) -> tuple[list[Step], list[str]]:
    """The function's steps, in an order that never lets the pool invoke a half-updated
    function; and the trigger slots already moved onto the alias by them."""
    from livekart_users.deploy import package

    name = f"function {target.function}"
    sha = package.code_sha256_b64(code)
    state = FunctionState.read(clients, target)
    alias_statements = (
        cognito_statements(clients, target, models.ALIAS) if state.alias is not None else []
    )
    add, remove = _alias_permission_steps(target, alias_statements)
    if state.latest is None:
        wanted = models.function_settings(target)
        create = Step(
            name,
            CREATE,
            f"{models.RUNTIME}, {target.architecture}, "
            f"{models.TIMEOUT_SECONDS} s, {target.memory_mb} MB, {len(code):,} byte zip",
            (
                Call(
                    "lambda_",
                    "create_function",
                    {
                        "FunctionName": target.function,
                        **wanted,
                        "Code": {"ZipFile": code},
                        "PackageType": "Zip",
                        "Description": "livekart-users: Cognito → DynamoDB users table",
                        "Tags": dict([OWNER_TAG]),
                    },
                ),
                Call("lambda_", "wait_function_active", {"FunctionName": target.function}),
            ),
        )
        release = Step(
            f"{name}:{models.ALIAS}",
            CREATE,
            f"publish the new code as a version; alias {models.ALIAS} names it",
            (_release(target, sha, alias_exists=False),),
        )
        return [create, release, *add, *remove], []

    config = state.latest["Configuration"]
    code_diff, settings_diff = _code_differences(config, target, sha)
    _refuse_shared_change(target, clients, state, alias_statements, sha)
    latest: list[Step] = []
    if code_diff:
        latest.append(
            Step(
                name,
                UPDATE,
                "; ".join(code_diff) + f" ($LATEST: the pool runs the alias {models.ALIAS})",
                (
                    Call(
                        "lambda_",
                        "update_function_code",
                        {
                            "FunctionName": target.function,
                            "ZipFile": code,
                            "Architectures": [target.architecture],
                        },
                    ),
                    Call("lambda_", "wait_function_updated", {"FunctionName": target.function}),
                ),
            )
        )
    if settings_diff:
        wanted = models.function_settings(target)
        latest.append(
            Step(
                name,
                UPDATE,
                "; ".join(settings_diff),
                (
                    Call(
                        "lambda_",
                        "update_function_configuration",
                        {
                            "FunctionName": target.function,
                            **{k: v for k, v in wanted.items() if k != "Architectures"},
                        },
                    ),
                    Call("lambda_", "wait_function_updated", {"FunctionName": target.function}),
                ),
            )
        )
    if not _tagged(state.latest.get("Tags")):
        latest.append(
            Step(
                name,
                UPDATE,
                f"adopt: tag {OWNER_TAG[0]}={OWNER_TAG[1]}",
                (
                    Call(
                        "lambda_",
                        "tag_resource",
                        {"Resource": target.function_arn, "Tags": dict([OWNER_TAG])},
                    ),
                ),
            )
        )
    changes_code = bool(code_diff or settings_diff)
    live_code, live_settings = (
        _code_differences(state.live, target, sha) if state.live is not None else (["-"], [])
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
        {p for s in alias_statements if (p := _pool_of(s)) not in (None, "*", target.user_pool_id)}
    )
    if others and state.live is not None:
        _, settings_diff = _code_differences(state.live, target, sha)
        variables = [d for d in settings_diff if d.startswith(("Environment", "Role"))]
        if variables:
            raise SharedFunctionConflict(target, others, variables)
    bare = [
        p
        for s in cognito_statements(clients, target)
        if (p := _pool_of(s)) not in (None, "*", target.user_pool_id)
    ]
    assert state.latest is not None
    code_diff, settings_diff = _code_differences(state.latest["Configuration"], target, sha)
    if bare and (code_diff or settings_diff):
        raise BareFunctionInUse(target, sorted(set(bare)))


def _alarm_steps(target: Target, clients: Clients) -> list[Step]:
    name = f"alarm {target.alarm_name}"
    wanted = models.alarm(target)
    found = clients.cloudwatch.describe_alarms(AlarmNames=[target.alarm_name])["MetricAlarms"]
    if not found:
        return [
            Step(
                name,
                CREATE,
                f"any {models.FAILED_METRIC} in 5 minutes",
                (Call("cloudwatch", "put_metric_alarm", {**wanted, "Tags": _tag_list()}),),
            )
        ]
    diff = _differences(found[0], wanted)
    if diff:
        return [
            Step(name, UPDATE, "; ".join(diff), (Call("cloudwatch", "put_metric_alarm", wanted),))
        ]
    return [Step(name, NO_CHANGE, f"on {models.FAILED_METRIC}")]


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


# --- destroy ---------------------------------------------------------------------------------


def plan_destroy(
    target: Target, clients: Clients, *, delete_table: bool = False, delete_logs: bool = False
) -> Plan:
    """Remove what deploy made or adopted (tagged as ours) for this pool; keep the data unless
    told, keep what still serves another pool, and never touch what a CloudFormation stack
    owns. The pool is detached first: nothing it may invoke is deleted before."""
    from livekart_users.deploy import change_handler

    plan = _plan_destroy_trigger(target, clients, delete_table, delete_logs)
    # This pool's change handler (named after the pool: it serves no other) goes right after
    # the detach; within its steps the rule goes first, so nothing is sent to a function
    # about to be deleted.
    detached = bool(plan.steps) and any(c.operation == "detach" for c in plan.steps[0].calls)
    at = 1 if detached else 0
    plan.steps[at:at] = change_handler.destroy_steps(target, clients, delete_logs=delete_logs)
    return plan


def _plan_destroy_trigger(
    target: Target, clients: Clients, delete_table: bool, delete_logs: bool
) -> Plan:
    steps: list[Step] = []
    settings = pool.describe(clients.cognito, target.user_pool_id)
    ours = [
        s
        for s in models.TRIGGER_SLOTS
        if pool.is_ours(settings.lambda_config.get(s), target.function_arn)
    ]
    if ours:
        pool.update_request(clients.cognito, settings, settings.lambda_config)
        steps.append(
            Step(
                f"user pool {target.user_pool_id} triggers",
                DELETE,
                f"detach {', '.join(ours)}; every other setting and trigger stays",
                (Call("pool", "detach"),),
            )
        )
    function = aws.unless_missing(
        lambda: clients.lambda_.get_function(FunctionName=target.function)
    )
    stack = _stack_of(function.get("Tags")) if function is not None else None
    if function is not None and stack:
        steps.append(_stack_owned(f"function {target.function}", stack))
        return Plan(target, steps)
    if function is None or not _tagged(function.get("Tags")):
        return Plan(target, steps + _kept_data(target, clients, delete_table, delete_logs))
    has_alias = (
        aws.unless_missing(
            lambda: clients.lambda_.get_alias(FunctionName=target.function, Name=models.ALIAS)
        )
        is not None
    )
    others: set[str] = set()
    for qualifier in ([models.ALIAS] if has_alias else []) + [None]:
        for statement in cognito_statements(clients, target, qualifier):
            pool_id = _pool_of(statement)
            if pool_id != target.user_pool_id:
                others.add(str(pool_id))
                continue
            params: dict[str, Any] = {
                "FunctionName": target.function,
                "StatementId": statement.get("Sid"),
            }
            if qualifier:
                params["Qualifier"] = qualifier
            steps.append(
                Step(
                    f"invoke permission {statement.get('Sid')}",
                    DELETE,
                    f"lets Cognito invoke from {target.user_pool_id} (detached above)",
                    (Call("lambda_", "remove_permission", params),),
                )
            )
    if others:
        # One function serves several pools: what they share stays.
        shown = ", ".join(sorted(others))
        steps.append(
            Step(
                f"function {target.function}",
                NO_CHANGE,
                f"kept, with its role, alarm and logs: it still serves pool {shown}",
            )
        )
        return Plan(target, steps + _kept_data(target, clients, delete_table, False))
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=[target.alarm_name])["MetricAlarms"]
    if alarms:
        tags = clients.cloudwatch.list_tags_for_resource(ResourceARN=alarms[0]["AlarmArn"])
        if _tagged(_tag_map(tags.get("Tags", []))) and not _stack_of(_tag_map(tags.get("Tags"))):
            steps.append(
                Step(
                    f"alarm {target.alarm_name}",
                    DELETE,
                    "ours",
                    (Call("cloudwatch", "delete_alarms", {"AlarmNames": [target.alarm_name]}),),
                )
            )
    steps.append(
        Step(
            f"function {target.function}",
            DELETE,
            "ours (with its versions and alias)",
            (Call("lambda_", "delete_function", {"FunctionName": target.function}),),
        )
    )
    role = aws.unless_missing(lambda: clients.iam.get_role(RoleName=target.role))
    role_tags = _tag_map(role["Role"].get("Tags", [])) if role is not None else {}
    if role is not None and _tagged(role_tags) and _stack_of(role_tags):
        steps.append(_stack_owned(f"role {target.role}", str(_stack_of(role_tags))))
    elif role is not None and _tagged(role_tags):
        calls = [
            Call("iam", "delete_role_policy", {"RoleName": target.role, "PolicyName": p})
            for p in clients.iam.list_role_policies(RoleName=target.role)["PolicyNames"]
        ]
        calls += [
            Call(
                "iam", "detach_role_policy", {"RoleName": target.role, "PolicyArn": p["PolicyArn"]}
            )
            for p in clients.iam.list_attached_role_policies(RoleName=target.role)[
                "AttachedPolicies"
            ]
        ]
        calls.append(Call("iam", "delete_role", {"RoleName": target.role}))
        steps.append(Step(f"role {target.role}", DELETE, "ours", tuple(calls)))
    return Plan(target, steps + _kept_data(target, clients, delete_table, delete_logs))


def _stack_owned(resource: str, stack: str) -> Step:
    return Step(
        resource,
        NO_CHANGE,
        f"kept: CloudFormation stack {stack} owns it (delete the stack to remove it)",
    )


def removable(tags: Mapping[str, str] | None) -> bool:
    """Tagged as ours, and not a CloudFormation stack's (deleting the stack removes those)."""
    return _tagged(tags) and not _stack_of(tags)


def log_group_removal(clients: Clients, name: str, delete_logs: bool) -> list[Step]:
    """A log group destroy deletes only when asked (`--delete-logs`); else it expires."""
    groups = clients.logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    if not any(g["logGroupName"] == name for g in groups):
        return []
    if delete_logs:
        delete = Call("logs", "delete_log_group", {"logGroupName": name})
        return [Step(f"log group {name}", DELETE, "--delete-logs", (delete,))]
    reason = "kept: expires by its retention (--delete-logs removes it)"
    return [Step(f"log group {name}", NO_CHANGE, reason)]


def _kept_data(
    target: Target, clients: Clients, delete_table: bool, delete_logs: bool
) -> list[Step]:
    """The log group and the table: kept unless asked, and never a stack's."""
    steps = log_group_removal(clients, target.log_group, delete_logs)
    table = aws.unless_missing(lambda: clients.dynamodb.describe_table(TableName=target.table))
    if table is None:
        return steps
    stack = _stack_of(_tag_map(_table_tags(clients, table["Table"]))) if delete_table else None
    if stack:
        steps.append(_stack_owned(f"table {target.table}", stack))
    elif delete_table:
        steps.append(
            Step(
                f"table {target.table}",
                DELETE,
                "--delete-table: its user data is lost",
                (
                    Call(
                        "dynamodb",
                        "update_table",
                        {"TableName": target.table, "DeletionProtectionEnabled": False},
                    ),
                    Call("dynamodb", "delete_table", {"TableName": target.table}),
                ),
            )
        )
    else:
        steps.append(
            Step(
                f"table {target.table}",
                NO_CHANGE,
                "kept: it holds user data (--delete-table removes it)",
            )
        )
    return steps


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
    if not _tagged(found.get("Tags")) and not allow_unmanaged:
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
    if not any(_pool_of(s) in (target.user_pool_id, "*") for s in statements):
        raise CannotAttach(
            f"Cognito may not invoke {arn.split(':function:', 1)[1]} from pool "
            f"{target.user_pool_id}: attaching it would fail every sign-up with "
            f"AccessDeniedException. Run `livekart-users deploy --user-pool-id "
            f"{target.user_pool_id}` (or give the stack this pool's UserPoolId) first"
        )
    return arn
