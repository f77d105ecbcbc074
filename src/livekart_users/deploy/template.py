"""The trigger's resources as a CloudFormation template, for teams that deploy with IaC.

It is built from `deploy.models`, the same definitions `deploy` uses: the models are evaluated
for a target whose names are `${Parameter}` placeholders, and every string holding one becomes
a `Ref` or an `Fn::Sub`. So there is one statement of least privilege, not two.

What the template cannot do: attach the trigger to a pool the stack does not own
(CloudFormation has no resource for one setting of an existing pool, and `UpdateUserPool`
resets what it is not sent). That step is `livekart-users attach`, printed in the outputs;
its reverse, `livekart-users detach`, must run before the stack is deleted (deleting the
function while the pool names it fails every sign-up). The table is created only when asked
(it may already exist) and is retained on delete. Every resource carries the stack's name
(`models.STACK_TAG`), so `destroy` never deletes what the stack owns.
"""

from __future__ import annotations

import json
import re
from typing import Any

from livekart_users import __version__, checkpoint, erasure
from livekart_users.deploy import models
from livekart_users.deploy.package import ARCHITECTURES
from livekart_users.table import DEFAULT_TABLE

RETENTION_DAYS = models.RETENTION_DAYS
# Not deploy's (nor the original guide's) names: CloudFormation does not adopt a resource that
# already exists under its name, so creating the stack in an account that followed the guide
# or ran `deploy` would fail on `livekart-post-confirmation-trigger` already existing.
DEFAULT_FUNCTION = "livekart-users-stack-trigger"
DEFAULT_ROLE = "livekart-users-stack-trigger-role"
# Likewise the stack's change handler: deploy names its own `livekart-users-changes-<pool>`.
CHANGE_PREFIX = "livekart-users-stack-changes"
# And its scheduled reconcile: deploy names its own `livekart-users-reconcile-<pool>`.
RECONCILE_PREFIX = "livekart-users-stack-reconcile"
CREATE_TABLE = "ShouldCreateTable"
HAS_ALARM_TOPIC = "HasAlarmTopic"
HAS_RECONCILE = "HasScheduledReconcile"
_PLACEHOLDERS = models.Target(
    user_pool_id="${UserPoolId}",
    region="${AWS::Region}",
    account="${AWS::AccountId}",
    table="${TableName}",
    function="${FunctionName}",
    role="${RoleName}",
    architecture="${Architecture}",
    alarm_topic_arn="${AlarmTopicArn}",
    erasure_policy="anonymize",  # a parameter of the stack; no policy changes the role
    change_prefix=CHANGE_PREFIX,
    reconcile_prefix=RECONCILE_PREFIX,
)
_WHOLE_REFERENCE = re.compile(r"\$\{([A-Za-z0-9:]+)\}")
_NO_VALUE = {"Ref": "AWS::NoValue"}


def attach_command() -> str:
    """The step the stack cannot take, with `Fn::Sub` placeholders."""
    return (
        "livekart-users attach --user-pool-id ${UserPoolId} --function-name ${FunctionName} "
        "--region ${AWS::Region}"
    )


def detach_command() -> str:
    """The step before deleting the stack, with `Fn::Sub` placeholders."""
    return (
        "livekart-users detach --user-pool-id ${UserPoolId} --function-name ${FunctionName} "
        "--region ${AWS::Region}"
    )


