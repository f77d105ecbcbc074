"""One user of the pool, found by `sub`, as Cognito has them right now.

CloudTrail names a user by `sub`, and the table is keyed by it, but `AdminGetUser` needs the
user name. `ListUsers` can filter on `sub = "..."` but is eventually consistent (a user just
deleted may still be listed, one just created may not be yet), so it only supplies the
name; `AdminGetUser`, strongly consistent, has the last word. A name we already know (the
row's `username`; Cognito user names never change) is asked first, by `AdminGetUser` alone:
`ListUsers` draws on the account's `UserList` quota (30 requests/s, not adjustable, shared
with every caller in the account and region), `AdminGetUser` on `UserRead` (120/s). Only when
that name is gone or now belongs to another user (a name re-used after a deletion: its sub
differs) is the pool listed by sub.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from livekart_users.aws import error_code
from livekart_users.exceptions import PoolNotFound


@dataclass(frozen=True)
class PoolUser:
    """A user as `AdminGetUser` returned them (attributes as a name → value map)."""

    username: str
    sub: str
    enabled: bool
    status: str
    attributes: dict[str, str] = field(repr=False)  # personal data: never in a repr or a log


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def find_user(
    client: Any, user_pool_id: str, sub: str, *, username_hint: str | None = None
) -> PoolUser | None:
    """The pool's user whose `sub` is `sub`, or None when Cognito says there is none.

    Raises PoolNotFound when the pool itself does not exist (a configuration error, not a
    missing user: erasing on it would erase everyone).
    """
    if username_hint:
        user = _get(client, user_pool_id, username_hint)
        if user is not None and user.sub == sub:
            return user
    try:
        answer = client.list_users(
            UserPoolId=user_pool_id, Filter=f'sub = "{_quoted(sub)}"', Limit=1
        )
    except ClientError as exc:
        raise _translated(exc, user_pool_id) from exc
    listed = [str(u["Username"]) for u in answer.get("Users") or [] if u.get("Username")]
    for name in listed:
        if name == username_hint:
            continue  # asked above: gone, or someone else's now
        user = _get(client, user_pool_id, name)
        if user is not None and user.sub == sub:
            return user
    return None


def _get(client: Any, user_pool_id: str, username: str) -> PoolUser | None:
    try:
        answer = client.admin_get_user(UserPoolId=user_pool_id, Username=username)
    except ClientError as exc:
        if error_code(exc) == "UserNotFoundException":
            return None
        raise _translated(exc, user_pool_id) from exc
    attributes = {
        str(a["Name"]): str(a.get("Value") or "") for a in answer.get("UserAttributes") or []
    }
    return PoolUser(
        username=str(answer.get("Username") or username),
        sub=attributes.get("sub", ""),
        # AdminGetUser always says; a missing flag is read as enabled, as Cognito's default.
        enabled=bool(answer.get("Enabled", True)),
        status=str(answer.get("UserStatus") or ""),
        attributes=attributes,
    )


def _translated(exc: Exception, user_pool_id: str) -> Exception:
    if error_code(exc) == "ResourceNotFoundException":
        return PoolNotFound(user_pool_id)
    return exc
