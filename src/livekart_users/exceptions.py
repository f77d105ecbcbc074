"""The library's errors: each says what went wrong and what to do; the CLI prints them."""

from __future__ import annotations


class LivekartUsersError(Exception):
    """Base of every error this package raises on purpose."""


class InvalidRecord(LivekartUsersError):
    """A row that is not a valid user record."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid user record: " + "; ".join(problems))


class InvalidExtraFields(LivekartUsersError):
    """The extra-fields configuration (USERS_EXTRA_FIELDS) cannot be used."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"USERS_EXTRA_FIELDS {reason}")
        self.reason = reason  # without the variable's name: the CLI names its option


class TableNotFound(LivekartUsersError):
    """The users table does not exist."""

    def __init__(self, table: str) -> None:
        super().__init__(
            f"table {table!r} does not exist: create it with `livekart-users local up` "
            "(locally) or `livekart-users deploy` (on AWS)"
        )


class TableBusy(LivekartUsersError):
    """DynamoDB left keys of a batch read unprocessed, again and again."""

    def __init__(self, table: str) -> None:
        super().__init__(f"table {table!r} is too busy to read right now: try again in a moment")


class ServiceUnreachable(LivekartUsersError):
    """An AWS endpoint (or its local emulator) did not answer."""


class LocalStackError(LivekartUsersError):
    """The local stack could not start, or is not running."""


class WrongRegion(LivekartUsersError):
    """The user pool id belongs to another region than the one in use."""

    def __init__(self, user_pool_id: str, region: str) -> None:
        pool_region = user_pool_id.split("_", 1)[0]
        super().__init__(
            f"user pool {user_pool_id} is in {pool_region}, but the region in use is {region}: "
            f"pass --region {pool_region} (or set AWS_REGION={pool_region})"
        )


class PoolNotFound(LivekartUsersError):
    """The user pool does not exist (in this region)."""

    def __init__(self, pool_id: str, region: str | None = None) -> None:
        where = f" in {region}" if region else ""
        super().__init__(
            f"user pool {pool_id} was not found{where}: check the id (Cognito console → "
            "User pools) and the region (--region or AWS_REGION)"
        )


class InvalidErasurePolicy(LivekartUsersError):
    """The erasure policy (USERS_ERASURE_POLICY / --erasure-policy) is not one we know."""

    def __init__(self, value: str) -> None:
        super().__init__(
            f"erasure policy {value!r} is not one of anonymize, delete, keep: set "
            "USERS_ERASURE_POLICY (or --erasure-policy) to one of them"
        )


class MissingSetting(LivekartUsersError):
    """A setting the function needs is not set (its deployment is incomplete)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not set: run `livekart-users deploy` to configure it")


class NotInPool(LivekartUsersError):
    """`users delete` was given a user the pool does not have: nothing was changed."""

    def __init__(self, user_id: str, user_pool_id: str, why: str) -> None:
        super().__init__(
            f"user {user_id!r} is not in pool {user_pool_id} ({why}): nothing changed; "
            "check the user id and --user-pool-id"
        )
