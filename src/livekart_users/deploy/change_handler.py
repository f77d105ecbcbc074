"""The change handler's resources on AWS, as plan steps: what makes deletions, attribute edits
and enable/disable reach the table without a sign-in (see `livekart_users.changes`).

- a **function** of its own (the same zip, handler `livekart_users.changes.handler`), with
- a **role** of its own: ListUsers and AdminGetUser on this pool, GetItem and UpdateItem
  (DeleteItem only under the `delete` erasure policy) on this table, its own log streams, and
  SendMessage to its dead-letter queue. The sign-up trigger's role stays PutItem + UpdateItem;
- a **dead-letter queue** (SQS, 14 days): the function's own (an event it failed on after
  Lambda's two retries) and the rule target's (an event EventBridge could not deliver), so no
  failed event is lost silently;
- an **EventBridge rule** on the default bus matching exactly the calls the handler handles,
  that succeeded (`errorCode` absent), and, for admin calls, this pool (`userPoolId`); calls
  made with an access token name no pool, so the handler checks those against Cognito;
- the function's **invoke permission** for `events.amazonaws.com` from that rule only;
- a **trail check**: EventBridge gets these events only when a CloudTrail trail logs
  management write events in the pool's region. Without one deploy still succeeds and says
  that changes arrive only through sign-in and reconcile, with the commands that fix it.

Each name carries the pool id, so two pools of one account and region never share one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from livekart_users import aws, changes, erasure
from livekart_users.deploy import models
from livekart_users.deploy.clients import Clients
from livekart_users.deploy.models import OWNER_TAG, Target
from livekart_users.deploy.planner import (
    CREATE,
    DELETE,
    NO_CHANGE,
    UPDATE,
    Call,
    Step,
    log_group_removal,
    log_group_steps,
    removable,
)

HANDLER = "livekart_users.changes.handler"
# Asynchronous, no one waiting: room for a few patient Cognito and DynamoDB calls.
TIMEOUT_SECONDS = 60
MEMORY_MB = 256
QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum
POLICY_NAME = "livekart-users-changes"
PERMISSION_ID = "livekart-users-events-invoke"
TARGET_ID = "livekart-users-change-handler"
# EventBridge retries a failed delivery to Lambda for up to 24 h by default; say so.
TARGET_RETRY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 86400}
TOKEN_CALLS = ("DeleteUser", "UpdateUserAttributes", "VerifyUserAttribute", "DeleteUserAttributes")


@dataclass(frozen=True)
class Names:
    """The change handler's resources for one target (names carry the pool id)."""

    target: Target

    @property
    def stem(self) -> str:
        # Lambda and IAM names stop at 64 characters: a pool id too long for that (real ones
        # are about 20) is replaced by a digest of it.
        pool = self.target.user_pool_id
        if len(pool) > 32:
            pool = hashlib.blake2b(pool.encode(), digest_size=8).hexdigest()
        return f"livekart-users-changes-{pool}"

    @property
    def function(self) -> str:
        return self.stem

    @property
    def role(self) -> str:
        return f"{self.stem}-role"

    @property
    def queue(self) -> str:
        return f"{self.stem}-dlq"

    @property
    def rule(self) -> str:
        return self.stem

    def _arn(self, service: str, resource: str) -> str:
        t = self.target
        return f"arn:{t.partition}:{service}:{t.region}:{t.account}:{resource}"

    @property
    def function_arn(self) -> str:
        return self._arn("lambda", f"function:{self.function}")

    @property
    def role_arn(self) -> str:
        return f"arn:{self.target.partition}:iam::{self.target.account}:role/{self.role}"

    @property
    def queue_arn(self) -> str:
        return self._arn("sqs", self.queue)

    @property
    def rule_arn(self) -> str:
        return self._arn("events", f"rule/{self.rule}")

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.function}"

    @property
    def log_group_arn(self) -> str:
        return self._arn("logs", f"log-group:{self.log_group}")


# --- what should exist (plain data) ---------------------------------------------------------


def event_pattern(target: Target) -> dict[str, Any]:
    """Exactly the calls the handler handles, that succeeded, of this pool where one is named."""
    admin = sorted(changes.HANDLED - set(TOKEN_CALLS))
    return {
        "source": [changes.SOURCE],
        "detail-type": [changes.DETAIL_TYPE],
        "detail": {
            "eventSource": [changes.EVENT_SOURCE],
            "errorCode": [{"exists": False}],
            "$or": [
                {"eventName": admin, "requestParameters": {"userPoolId": [target.user_pool_id]}},
                {"eventName": sorted(TOKEN_CALLS)},
            ],
        },
    }


