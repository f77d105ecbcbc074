"""What the operator's policies in docs/permissions.md must allow beyond the calls themselves.

An API call can need more than its own action: IAM checks some actions without a call of their
own. tests/test_permissions.py records every call each command makes and checks the documented
policy against these tables, so a policy that would fail on AWS (and pass on moto, which
checks nothing) is caught here.
"""

from __future__ import annotations

from collections.abc import Iterable

# Actions an operation needs besides its own, made the way livekart-users makes it:
# - GetFunction returns the function's tags only to a caller also allowed `lambda:ListTags`
#   (Lambda API reference, GetFunction); deploy, destroy and attach decide ownership by them,
#   so without it every function looks unmanaged;
# - naming an execution role in CreateFunction / UpdateFunctionConfiguration passes it to
#   Lambda (`iam:PassRole`);
# - tags given at creation are checked as the service's tagging action.
IMPLIED: dict[str, frozenset[str]] = {
    "lambda:GetFunction": frozenset({"lambda:ListTags"}),
    "lambda:CreateFunction": frozenset({"iam:PassRole", "lambda:TagResource"}),
    "lambda:UpdateFunctionConfiguration": frozenset({"iam:PassRole"}),
    "iam:CreateRole": frozenset({"iam:TagRole"}),
    "logs:CreateLogGroup": frozenset({"logs:TagResource"}),
    "cloudwatch:PutMetricAlarm": frozenset({"cloudwatch:TagResource"}),
    "dynamodb:CreateTable": frozenset({"dynamodb:TagResource"}),
    "events:PutRule": frozenset({"events:TagResource"}),
    "sqs:CreateQueue": frozenset({"sqs:TagQueue"}),
}

# The only actions a policy may grant on every resource of their kind: listing calls IAM
# cannot narrow, and reads with no resource-level permission. Everything else names our own
# resources (a log-group action on `log-group:*` would let whoever deploys shorten the
# retention of, or delete, any log group in the account, CloudTrail's included).
UNSCOPED = frozenset(
    {
        "logs:DescribeLogGroups",
        "cloudtrail:DescribeTrails",
        "cloudtrail:GetTrailStatus",
        "cloudtrail:GetEventSelectors",
        "cloudwatch:GetMetricData",
        "iam:GetPolicy",
        "iam:GetPolicyVersion",
    }
)

# `iam:PassRole` only to Lambda: the roles are execution roles, nothing else may receive them.
PASSED_TO_LAMBDA = {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}


def needed(actions: Iterable[str]) -> set[str]:
    """The actions `actions` need, with those IAM checks implicitly."""
    out = set(actions)
    for action in list(out):
        out |= IMPLIED.get(action, frozenset())
    return out
