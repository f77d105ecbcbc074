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

from enum import StrEnum

from livekart_users import schema
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