def role_policy(target: Target) -> dict[str, Any]:
    """Exactly what the change handler does, on this pool and this table only."""
    names = Names(target)
    writes = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    if erasure.parse_policy(target.erasure_policy) is erasure.Policy.DELETE:
        writes.append("dynamodb:DeleteItem")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadPoolUsers",
                "Effect": "Allow",
                "Action": ["cognito-idp:ListUsers", "cognito-idp:AdminGetUser"],
                "Resource": target.pool_arn,
            },
            {
                "Sid": "WriteUserRecords",
                "Effect": "Allow",
                "Action": writes,
                "Resource": target.table_arn,
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{names.log_group_arn}:log-stream:*",
            },
            {
                "Sid": "DeadLetters",
                "Effect": "Allow",
                "Action": ["sqs:SendMessage"],
                "Resource": names.queue_arn,
            },
        ],
    }


def queue_policy(target: Target) -> dict[str, Any]:
    """EventBridge may put the rule's undeliverable events in the queue; nothing else may."""
    names = Names(target)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RuleDeadLetters",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": names.queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": names.rule_arn}},
            }
        ],
    }


def function_settings(target: Target) -> dict[str, Any]:
    names = Names(target)
    return {
        "Runtime": models.RUNTIME,
        "Handler": HANDLER,
        "Role": names.role_arn,
        "Timeout": TIMEOUT_SECONDS,
        "MemorySize": MEMORY_MB,
        "Architectures": [target.architecture],
        "Environment": {
            "Variables": {
                "USERS_TABLE": target.table,
                changes.USER_POOL_SETTING: target.user_pool_id,
                erasure.ENVIRONMENT_VARIABLE: str(erasure.parse_policy(target.erasure_policy)),
                "POWERTOOLS_SERVICE_NAME": changes.SERVICE,
            }
        },
        "DeadLetterConfig": {"TargetArn": names.queue_arn},
    }


def rule_target(target: Target) -> dict[str, Any]:
    names = Names(target)
    return {
        "Id": TARGET_ID,
        "Arn": names.function_arn,
        "RetryPolicy": TARGET_RETRY,
        "DeadLetterConfig": {"Arn": names.queue_arn},
    }


def invoke_permission(target: Target) -> dict[str, Any]:
    names = Names(target)
    return {
        "StatementId": PERMISSION_ID,
        "Action": "lambda:InvokeFunction",
        "Principal": "events.amazonaws.com",
        "SourceArn": names.rule_arn,
    }


# --- the trail ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trail:
    """Whether some trail logs management write events in the region, and which."""

    name: str | None

    @property
    def found(self) -> bool:
        return self.name is not None


def trail_fix(region: str, bucket: str = "BUCKET") -> str:
    """The commands that make a trail (the bucket needs CloudTrail's bucket policy)."""
    return (
        f"aws cloudtrail create-trail --region {region} --name livekart-users-trail "
        f"--s3-bucket-name {bucket} --is-multi-region-trail && aws cloudtrail start-logging "
        f"--region {region} --name livekart-users-trail (the bucket needs the policy that "
        "lets cloudtrail.amazonaws.com PutObject; see docs/deploy.md)"
    )


def find_trail(cloudtrail: Any, region: str) -> Trail:
    """A logging trail of this region (or multi-region) that records management writes."""
    for trail in cloudtrail.describe_trails(includeShadowTrails=True).get("trailList", []):
        if trail.get("HomeRegion") != region and not trail.get("IsMultiRegionTrail"):
            continue
        arn = trail.get("TrailARN") or trail.get("Name")
        status = cloudtrail.get_trail_status(Name=arn)
        if not status.get("IsLogging"):
            continue
        if _logs_management_writes(cloudtrail.get_event_selectors(TrailName=arn)):
            return Trail(str(trail.get("Name")))
    return Trail(None)


def _logs_management_writes(selectors: Mapping[str, Any]) -> bool:
    for basic in selectors.get("EventSelectors") or []:
        if basic.get("IncludeManagementEvents", True) and basic.get("ReadWriteType", "All") in (
            "All",
            "WriteOnly",
        ):
            return True
    for advanced in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in advanced.get("FieldSelectors") or []}
        category = fields.get("eventCategory", {})
        read_only = fields.get("readOnly", {})
        if "Management" in (category.get("Equals") or []) and "true" not in (
            read_only.get("Equals") or []
        ):
            return True
    # A trail with no selectors at all logs every management event.
    return not selectors.get("EventSelectors") and not selectors.get("AdvancedEventSelectors")


# --- plan -----------------------------------------------------------------------------------


def _tags() -> list[dict[str, str]]:
    return [{"Key": OWNER_TAG[0], "Value": OWNER_TAG[1]}]


def plan_steps(target: Target, clients: Clients, code: bytes) -> list[Step]:
    """Every step that makes the change handler's resources what they should be; reads only."""
    return [
        *_queue_steps(target, clients),
        *log_group_steps(clients, Names(target).log_group, target.log_retention_days),
        *_role_steps(target, clients),
        *_function_steps(target, clients, code),
        *_rule_steps(target, clients),
        *_permission_steps(target, clients),
        _trail_step(target, clients),
    ]


