"""Plans `destroy`: "deploy nothing" — remove what deploy made or adopted for one pool.

Only what is tagged as ours is removed; what a CloudFormation stack owns is left to the stack;
what still serves another pool stays; the table and the log groups stay unless asked. The
pool is detached first: nothing it may invoke is deleted before. Reads only, like the planner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from livekart_users import aws
from livekart_users.deploy import models, pool
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import Target
from livekart_users.deploy.plan import (
    DELETE,
    NO_CHANGE,
    Call,
    Plan,
    Step,
    removable,
    stack_of,
    tag_map,
    tagged,
)
from livekart_users.deploy.planner import cognito_statements, pool_of, queue_url, table_tags


def plan_destroy(
    target: Target, clients: Clients, *, delete_table: bool = False, delete_logs: bool = False
) -> Plan:
    """Remove what deploy made or adopted (tagged as ours) for this pool; keep the data unless
    told, keep what still serves another pool, and never touch what a CloudFormation stack
    owns. The pool is detached first: nothing it may invoke is deleted before."""
    plan = _plan_destroy_trigger(target, clients, delete_table, delete_logs)
    # This pool's change handler (named after the pool: it serves no other) goes right after
    # the detach; within its steps the rule goes first, so nothing is sent to a function
    # about to be deleted.
    detached = bool(plan.steps) and any(c.operation == "detach" for c in plan.steps[0].calls)
    at = 1 if detached else 0
    plan.steps[at:at] = [
        *_change_handler_steps(target, clients, delete_logs=delete_logs),
        # The scheduled reconcile likewise (named after the pool), and its checkpoint table,
        # which holds no user data.
        *_change_handler_steps(
            target, clients, delete_logs=delete_logs, names=models.ReconcileNames(target)
        ),
        *_state_table_removal(clients, models.ReconcileNames(target).state_table),
    ]
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
    stack = stack_of(function.get("Tags")) if function is not None else None
    if function is not None and stack:
        steps.append(_stack_owned(f"function {target.function}", stack))
        return Plan(target, steps)
    if function is None or not tagged(function.get("Tags")):
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
            pool_id = pool_of(statement)
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
    steps += _alarm_removal(clients, target.alarm_name)
    steps.append(
        Step(
            f"function {target.function}",
            DELETE,
            "ours (with its versions and alias)",
            (Call("lambda_", "delete_function", {"FunctionName": target.function}),),
        )
    )
    steps += _role_removal(clients, target.role)
    return Plan(target, steps + _kept_data(target, clients, delete_table, delete_logs))


def _stack_owned(resource: str, stack: str) -> Step:
    return Step(
        resource,
        NO_CHANGE,
        f"kept: CloudFormation stack {stack} owns it (delete the stack to remove it)",
    )


def _alarm_removal(clients: Clients, alarm_name: str) -> list[Step]:
    alarms = clients.cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"]
    if not alarms:
        return []
    tags = tag_map(
        clients.cloudwatch.list_tags_for_resource(ResourceARN=alarms[0]["AlarmArn"]).get("Tags")
    )
    if not removable(tags):
        return []
    delete = Call("cloudwatch", "delete_alarms", {"AlarmNames": [alarm_name]})
    return [Step(f"alarm {alarm_name}", DELETE, "ours", (delete,))]


def _role_removal(clients: Clients, role_name: str) -> list[Step]:
    """A role of ours goes with its policies (inline deleted, managed detached: IAM refuses to
    delete a role that still has either); a stack's is left to the stack."""
    role = aws.unless_missing(lambda: clients.iam.get_role(RoleName=role_name))
    tags = tag_map(role["Role"].get("Tags", [])) if role is not None else {}
    if role is None or not tagged(tags):
        return []
    stack = stack_of(tags)
    if stack:
        return [_stack_owned(f"role {role_name}", stack)]
    iam = clients.iam
    calls = [
        Call("iam", "delete_role_policy", {"RoleName": role_name, "PolicyName": p})
        for p in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    ]
    calls += [
        Call("iam", "detach_role_policy", {"RoleName": role_name, "PolicyArn": p["PolicyArn"]})
        for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    ]
    calls.append(Call("iam", "delete_role", {"RoleName": role_name}))
    return [Step(f"role {role_name}", DELETE, "ours", tuple(calls))]


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
    stack = stack_of(tag_map(table_tags(clients, table["Table"]))) if delete_table else None
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


def _change_handler_steps(
    target: Target,
    clients: Clients,
    *,
    delete_logs: bool = False,
    names: models.ChangeNames | None = None,
) -> list[Step]:
    """Remove the change handler's resources that are ours (or those of another function
    named like it: the scheduled reconcile's); the log group only if asked."""
    names = names or models.ChangeNames(target)
    steps: list[Step] = []
    rule = aws.unless_missing(lambda: clients.events.describe_rule(Name=names.rule))
    if rule is not None and _rule_is_ours(clients, rule):
        targets = clients.events.list_targets_by_rule(Rule=names.rule).get("Targets", [])
        calls = []
        if targets:
            ids = [t["Id"] for t in targets]
            calls.append(Call("events", "remove_targets", {"Rule": names.rule, "Ids": ids}))
        calls.append(Call("events", "delete_rule", {"Name": names.rule}))
        steps.append(Step(f"EventBridge rule {names.rule}", DELETE, "ours", tuple(calls)))
    steps += _alarm_removal(clients, names.alarm)
    function = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=names.function))
    if function is not None and removable(function.get("Tags")):
        delete = Call("lambda_", "delete_function", {"FunctionName": names.function})
        steps.append(Step(f"function {names.function}", DELETE, "ours", (delete,)))
    steps += _role_removal(clients, names.role)
    url = queue_url(clients, names.queue)
    if url is not None:
        tags = clients.sqs.list_queue_tags(QueueUrl=url).get("Tags", {})
        if removable(tags):
            steps.append(
                Step(
                    f"dead-letter queue {names.queue}",
                    DELETE,
                    "ours (the failed events it holds go with it)",
                    (Call("sqs", "delete_queue", {"QueueUrl": url}),),
                )
            )
    return steps + log_group_removal(clients, names.log_group, delete_logs)


def _state_table_removal(clients: Clients, name: str) -> list[Step]:
    """The scheduled reconcile's checkpoint table, if ours (checkpoints only, no user data)."""
    table = aws.unless_missing(lambda: clients.dynamodb.describe_table(TableName=name))
    if table is None or not removable(tag_map(table_tags(clients, table["Table"]))):
        return []
    delete = Call("dynamodb", "delete_table", {"TableName": name})
    return [Step(f"table {name}", DELETE, "ours: the scheduled reconcile's checkpoints", (delete,))]


def _rule_is_ours(clients: Clients, rule: Mapping[str, Any]) -> bool:
    tags = clients.events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags", [])
    return tagged(tag_map(tags))