def build() -> dict[str, Any]:
    """The template as a dictionary."""
    target = _PLACEHOLDERS
    tags = [
        {"Key": models.OWNER_TAG[0], "Value": models.OWNER_TAG[1]},
        {"Key": models.STACK_TAG, "Value": {"Ref": "AWS::StackName"}},
    ]
    function = {
        **_cfn(models.function_settings(target)),
        "FunctionName": {"Ref": "FunctionName"},
        "Description": "livekart-users: Cognito -> DynamoDB users table",
        "Role": {"Fn::GetAtt": ["Role", "Arn"]},
        "Architectures": [{"Ref": "Architecture"}],
        "MemorySize": {"Ref": "MemorySize"},
        "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
        "Tags": tags,
    }
    # Naming the table resource when the stack creates it orders the function after it.
    function["Environment"]["Variables"]["USERS_TABLE"] = {
        "Fn::If": [CREATE_TABLE, {"Ref": "UsersTable"}, {"Ref": "TableName"}]
    }
    permission = _cfn(models.invoke_permission(target))
    del permission["StatementId"]  # CloudFormation names the statement itself
    permission["FunctionName"] = {"Fn::GetAtt": ["Function", "Arn"]}
    alarm = _cfn(models.alarm(target))
    alarm["AlarmActions"] = {"Fn::If": [HAS_ALARM_TOPIC, [{"Ref": "AlarmTopicArn"}], _NO_VALUE]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"livekart-users {__version__}: the Cognito trigger that keeps a DynamoDB users "
            "table in step with a user pool. After the stack is created, attach it with the "
            "AttachCommand output. Before deleting the stack, run the DetachCommand output: "
            "deleting the function while the pool names it fails every sign-up."
        ),
        "Parameters": _parameters(),
        "Conditions": {
            CREATE_TABLE: {"Fn::Equals": [{"Ref": "CreateTable"}, "yes"]},
            HAS_ALARM_TOPIC: {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]},
            HAS_RECONCILE: {"Fn::Not": [{"Fn::Equals": [{"Ref": "ReconcileEverySeconds"}, "0"]}]},
        },
        "Resources": {
            "UsersTable": {
                "Type": "AWS::DynamoDB::Table",
                "Condition": CREATE_TABLE,
                # The users' data outlives the stack: deleting or replacing it keeps the table.
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    **_cfn(models.table_spec(target)),
                    "Tags": tags,
                    "PointInTimeRecoverySpecification": {
                        "PointInTimeRecoveryEnabled": True,
                        "RecoveryPeriodInDays": {"Ref": "RecoveryPeriodDays"},
                    },
                },
            },
            "LogGroup": {
                "Type": "AWS::Logs::LogGroup",
                # The logs go with the function; their retention period already bounds them.
                "DeletionPolicy": "Delete",
                "UpdateReplacePolicy": "Delete",
                "Properties": {
                    "LogGroupName": _cfn(target.log_group),
                    "RetentionInDays": {"Ref": "LogRetentionDays"},
                    "Tags": tags,
                },
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": {"Ref": "RoleName"},
                    "AssumeRolePolicyDocument": _cfn(models.trust_policy(target.account)),
                    "Policies": [
                        {
                            "PolicyName": models.POLICY_NAME,
                            "PolicyDocument": _cfn(models.role_policy(target)),
                        }
                    ],
                    "Tags": tags,
                },
            },
            "Function": {
                "Type": "AWS::Lambda::Function",
                # Lambda would otherwise create the group itself, without a retention period.
                "DependsOn": ["LogGroup"],
                "Properties": function,
            },
            "CognitoInvokePermission": {
                "Type": "AWS::Lambda::Permission",
                "Properties": permission,
            },
            "FailedWritesAlarm": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {**alarm, "Tags": tags},
            },
            **_change_handler(target, tags),
            **_scheduled_reconcile(target, tags),
        },
        "Outputs": {
            "AttachCommand": {
                "Description": "Run this once the stack is created: it attaches the trigger to "
                "the pool, keeping every other pool setting",
                "Value": {"Fn::Sub": attach_command()},
            },
            "DetachCommand": {
                "Description": "Run this BEFORE deleting the stack: it empties the pool's "
                "trigger slots that name the function, keeping every other pool setting",
                "Value": {"Fn::Sub": detach_command()},
            },
            "FunctionArn": {"Value": {"Fn::GetAtt": ["Function", "Arn"]}},
            "RoleArn": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}},
            "TableName": {"Value": {"Ref": "TableName"}},
            "LogGroupName": {"Value": {"Ref": "LogGroup"}},
        },
    }


