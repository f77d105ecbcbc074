"""What the deployed functions and their deployment agree on: names only, no imports.

The Lambda entry modules (`triggers`, `changes`) read these at run time; `deploy`, `doctor`
and the CloudFormation template write them into the functions' settings, alarms and rules.
Kept apart from both so that deploying never imports an entry module (the trigger's import
switches the garbage collector off and builds a DynamoDB client) and the functions never
import deploy.
"""

from __future__ import annotations

SERVICE = "livekart-users"
METRICS_NAMESPACE = "LiveKartUsers"
# The dimension that tells two deployments' metrics apart (Lambda sets the variable).
FUNCTION_DIMENSION = "function_name"

TRIGGER_HANDLER = "livekart_users.triggers.handler"
CHANGE_HANDLER = "livekart_users.changes.handler"
RECONCILE_HANDLER = "livekart_users.scheduled.handler"

# The trigger's writes that certainly did not land, and those whose answer never came.
WRITE_FAILED_METRIC = "UserWriteFailed"
WRITE_UNKNOWN_METRIC = "UserWriteUnknown"
# Change events the change handler could not act on (no user sub, malformed): acknowledged,
# so never retried, and counted so an alarm can say they are being lost.
CHANGE_DROPPED_METRIC = "ChangeEventDropped"

# The change handler's events: CloudTrail's record of these Cognito calls, via EventBridge.
CHANGE_DETAIL_TYPE = "AWS API Call via CloudTrail"
CHANGE_SOURCE = "aws.cognito-idp"
DELETIONS = frozenset({"AdminDeleteUser", "DeleteUser"})
UPDATES = frozenset(
    {
        "AdminUpdateUserAttributes",
        "UpdateUserAttributes",
        "VerifyUserAttribute",
        "AdminDeleteUserAttributes",
        "DeleteUserAttributes",
        "AdminDisableUser",
        "AdminEnableUser",
    }
)
HANDLED = DELETIONS | UPDATES
# Made with an access token: CloudTrail records no pool for them (a user's sub is unique
# across pools, so the handler checks the user against its own pool instead).
TOKEN_CALLS = frozenset(
    {"DeleteUser", "UpdateUserAttributes", "VerifyUserAttribute", "DeleteUserAttributes"}
)
# The change handler's setting naming the pool it serves.
USER_POOL_SETTING = "USER_POOL_ID"