def _queue_url(clients: Clients, name: str) -> str | None:
    try:
        return str(clients.sqs.get_queue_url(QueueName=name)["QueueUrl"])
    except Exception as exc:
        if "NonExistentQueue" in aws.error_code(exc) or "QueueDoesNotExist" in aws.error_code(exc):
            return None
        raise


def _queue_steps(target: Target, clients: Clients) -> list[Step]:
    names = Names(target)
    name = f"dead-letter queue {names.queue}"
    wanted = {
        "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
        "Policy": json.dumps(queue_policy(target)),
    }
    url = _queue_url(clients, names.queue)
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


def _role_steps(target: Target, clients: Clients) -> list[Step]:
    names = Names(target)
    name = f"role {names.role}"
    policy = json.dumps(role_policy(target))
    put = Call(
        "iam",
        "put_role_policy",
        {"RoleName": names.role, "PolicyName": POLICY_NAME, "PolicyDocument": policy},
    )
    found = aws.unless_missing(lambda: clients.iam.get_role(RoleName=names.role))
    if found is None:
        return [
            Step(
                name,
                CREATE,
                "trusts Lambda only; reads this pool's users, updates this table's rows",
                (
                    Call(
                        "iam",
                        "create_role",
                        {
                            "RoleName": names.role,
                            "AssumeRolePolicyDocument": json.dumps(models.trust_policy()),
                            "Description": "livekart-users change handler",
                            "Tags": _tags(),
                        },
                    ),
                    put,
                    Call("iam", "wait_role", {"RoleName": names.role}),
                ),
            )
        ]
    inline = clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"]
    current = (
        clients.iam.get_role_policy(RoleName=names.role, PolicyName=POLICY_NAME)["PolicyDocument"]
        if POLICY_NAME in inline
        else None
    )
    if current is None or models.normalise_policy(current) != models.normalise_policy(policy):
        return [Step(name, UPDATE, f"inline policy {POLICY_NAME} → least privilege", (put,))]
    return [Step(name, NO_CHANGE, "policy as it should be")]


def _function_steps(target: Target, clients: Clients, code: bytes) -> list[Step]:
    from livekart_users.deploy import package

    names = Names(target)
    name = f"function {names.function}"
    wanted = function_settings(target)
    # After CreateFunction the function is Pending until Active; after an update, its
    # LastUpdateStatus is InProgress until Successful (Lambda's function_*_v2 waiters).
    active = Call("lambda_", "wait_function_active", {"FunctionName": names.function})
    wait = Call("lambda_", "wait_function_updated", {"FunctionName": names.function})
    found = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=names.function))
    if found is None:
        create = {
            "FunctionName": names.function,
            **wanted,
            "Code": {"ZipFile": code},
            "PackageType": "Zip",
            "Description": "livekart-users: pool changes (CloudTrail via EventBridge) → table",
            "Tags": dict([OWNER_TAG]),
        }
        return [
            Step(
                name,
                CREATE,
                f"{HANDLER}, {TIMEOUT_SECONDS} s, erasure policy "
                f"{erasure.parse_policy(target.erasure_policy)}",
                (Call("lambda_", "create_function", create), active),
            )
        ]
    config = found["Configuration"]
    steps: list[Step] = []
    if config.get("CodeSha256") != package.code_sha256_b64(code):
        update = {"FunctionName": names.function, "ZipFile": code}
        steps.append(
            Step(name, UPDATE, "code", (Call("lambda_", "update_function_code", update), wait))
        )
    actual = {
        **config,
        "Environment": {"Variables": (config.get("Environment") or {}).get("Variables", {})},
    }
    settings = {k: v for k, v in wanted.items() if k != "Architectures"}
    # moto's GetFunction leaves DeadLetterConfig out even when set (AWS returns it): compared
    # only where the answer has it, so a function we created is not "updated" at every run.
    compared = {k: v for k, v in settings.items() if k != "DeadLetterConfig" or k in actual}
    diff = [k for k, v in compared.items() if actual.get(k) != v]
    if diff:
        update = {"FunctionName": names.function, **settings}
        steps.append(
            Step(
                name,
                UPDATE,
                ", ".join(diff),
                (Call("lambda_", "update_function_configuration", update), wait),
            )
        )
    return steps or [Step(name, NO_CHANGE, "code and configuration as they should be")]


