"""Reads what exists (read-only calls only) and returns the steps that make it what should be.

Each step names a resource, an action (create / update / delete / no change) and the reason,
and carries the exact API calls the executor will make. A dry run prints the steps; `apply`
hands the same plan to the executor. `plan_destroy` is "deploy nothing": remove what is ours.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from livekart_users import aws
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


def _tag_list() -> list[dict[str, str]]:
    return [{"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}]


def _differences(actual: Mapping[str, Any], desired: Mapping[str, Any]) -> list[str]:
    return [f"{k}: {actual.get(k)!r} → {v!r}" for k, v in desired.items() if actual.get(k) != v]


# --- deploy ---------------------------------------------------------------------------------


def plan_deploy(
    target: Target, clients: Clients, *, force: bool = False, code: bytes | None = None
) -> Plan:
    """Every step that makes the account match `target`; reads only."""
    if code is None:
        from livekart_users.deploy import package

        code = package.build_zip(target.architecture).data
    models.environment(target)  # validates the extra-fields setting before anything else
    settings = pool.describe(clients.cognito, target.user_pool_id)
    steps = [
        *_table_steps(target, clients),
        *_log_group_steps(target, clients),
        *_role_steps(target, clients),
        *_function_steps(target, clients, code),
        *_permission_steps(target, clients),
        *_alarm_steps(target, clients),
    ]
    trigger_step, refused = _trigger_step(target, clients, settings, force)
    steps.append(trigger_step)
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
                    Call("dynamodb", "wait_table", {"TableName": target.table}),
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
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(EMAIL_INDEX)
    wanted_index = spec["GlobalSecondaryIndexes"][0]
    if index is None:
        steps.append(
            Step(
                f"{name} GSI {EMAIL_INDEX}",
                CREATE,
                "the email index is missing",
                (
                    Call(
                        "dynamodb",
                        "update_table",
                        {
                            "TableName": target.table,
                            "AttributeDefinitions": spec["AttributeDefinitions"],
                            "GlobalSecondaryIndexUpdates": [{"Create": wanted_index}],
                        },
                    ),
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
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    if billing != "PAY_PER_REQUEST":
        steps.append(
            Step(
                name,
                UPDATE,
                f"billing mode {billing} → PAY_PER_REQUEST (on-demand)",
                (
                    Call(
                        "dynamodb",
                        "update_table",
                        {"TableName": target.table, "BillingMode": "PAY_PER_REQUEST"},
                    ),
                ),
            )
        )
    if not table.get("DeletionProtectionEnabled"):
        steps.append(
            Step(
                name,
                UPDATE,
                "deletion protection off → on",
                (
                    Call(
                        "dynamodb",
                        "update_table",
                        {"TableName": target.table, "DeletionProtectionEnabled": True},
                    ),
                ),
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
    tags = clients.dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"]).get("Tags", [])
    if not _tagged({t["Key"]: t["Value"] for t in tags}):
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


def _log_group_steps(target: Target, clients: Clients) -> list[Step]:
    name = f"log group {target.log_group}"
    groups = clients.logs.describe_log_groups(logGroupNamePrefix=target.log_group)["logGroups"]
    group = next((g for g in groups if g["logGroupName"] == target.log_group), None)
    retention = {"logGroupName": target.log_group, "retentionInDays": target.log_retention_days}
    if group is None:
        return [
            Step(
                name,
                CREATE,
                f"missing; retention {target.log_retention_days} days",
                (
                    Call(
                        "logs",
                        "create_log_group",
                        {"logGroupName": target.log_group, "tags": dict([OWNER_TAG])},
                    ),
                    Call("logs", "put_retention_policy", retention),
                ),
            )
        ]
    if group.get("retentionInDays") != target.log_retention_days:
        return [
            Step(
                name,
                UPDATE,
                f"retention {group.get('retentionInDays', 'never expire')} → "
                f"{target.log_retention_days} days",
                (Call("logs", "put_retention_policy", retention),),
            )
        ]
    return [Step(name, NO_CHANGE, f"retention {target.log_retention_days} days")]


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
                            "AssumeRolePolicyDocument": json.dumps(models.trust_policy()),
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
    if models.normalise_policy(role["AssumeRolePolicyDocument"]) != models.normalise_policy(
        models.trust_policy()
    ):
        steps.append(
            Step(
                name,
                UPDATE,
                "trust policy → lambda.amazonaws.com only",
                (
                    Call(
                        "iam",
                        "update_assume_role_policy",
                        {
                            "RoleName": target.role,
                            "PolicyDocument": json.dumps(models.trust_policy()),
                        },
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


def _function_steps(target: Target, clients: Clients, code: bytes) -> list[Step]:
    from livekart_users.deploy import package

    name = f"function {target.function}"
    wanted = models.function_settings(target)
    found = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=target.function))
    if found is None:
        return [
            Step(
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
                    Call("lambda_", "wait_function", {"FunctionName": target.function}),
                ),
            )
        ]
    config = found["Configuration"]
    steps: list[Step] = []
    sha = package.code_sha256_b64(code)
    if config.get("CodeSha256") != sha or config.get("Architectures") != wanted["Architectures"]:
        steps.append(
            Step(
                name,
                UPDATE,
                "code "
                + (
                    f"{config.get('CodeSha256')} → {sha}"
                    if config.get("CodeSha256") != sha
                    else f"architecture {config.get('Architectures')} → {wanted['Architectures']}"
                ),
                (
                    Call(
                        "lambda_",
                        "update_function_code",
                        {
                            "FunctionName": target.function,
                            "ZipFile": code,
                            "Architectures": wanted["Architectures"],
                        },
                    ),
                    Call("lambda_", "wait_function", {"FunctionName": target.function}),
                ),
            )
        )
    actual = {
        **config,
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables", {})},
    }
    settings = {k: v for k, v in wanted.items() if k != "Architectures"}
    diff = _differences(actual, settings)
    if diff:
        steps.append(
            Step(
                name,
                UPDATE,
                "; ".join(diff),
                (
                    Call(
                        "lambda_",
                        "update_function_configuration",
                        {"FunctionName": target.function, **settings},
                    ),
                    Call("lambda_", "wait_function", {"FunctionName": target.function}),
                ),
            )
        )
    if not _tagged(found.get("Tags")):
        steps.append(
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
    return steps or [Step(name, NO_CHANGE, "code and configuration as they should be")]


def _cognito_statements(clients: Clients, target: Target) -> list[dict[str, Any]]:
    answer = aws.unless_missing(lambda: clients.lambda_.get_policy(FunctionName=target.function))
    if answer is None:
        return []
    statements = json.loads(answer["Policy"]).get("Statement", [])
    return [
        s
        for s in statements
        if (s.get("Principal") or {}).get("Service") == "cognito-idp.amazonaws.com"
    ]


def permission_is_exact(statement: Mapping[str, Any], target: Target) -> bool:
    condition = statement.get("Condition") or {}
    return (
        statement.get("Sid") == models.PERMISSION_ID
        and statement.get("Effect") == "Allow"
        and statement.get("Action") == "lambda:InvokeFunction"
        and (condition.get("ArnLike") or {}).get("AWS:SourceArn") == target.pool_arn
        and (condition.get("StringEquals") or {}).get("AWS:SourceAccount") == target.account
    )


def _permission_steps(target: Target, clients: Clients) -> list[Step]:
    name = f"invoke permission {models.PERMISSION_ID}"
    wanted = models.invoke_permission(target)
    add = Call("lambda_", "add_permission", {"FunctionName": target.function, **wanted})
    statements = _cognito_statements(clients, target)
    steps: list[Step] = []
    ours = next((s for s in statements if s.get("Sid") == models.PERMISSION_ID), None)
    for other in statements:
        if other is not ours:
            steps.append(
                Step(
                    f"invoke permission {other.get('Sid')}",
                    DELETE,
                    "lets Cognito invoke from a pool or account other than exactly "
                    f"{target.user_pool_id} in {target.account}",
                    (
                        Call(
                            "lambda_",
                            "remove_permission",
                            {"FunctionName": target.function, "StatementId": other.get("Sid")},
                        ),
                    ),
                )
            )
    if ours is None:
        steps.append(
            Step(
                name,
                CREATE,
                f"cognito-idp.amazonaws.com from {target.pool_arn}, "
                f"account {target.account} (without it every sign-up fails with "
                "AccessDeniedException)",
                (add,),
            )
        )
    elif not permission_is_exact(ours, target):
        steps.append(
            Step(
                name,
                UPDATE,
                f"source → exactly {target.pool_arn}, account {target.account}",
                (
                    Call(
                        "lambda_",
                        "remove_permission",
                        {"FunctionName": target.function, "StatementId": models.PERMISSION_ID},
                    ),
                    add,
                ),
            )
        )
    return steps or [Step(name, NO_CHANGE, f"Cognito from {target.user_pool_id} only")]


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
    target: Target, clients: Clients, settings: pool.PoolSettings, force: bool
) -> tuple[Step, dict[str, str]]:
    name = f"user pool {target.user_pool_id} triggers"
    slots = models.TRIGGER_SLOTS
    config = settings.lambda_config
    foreign = pool.foreign_slots(settings, slots, target.function_arn)
    pending = [s for s in slots if config.get(s) != target.function_arn]
    attach = Call("pool", "attach", {"force": force})
    if foreign and not force:
        owners = ", ".join(f"{s} is {arn}" for s, arn in sorted(foreign.items()))
        return Step(name, NO_CHANGE, f"refused: {owners}; re-run with --force to replace"), foreign
    if pending:
        # Refuses now, in the plan, a pool whose settings UpdateUserPool would reset.
        pool.update_request(clients.cognito, settings, config)
        replaced = "".join(f"; replaces {arn}" for arn in foreign.values())
        return Step(
            name,
            UPDATE,
            f"{', '.join(pending)} → {target.function}, every other "
            f"setting sent back unchanged{replaced}",
            (attach,),
        ), {}
    return Step(name, NO_CHANGE, f"{' and '.join(slots)} → {target.function}"), {}


# --- destroy ---------------------------------------------------------------------------------


def plan_destroy(
    target: Target, clients: Clients, *, delete_table: bool = False, delete_logs: bool = False
) -> Plan:
    """Remove what deploy made or adopted (tagged as ours); keep the data unless told."""
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
    function_is_ours = function is not None and _tagged(function.get("Tags"))
    statements = _cognito_statements(clients, target) if function_is_ours else []
    if any(s.get("Sid") == models.PERMISSION_ID for s in statements):
        steps.append(
            Step(
                f"invoke permission {models.PERMISSION_ID}",
                DELETE,
                "ours",
                (
                    Call(
                        "lambda_",
                        "remove_permission",
                        {"FunctionName": target.function, "StatementId": models.PERMISSION_ID},
                    ),
                ),
            )
        )
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=[target.alarm_name])["MetricAlarms"]
    if alarms:
        tags = clients.cloudwatch.list_tags_for_resource(ResourceARN=alarms[0]["AlarmArn"])
        if _tagged({t["Key"]: t["Value"] for t in tags.get("Tags", [])}):
            steps.append(
                Step(
                    f"alarm {target.alarm_name}",
                    DELETE,
                    "ours",
                    (Call("cloudwatch", "delete_alarms", {"AlarmNames": [target.alarm_name]}),),
                )
            )
    if function is not None and _tagged(function.get("Tags")):
        steps.append(
            Step(
                f"function {target.function}",
                DELETE,
                "ours",
                (Call("lambda_", "delete_function", {"FunctionName": target.function}),),
            )
        )
    role = aws.unless_missing(lambda: clients.iam.get_role(RoleName=target.role))
    if role is not None and _tagged({t["Key"]: t["Value"] for t in role["Role"].get("Tags", [])}):
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
    groups = clients.logs.describe_log_groups(logGroupNamePrefix=target.log_group)["logGroups"]
    if any(g["logGroupName"] == target.log_group for g in groups):
        steps.append(
            Step(
                f"log group {target.log_group}",
                DELETE,
                "--delete-logs",
                (Call("logs", "delete_log_group", {"logGroupName": target.log_group}),),
            )
            if delete_logs
            else Step(
                f"log group {target.log_group}",
                NO_CHANGE,
                "kept: expires by its retention (--delete-logs removes it)",
            )
        )
    table = aws.unless_missing(lambda: clients.dynamodb.describe_table(TableName=target.table))
    if table is not None:
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
            if delete_table
            else Step(
                f"table {target.table}",
                NO_CHANGE,
                "kept: it holds user data (--delete-table removes it)",
            )
        )
    return Plan(target, steps)