def _change_handler(target: models.Target, tags: list[Any]) -> dict[str, Any]:
    """The change handler's resources (models.change_*), from the same models.

    It needs a CloudTrail trail logging management write events in the region; the stack
    cannot check that: `livekart-users doctor` does.
    """
    names = models.ChangeNames(target)
    policy = _cfn(models.change_role_policy(target))
    settings = _cfn(models.change_function_settings(target))
    settings["Environment"]["Variables"][erasure.ENVIRONMENT_VARIABLE] = {"Ref": "ErasurePolicy"}
    settings["Environment"]["Variables"]["USERS_TABLE"] = {
        "Fn::If": [CREATE_TABLE, {"Ref": "UsersTable"}, {"Ref": "TableName"}]
    }
    settings["Role"] = {"Fn::GetAtt": ["ChangeRole", "Arn"]}
    settings["Architectures"] = [{"Ref": "Architecture"}]
    settings["DeadLetterConfig"] = {"TargetArn": {"Fn::GetAtt": ["ChangeDeadLetters", "Arn"]}}
    rule_target = _cfn(models.rule_target(target))
    rule_target["Arn"] = {"Fn::GetAtt": ["ChangeFunction", "Arn"]}
    rule_target["DeadLetterConfig"] = {"Arn": {"Fn::GetAtt": ["ChangeDeadLetters", "Arn"]}}
    permission = _cfn(models.change_invoke_permission(target))
    del permission["StatementId"]
    permission["FunctionName"] = {"Fn::GetAtt": ["ChangeFunction", "Arn"]}
    permission["SourceArn"] = {"Fn::GetAtt": ["ChangeRule", "Arn"]}
    dropped = _cfn(models.change_alarm(target))
    dropped["AlarmActions"] = {"Fn::If": [HAS_ALARM_TOPIC, [{"Ref": "AlarmTopicArn"}], _NO_VALUE]}
    queue_policy = _cfn(models.queue_policy(target))
    queue_policy["Statement"][0]["Resource"] = {"Fn::GetAtt": ["ChangeDeadLetters", "Arn"]}
    queue_policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] = {
        "Fn::GetAtt": ["ChangeRule", "Arn"]
    }
    return {
        "ChangeDeadLetters": {
            "Type": "AWS::SQS::Queue",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "QueueName": _cfn(names.queue),
                "MessageRetentionPeriod": models.QUEUE_RETENTION_SECONDS,
                "Tags": tags,
            },
        },
        "ChangeDeadLettersPolicy": {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": "ChangeDeadLetters"}],
                "PolicyDocument": queue_policy,
            },
        },
        "ChangeLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": _cfn(names.log_group),
                "RetentionInDays": {"Ref": "LogRetentionDays"},
                "Tags": tags,
            },
        },
        "ChangeRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": _cfn(names.role),
                "AssumeRolePolicyDocument": _cfn(models.trust_policy(target.account)),
                "Policies": [{"PolicyName": models.CHANGE_POLICY_NAME, "PolicyDocument": policy}],
                "Tags": tags,
            },
        },
        "ChangeFunction": {
            "Type": "AWS::Lambda::Function",
            "DependsOn": ["ChangeLogGroup"],
            "Properties": {
                **settings,
                "FunctionName": _cfn(names.function),
                "ReservedConcurrentExecutions": models.CHANGE_CONCURRENCY,
                "Description": "livekart-users: pool changes (CloudTrail via EventBridge) -> table",
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Tags": tags,
            },
        },
        "ChangeRule": {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Name": _cfn(names.rule),
                "Description": "livekart-users: user changes in the pool",
                "EventPattern": _cfn(models.event_pattern(target)),
                "State": "ENABLED",
                "Targets": [rule_target],
            },
        },
        "ChangeInvokePermission": {"Type": "AWS::Lambda::Permission", "Properties": permission},
        "ChangeDroppedEventsAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {**dropped, "Tags": tags},
        },
    }


def render() -> str:
    """The template as JSON text."""
    return json.dumps(build(), indent=2) + "\n"


def _scheduled_reconcile(target: models.Target, tags: list[Any]) -> dict[str, Any]:
    """The scheduled reconcile (models.reconcile_*), when ReconcileEverySeconds is not 0.

    From the stack it never erases a row (deploy's --reconcile-erase-orphans has no
    counterpart here): its role has no AdminGetUser, GetItem or DeleteItem on the table.
    """
    names = models.ReconcileNames(target)
    settings = _cfn(models.reconcile_function_settings(target))
    variables = settings["Environment"]["Variables"]
    variables["RECONCILE_EVERY_SECONDS"] = {"Ref": "ReconcileEverySeconds"}
    variables["RECONCILE_STATE_TABLE"] = {"Ref": "ReconcileStateTable"}
    variables["USERS_TABLE"] = {
        "Fn::If": [CREATE_TABLE, {"Ref": "UsersTable"}, {"Ref": "TableName"}]
    }
    settings["Role"] = {"Fn::GetAtt": ["ReconcileRole", "Arn"]}
    settings["Architectures"] = [{"Ref": "Architecture"}]
    rule_target = _cfn(models.reconcile_rule_target(target))
    rule_target["Arn"] = {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}
    permission = _cfn(models.reconcile_invoke_permission(target))
    del permission["StatementId"]
    permission["FunctionName"] = {"Fn::GetAtt": ["ReconcileFunction", "Arn"]}
    permission["SourceArn"] = {"Fn::GetAtt": ["ReconcileRule", "Arn"]}
    state_table = {**checkpoint.state_table_spec(_cfn(names.state_table)), "Tags": tags}
    when = {"Condition": HAS_RECONCILE}
    return {
        "ReconcileStateTable": {
            "Type": "AWS::DynamoDB::Table",
            **when,
            # Checkpoints only, no user data: they go with the stack.
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": state_table,
        },
        "ReconcileLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            **when,
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": _cfn(names.log_group),
                "RetentionInDays": {"Ref": "LogRetentionDays"},
                "Tags": tags,
            },
        },
        "ReconcileRole": {
            "Type": "AWS::IAM::Role",
            **when,
            "Properties": {
                "RoleName": _cfn(names.role),
                "AssumeRolePolicyDocument": models.trust_policy(),
                "Policies": [
                    {
                        "PolicyName": models.RECONCILE_POLICY_NAME,
                        "PolicyDocument": _cfn(models.reconcile_role_policy(target)),
                    }
                ],
                "Tags": tags,
            },
        },
        "ReconcileFunction": {
            "Type": "AWS::Lambda::Function",
            **when,
            "DependsOn": ["ReconcileLogGroup"],
            "Properties": {
                **settings,
                "FunctionName": _cfn(names.function),
                "Description": "livekart-users: scheduled reconcile of the pool into the table",
                "ReservedConcurrentExecutions": 1,
                "Code": {"S3Bucket": {"Ref": "CodeBucket"}, "S3Key": {"Ref": "CodeKey"}},
                "Tags": tags,
            },
        },
        "ReconcileRule": {
            "Type": "AWS::Events::Rule",
            **when,
            "Properties": {
                "Name": _cfn(names.rule),
                "Description": "livekart-users: scheduled reconcile of the pool",
                "ScheduleExpression": models.RECONCILE_SCHEDULE,
                "State": "ENABLED",
                "Targets": [rule_target],
            },
        },
        "ReconcileInvokePermission": {
            "Type": "AWS::Lambda::Permission",
            **when,
            "Properties": permission,
        },
    }