def _rule_steps(target: Target, clients: Clients) -> list[Step]:
    names = Names(target)
    name = f"EventBridge rule {names.rule}"
    pattern = event_pattern(target)
    put_rule = Call(
        "events",
        "put_rule",
        {
            "Name": names.rule,
            "EventPattern": json.dumps(pattern),
            "State": "ENABLED",
            "Description": f"livekart-users: user changes in {target.user_pool_id}",
            "Tags": _tags(),
        },
    )
    put_targets = Call(
        "events", "put_targets", {"Rule": names.rule, "Targets": [rule_target(target)]}
    )
    found = aws.unless_missing(lambda: clients.events.describe_rule(Name=names.rule))
    if found is None:
        return [
            Step(
                name,
                CREATE,
                f"CloudTrail's {len(changes.HANDLED)} user calls of this pool → "
                f"{names.function} (dead letters to {names.queue})",
                (put_rule, put_targets),
            )
        ]
    steps: list[Step] = []
    same = json.loads(found.get("EventPattern") or "{}") == pattern
    if not same or found.get("State") != "ENABLED":
        steps.append(Step(name, UPDATE, "pattern → this pool's calls; enabled", (put_rule,)))
    targets = clients.events.list_targets_by_rule(Rule=names.rule).get("Targets", [])
    if [_comparable(t) for t in targets] != [_comparable(rule_target(target))]:
        steps.append(Step(name, UPDATE, f"target → {names.function}", (put_targets,)))
    return steps or [Step(name, NO_CHANGE, f"this pool's calls → {names.function}")]


def _comparable(target: Mapping[str, Any]) -> dict[str, Any]:
    return {k: target.get(k) for k in ("Id", "Arn", "RetryPolicy", "DeadLetterConfig")}


def _events_statement(clients: Clients, function: str) -> dict[str, Any] | None:
    answer = aws.unless_missing(lambda: clients.lambda_.get_policy(FunctionName=function))
    if answer is None:
        return None
    for statement in json.loads(answer["Policy"]).get("Statement", []):
        if statement.get("Sid") == PERMISSION_ID:
            return dict(statement)
    return None


def _permission_steps(target: Target, clients: Clients) -> list[Step]:
    names = Names(target)
    name = f"invoke permission {PERMISSION_ID}"
    add = Call(
        "lambda_", "add_permission", {"FunctionName": names.function, **invoke_permission(target)}
    )
    ours = _events_statement(clients, names.function)
    if ours is None:
        return [Step(name, CREATE, f"events.amazonaws.com from {names.rule_arn} only", (add,))]
    condition = (ours.get("Condition") or {}).get("ArnLike") or {}
    if condition.get("AWS:SourceArn") != names.rule_arn:
        remove = Call(
            "lambda_",
            "remove_permission",
            {"FunctionName": names.function, "StatementId": PERMISSION_ID},
        )
        return [Step(name, UPDATE, f"source → {names.rule_arn}", (remove, add))]
    return [Step(name, NO_CHANGE, "EventBridge from this rule only")]


def _trail_step(target: Target, clients: Clients) -> Step:
    trail = find_trail(clients.cloudtrail, target.region)
    if trail.found:
        return Step(
            "CloudTrail",
            NO_CHANGE,
            f"trail {trail.name} logs management write events in {target.region}",
        )
    return Step(
        "CloudTrail",
        NO_CHANGE,
        f"WARNING: no trail logs management write events in {target.region}: deletions and "
        "attribute changes reach the table only through sign-in and reconcile until one "
        f"does. Fix: {trail_fix(target.region)}",
    )


# --- destroy --------------------------------------------------------------------------------


def destroy_steps(target: Target, clients: Clients, *, delete_logs: bool = False) -> list[Step]:
    """Remove the change handler's resources that are ours; the log group only if asked."""
    names = Names(target)
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
    function = aws.unless_missing(lambda: clients.lambda_.get_function(FunctionName=names.function))
    if function is not None and removable(function.get("Tags")):
        delete = Call("lambda_", "delete_function", {"FunctionName": names.function})
        steps.append(Step(f"function {names.function}", DELETE, "ours", (delete,)))
    role = aws.unless_missing(lambda: clients.iam.get_role(RoleName=names.role))
    if role is not None:
        tags = {t["Key"]: t["Value"] for t in role["Role"].get("Tags", [])}
        if removable(tags):
            calls = [
                Call("iam", "delete_role_policy", {"RoleName": names.role, "PolicyName": p})
                for p in clients.iam.list_role_policies(RoleName=names.role)["PolicyNames"]
            ]
            calls.append(Call("iam", "delete_role", {"RoleName": names.role}))
            steps.append(Step(f"role {names.role}", DELETE, "ours", tuple(calls)))
    url = _queue_url(clients, names.queue)
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


def _rule_is_ours(clients: Clients, rule: Mapping[str, Any]) -> bool:
    tags = clients.events.list_tags_for_resource(ResourceARN=rule["Arn"]).get("Tags", [])
    return any(t.get("Key") == OWNER_TAG[0] and t.get("Value") == OWNER_TAG[1] for t in tags)
