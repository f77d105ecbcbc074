"""The erasure policy: what happens to a user's row once their Cognito user is gone.

Set at deploy (`USERS_ERASURE_POLICY`), applied by the change handler on a deletion event,
by `users delete`, and by `reconcile --apply --erase-orphans`:
- `anonymize` (the default): every personal field goes (email, name, phone, address,
  profile image, and the user name when it is an email or a phone number), the row is marked
  `deletedAt`, and the app data the business must keep (orders, totals, role, store) stays.
  Without `email` the `email-index` GSI no longer finds the row.
- `delete`: the row goes.
- `keep`: the row stays as it is, marked `deletedAt` (for apps with their own erasure job).

Every policy is idempotent: applied twice, the second changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import pool_users, schema
from livekart_users.aws import error_code
from livekart_users.exceptions import InvalidErasurePolicy
from livekart_users.table import UsersTable

ENVIRONMENT_VARIABLE = "USERS_ERASURE_POLICY"


class Policy(StrEnum):
    """What erasure does to the row."""

    ANONYMIZE = "anonymize"
    DELETE = "delete"
    KEEP = "keep"


DEFAULT_POLICY = Policy.ANONYMIZE


class Erased(StrEnum):
    """What erasing did."""

    ANONYMIZED = "anonymized"
    DELETED = "deleted"
    MARKED_DELETED = "marked_deleted"
    ALREADY_ERASED = "already_erased"
    NO_ROW = "no_row"


def parse_policy(text: str | None) -> Policy:
    """The policy named by `text` (any case); the default when it is empty."""
    if text is None or not text.strip():
        return DEFAULT_POLICY
    try:
        return Policy(text.strip().lower())
    except ValueError:
        raise InvalidErasurePolicy(text) from None


def erase(
    table: UsersTable, user_id: str, policy: Policy, *, timestamp: str | None = None
) -> Erased:
    """Apply `policy` to the user's row. Call it only once Cognito says the user is gone."""
    timestamp = timestamp or schema.now()
    if policy is Policy.DELETE:
        return Erased.DELETED if table.delete(user_id) else Erased.NO_ROW
    row = table.get(user_id)
    if row is None:
        return Erased.NO_ROW
    if schema.is_deleted(row):
        return Erased.ALREADY_ERASED
    if policy is Policy.KEEP:
        done = table.mark_deleted(user_id, timestamp=timestamp)
        return Erased.MARKED_DELETED if done else Erased.ALREADY_ERASED
    # User names are immutable in Cognito, so deciding from the row read a moment ago is safe.
    done = table.anonymize(
        user_id,
        remove_username=schema.username_is_personal(row.get("username")),
        timestamp=timestamp,
    )
    if done:
        return Erased.ANONYMIZED
    # Marked deleted by a concurrent erasure meanwhile, or the row went.
    return Erased.ALREADY_ERASED if table.get(user_id) is not None else Erased.NO_ROW


@dataclass(frozen=True)
class Deletion:
    """What `delete_user` did: to the Cognito user, and to the row."""

    user_id: str
    policy: str
    cognito_user_deleted: bool  # False: there was no such user (already deleted, say)
    row: str  # an `Erased` value

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def delete_user(
    cognito: Any,
    table: UsersTable,
    user_pool_id: str,
    user_id: str,
    policy: Policy,
    *,
    timestamp: str | None = None,
) -> Deletion:
    """Delete the user from Cognito (`AdminDeleteUser`), then apply `policy` to their row.

    Cognito first: once the user is gone there, every path agrees the row must be erased (a
    second run, the change handler's deletion event, `reconcile --erase-orphans`), and no
    sign-in can write identity back. The other order, stopped half-way, leaves a live
    account whose next sign-in writes email and name into the erased row, and nothing
    would notice. Idempotent: run again, it finishes what a stopped run left.
    """
    row = table.get(user_id)
    hint = row.get("username") if row else None
    user = pool_users.find_user(
        cognito, user_pool_id, user_id, username_hint=hint if isinstance(hint, str) else None
    )
    deleted = False
    if user is not None:
        try:
            cognito.admin_delete_user(UserPoolId=user_pool_id, Username=user.username)
            deleted = True
        except ClientError as exc:
            if error_code(exc) != "UserNotFoundException":  # deleted meanwhile: as wanted
                raise
    erased = erase(table, user_id, policy, timestamp=timestamp)
    return Deletion(user_id, str(policy), deleted, str(erased))