def _parameters() -> dict[str, Any]:
    return {
        "CodeBucket": {
            "Type": "String",
            "Description": "S3 bucket holding the zip `livekart-users package` writes",
        },
        "CodeKey": {
            "Type": "String",
            "Description": "S3 key of the zip; a new key per build (its SHA-256, say) makes "
            "CloudFormation update the code",
        },
        "UserPoolId": {
            "Type": "String",
            "Description": "The pool whose triggers may invoke the function",
            "AllowedPattern": r"[\w-]+_[0-9a-zA-Z]+",
        },
        "CreateTable": {
            "Type": "String",
            "Description": "yes: create the users table (retained on delete); no: it exists",
            "AllowedValues": ["yes", "no"],
            "Default": "no",
        },
        "TableName": {
            "Type": "String",
            "Default": DEFAULT_TABLE,
            "AllowedPattern": r"[a-zA-Z0-9_.-]{3,255}",
        },
        "FunctionName": {"Type": "String", "Default": DEFAULT_FUNCTION},
        "RoleName": {"Type": "String", "Default": DEFAULT_ROLE},
        "Architecture": {
            "Type": "String",
            "Default": models.DEFAULT_ARCHITECTURE,
            "AllowedValues": list(ARCHITECTURES),
        },
        "MemorySize": {
            "Type": "Number",
            "Description": "MB; Lambda's CPU grows with it. The default is what a cold sign-up "
            "needs to start within 1 s (docs/deploy.md, docs/performance.md)",
            "Default": models.MEMORY_MB,
            "MinValue": models.MEMORY_RANGE[0],
            "MaxValue": models.MEMORY_RANGE[1],
        },
        "LogRetentionDays": {
            "Type": "Number",
            "Default": models.LOG_RETENTION_DAYS,
            "AllowedValues": list(RETENTION_DAYS),
        },
        "AlarmTopicArn": {
            "Type": "String",
            "Description": "SNS topic the failed-writes alarm notifies (empty: none)",
            "Default": "",
        },
        "ReconcileEverySeconds": {
            "Type": "Number",
            "Description": "A complete scheduled reconcile run every this many seconds (0: no "
            "scheduled reconcile; at least 3600 otherwise)",
            "Default": 0,
            "MinValue": 0,
        },
        "ErasurePolicy": {
            "Type": "String",
            "Description": "What the change handler does to a deleted user's row: anonymize "
            "(personal fields removed, app data kept), delete, or keep",
            "Default": "anonymize",
            "AllowedValues": ["anonymize", "delete", "keep"],
        },
        "RecoveryPeriodDays": {
            "Type": "Number",
            "Description": "Days point-in-time recovery keeps (a new table's only): an erased "
            "user's data stays restorable that long",
            "Default": 35,
            "MinValue": 1,
            "MaxValue": 35,
        },
    }


def _cfn(value: Any) -> Any:
    """Placeholders to intrinsic functions: `${X}` alone is a Ref, inside text an Fn::Sub."""
    if isinstance(value, dict):
        return {key: _cfn(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_cfn(inner) for inner in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    value = value.replace("arn:aws:", "arn:${AWS::Partition}:")
    whole = _WHOLE_REFERENCE.fullmatch(value)
    return {"Ref": whole.group(1)} if whole else {"Fn::Sub": value}
