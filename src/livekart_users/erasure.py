"""The erasure policy: what happens to a user's row once their Cognito user is gone.

Set at deploy (`USERS_ERASURE_POLICY`), applied by the change handler on a deletion event,
by `users delete`, and by `reconcile --apply --erase-orphans`:
- `anonymize` (the default): every personal field goes (email, name, phone, address,
  profile image, and the user name whatever its form), the row is marked `deletedAt`, and
  the app data the business must keep (orders, totals, role, store) stays. Without `email`
  the `email-index` GSI no longer finds the row.
- `delete`: the row is replaced by a tombstone (`user_id`, `userPoolId`, `deletedAt`,
  `updatedAt`): nothing of the person stays, and no late write can create the row again.
- `keep`: the row stays as it is, marked `deletedAt` (for apps with their own erasure job).

Only the row of the pool's own user is erased (`userPoolId`), and an erased row stays
erased: every write that brings identity into a row requires it not to be. Every policy is
idempotent: applied twice, the second changes nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import pool_users, schema
from livekart_users.aws import error_code
from livekart_users.exceptions import InvalidErasurePolicy, NotInPool
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
    # Left as it is: the row is another pool's user (several pools may share one table).
    OTHER_POOL = "other_pool"
    # Left as it is: the row records no pool (written before rows did) and nothing proved it
    # this pool's.
    NO_POOL_RECORDED = "no_pool_recorded"


# What erasing a row did when it erased it now.
ERASED_NOW = frozenset({Erased.ANONYMIZED, Erased.DELETED, Erased.MARKED_DELETED})
_DONE = {
    Policy.ANONYMIZE: Erased.ANONYMIZED,
    Policy.DELETE: Erased.DELETED,
    Policy.KEEP: Erased.MARKED_DELETED,
}
# A conditional erasure that lost a race reads the row again: a few times at most.
_ATTEMPTS = 3


def parse_policy(text: str | None) -> Policy:
    """The policy named by `text` (any case); the default when it is empty."""
    if text is None or not text.strip():
        return DEFAULT_POLICY
    try:
        return Policy(text.strip().lower())
    except ValueError:
        raise InvalidErasurePolicy(text) from None


def erase(
    table: UsersTable,
    user_id: str,
    policy: Policy,
    *,
    user_pool_id: str,
    adopt_legacy: bool = False,
    tombstone_if_absent: bool = False,
    timestamp: str | None = None,
) -> Erased:
    """Apply `policy` to the user's row if it is `user_pool_id`'s. Call it only once Cognito
    (AdminGetUser, strongly consistent, in that pool) says the user is gone.

    A row of another pool is never touched (OTHER_POOL). A row recording no pool is erased
    only with `adopt_legacy`, when the caller knows the user was this pool's or is gone from
    every pool (a successful deletion of that `sub`); else NO_POOL_RECORDED. With
    `tombstone_if_absent` (the user was confirmed in this pool) a missing row gets a
    tombstone, so a sign-up or sign-in still in flight cannot create it. Every write is
    conditioned on the pool and on the row not being erased yet, in the same request.
    """
    timestamp = timestamp or schema.now()
    for _ in range(_ATTEMPTS):
        row = table.get(user_id)
        if row is None:
            if not tombstone_if_absent or table.tombstone_if_absent(
                user_id, user_pool_id=user_pool_id, timestamp=timestamp
            ):
                return Erased.NO_ROW
            continue  # created meanwhile: erase it
        owner = schema.pool_of(row)
        if owner is not None and owner != user_pool_id:
            return Erased.OTHER_POOL
        if owner is None and not adopt_legacy:
            return Erased.NO_POOL_RECORDED
        if schema.is_deleted(row):
            return Erased.ALREADY_ERASED
        write = {
            Policy.ANONYMIZE: table.anonymize,
            Policy.DELETE: table.replace_with_tombstone,
            Policy.KEEP: table.mark_deleted,
        }[policy]
        if write(
            user_id, user_pool_id=user_pool_id, timestamp=timestamp, adopt_legacy=adopt_legacy
        ):
            return _DONE[policy]
        # Erased, adopted or removed meanwhile: read it again and decide anew.
    raise RuntimeError(f"row {user_id} kept changing while it was being erased; try again")


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

    Raises NotInPool, having changed nothing, when the row is another pool's, or the pool has
    no such user and the row records no pool. Neither user nor row: nothing is written.
    """
    row = table.get(user_id)
    owner = schema.pool_of(row) if row else None
    if owner is not None and owner != user_pool_id:
        raise NotInPool(user_id, user_pool_id, "its row belongs to another pool")
    hint = row.get("username") if row else None
    user = pool_users.find_user(
        cognito, user_pool_id, user_id, username_hint=hint if isinstance(hint, str) else None
    )
    if user is None and row is None:
        return Deletion(user_id, str(policy), False, str(Erased.NO_ROW))  # no one knows them
    if user is None and owner is None:
        # Not a stopped run of ours to finish: that would have left the pool's id in the row.
        raise NotInPool(
            user_id, user_pool_id, "Cognito has no such user and its row records no pool"
        )
    deleted = False
    if user is not None:
        try:
            cognito.admin_delete_user(UserPoolId=user_pool_id, Username=user.username)
            deleted = True
        except ClientError as exc:
            if error_code(exc) != "UserNotFoundException":  # deleted meanwhile: as wanted
                raise
    # The user was this pool's (found there, or the row says so): a row recording no pool is
    # theirs, and a missing one gets a tombstone against a sign-in still in flight.
    erased = erase(
        table,
        user_id,
        policy,
        user_pool_id=user_pool_id,
        adopt_legacy=True,
        tombstone_if_absent=True,
        timestamp=timestamp,
    )
    return Deletion(user_id, str(policy), deleted, str(erased))
