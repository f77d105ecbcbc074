"""What the console reads of one user, and the actions it offers, on the local stack.

Each action goes through the library the CLI uses: sign-up as the demo does it
(`demo.sign_up`: SignUp, then ConfirmSignUp with the stack's code, so the trigger runs),
deletion through `erasure.delete_user` (the erasure policy), reconcile through
`reconcile.reconcile`. Disabling and editing an attribute are Cognito's own admin calls: the
stack's Cognito endpoint turns them into change events, and the change handler follows them
in the row, as CloudTrail and EventBridge would on AWS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from livekart_users import erasure, pool_users, schema
from livekart_users.exceptions import LivekartUsersError
from livekart_users.local.console import users_view
from livekart_users.table import UsersTable

# The Cognito attributes the console may change: the identity the row copies. `custom:role`
# is immutable in the stack's pool, and `sub` and `email_verified` are Cognito's to set.
EDITABLE_ATTRIBUTES = ("email", "name", "given_name", "family_name", "phone_number")
# The row's fields that belong to the app: shown, never editable in the console.
APP_FIELDS = frozenset(
    {"role", "status", *schema.APP_DEFAULTS, *schema.VENDOR_DEFAULTS, "lastLoginAt"}
)


class ActionError(LivekartUsersError):
    """An action the console cannot do as asked (what to change is in the message)."""


class UserNotFound(ActionError):
    def __init__(self, user_id: str) -> None:
        super().__init__(f"no user with id {user_id} in the pool")


@dataclass
class Stack:
    """The clients and names of the running local stack."""

    cognito: Any
    table: UsersTable
    user_pool_id: str
    client_id: str
    confirmation_code: str


def detail(stack: Stack, user_id: str) -> dict[str, Any]:
    """One user as Cognito has them (strongly consistent) beside their whole row."""
    user = pool_users.find_user(stack.cognito, stack.user_pool_id, user_id)
    row = stack.table.get(user_id)
    if user is None and row is None:
        raise UserNotFound(user_id)
    listed = (
        None
        if user is None
        else {
            "Username": user.username,
            "UserStatus": user.status,
            "Enabled": user.enabled,
            "Attributes": [{"Name": k, "Value": v} for k, v in user.attributes.items()],
        }
    )
    entry = users_view.classify(listed, row)
    return {
        "entry": entry.as_dict(),
        "cognito": None
        if user is None
        else {
            "username": user.username,
            "status": user.status,
            "enabled": user.enabled,
            "attributes": dict(sorted(user.attributes.items())),
        },
        "row": None if row is None else dict(sorted(row.items(), key=_field_order)),
        "app_fields": sorted(f for f in (row or {}) if f in APP_FIELDS or _is_extra(f)),
        "editable_attributes": list(EDITABLE_ATTRIBUTES),
    }


def _field_order(item: tuple[str, Any]) -> tuple[int, str]:
    """The key and identity first (as Cognito's side shows them), the app's fields after."""
    name = item[0]
    if name == "user_id":
        return (0, "")
    if name in schema.IDENTITY_FIELDS:
        return (1, str(schema.IDENTITY_FIELDS.index(name)))
    return (3 if name in APP_FIELDS or _is_extra(name) else 2, name)


def _is_extra(name: str) -> bool:
    """Fields added by USERS_EXTRA_FIELDS are the app's too."""
    return name not in schema.RECORD_FIELDS


def create_test_user(
    stack: Stack, email: str, password: str, *, role: str = "customer", name: str | None = None
) -> str:
    """Sign a user up and confirm them, as an app would (the trigger runs); their sub."""
    from livekart_users.local import demo

    email = email.strip()
    if not email or "@" not in email:
        raise ActionError("give the test user an email address, e.g. dev1@example.com")
    if role not in schema.SELF_SERVICE_ROLES:
        raise ActionError("a sign-up can only ask for role customer or vendor")
    user = demo.DemoUser(email, role, name=name or None)
    if not demo.sign_up(stack.cognito, stack.client_id, user, password):
        raise ActionError(f"{email} has signed up already: pick another address")
    # AdminGetUser takes the email in a pool that signs in by email; strongly consistent.
    answer = stack.cognito.admin_get_user(UserPoolId=stack.user_pool_id, Username=email)
    return users_view.attributes_of(answer).get("sub", "")


def _user(stack: Stack, user_id: str) -> pool_users.PoolUser:
    user = pool_users.find_user(stack.cognito, stack.user_pool_id, user_id)
    if user is None:
        raise UserNotFound(user_id)
    return user


def set_enabled(stack: Stack, user_id: str, enabled: bool) -> None:
    """Cognito's own enable/disable (AdminEnableUser / AdminDisableUser)."""
    user = _user(stack, user_id)
    call = stack.cognito.admin_enable_user if enabled else stack.cognito.admin_disable_user
    call(UserPoolId=stack.user_pool_id, Username=user.username)


def change_attribute(stack: Stack, user_id: str, name: str, value: str) -> None:
    """Change one identity attribute in Cognito (AdminUpdateUserAttributes)."""
    if name not in EDITABLE_ATTRIBUTES:
        raise ActionError(
            f"attribute {name!r} cannot be changed here: choose one of "
            + ", ".join(EDITABLE_ATTRIBUTES)
        )
    user = _user(stack, user_id)
    if value.strip():
        stack.cognito.admin_update_user_attributes(
            UserPoolId=stack.user_pool_id,
            Username=user.username,
            UserAttributes=[{"Name": name, "Value": value.strip()}],
        )
    elif name == "email":
        raise ActionError("email cannot be emptied: this pool signs users in by email")
    else:
        stack.cognito.admin_delete_user_attributes(
            UserPoolId=stack.user_pool_id, Username=user.username, UserAttributeNames=[name]
        )


def delete(stack: Stack, user_id: str, policy: str) -> dict[str, Any]:
    """Delete the user from Cognito, then erase their row by `policy` (as `users delete`)."""
    done = erasure.delete_user(
        stack.cognito, stack.table, stack.user_pool_id, user_id, erasure.parse_policy(policy)
    )
    return done.as_dict()


def reconcile(stack: Stack, *, apply: bool) -> dict[str, Any]:
    """`reconcile` (a dry run, or `--apply`): its report."""
    from livekart_users import reconcile as reconciling

    report = reconciling.reconcile(stack.cognito, stack.table, stack.user_pool_id, apply=apply)
    return report.as_dict()
