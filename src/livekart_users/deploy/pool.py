"""Changing a user pool's triggers without resetting anything else.

`UpdateUserPool` resets every setting it is not sent (MFA, email, policies, other triggers…),
so this is a read-modify-write: describe the pool, send every setting back, change only the
trigger slots. Which fields can go back is derived from botocore's service model; a setting
the pool has that `UpdateUserPool` cannot take — including one newer than the pinned botocore,
seen in the raw response — stops the change instead of being silently reset.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore

from livekart_users.exceptions import LivekartUsersError, PoolNotFound

# What DescribeUserPool returns and UpdateUserPool cannot take, because it is not a setting
# or cannot change after creation. `Name` goes back as `PoolName`.
READ_ONLY = frozenset(
    {
        "Id",
        "Name",
        "Status",
        "LastModifiedDate",
        "CreationDate",
        "SchemaAttributes",
        "AliasAttributes",
        "UsernameAttributes",
        "EstimatedNumberOfUsers",
        "SmsConfigurationFailure",
        "EmailConfigurationFailure",
        "Domain",
        "CustomDomain",
        "UsernameConfiguration",
        "Arn",
    }
)


class UnsupportedPoolSetting(LivekartUsersError):
    """The pool has a setting UpdateUserPool would reset."""

    def __init__(self, pool_id: str, fields: list[str]) -> None:
        super().__init__(
            f"user pool {pool_id} has settings that cannot be sent back through UpdateUserPool "
            f"by this version (botocore {botocore.__version__}): {', '.join(sorted(fields))}. "
            "Changing its triggers now would reset them, so nothing was changed: upgrade "
            "livekart-users, or attach the triggers in the Cognito console"
        )


class TriggerOwnedByOtherFunction(LivekartUsersError):
    """A trigger slot holds another function."""

    def __init__(self, slots: Mapping[str, str]) -> None:
        owned = ", ".join(f"{slot} → {arn}" for slot, arn in sorted(slots.items()))
        super().__init__(
            f"trigger slots already used by another function: {owned}. Re-run with --force "
            "to replace them"
        )


@dataclass
class PoolSettings:
    """A pool as DescribeUserPool returned it, and the field names its raw answer had."""

    pool: dict[str, Any]
    raw_fields: frozenset[str]

    @property
    def lambda_config(self) -> dict[str, Any]:
        return dict(self.pool.get("LambdaConfig") or {})


def describe(cognito: Any, pool_id: str) -> PoolSettings:
    """The pool's settings, with the names of every field the service sent (modelled or not)."""
    raw: dict[str, Any] = {}

    def keep_raw(response_dict: Mapping[str, Any], **_: Any) -> None:
        raw["body"] = response_dict.get("body")

    event = f"before-parse.{cognito.meta.service_model.service_id.hyphenize()}.DescribeUserPool"
    cognito.meta.events.register(event, keep_raw, unique_id="livekart-users-raw-pool")
    try:
        pool = cognito.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    except cognito.exceptions.ResourceNotFoundException:
        raise PoolNotFound(pool_id, cognito.meta.region_name) from None
    finally:
        cognito.meta.events.unregister(event, unique_id="livekart-users-raw-pool")
    try:
        fields = frozenset(json.loads(raw.get("body") or b"{}").get("UserPool", {}))
    except (ValueError, AttributeError):
        fields = frozenset(pool)
    return PoolSettings(pool=pool, raw_fields=fields or frozenset(pool))


def writable_fields(cognito: Any) -> frozenset[str]:
    """What UpdateUserPool takes, from the service model (not a hand-kept list)."""
    shape = cognito.meta.service_model.operation_model("UpdateUserPool").input_shape
    return frozenset(shape.members) - {"UserPoolId", "PoolName"}


def update_request(
    cognito: Any, settings: PoolSettings, lambda_config: Mapping[str, Any]
) -> dict[str, Any]:
    """The UpdateUserPool request that keeps every setting and sets `lambda_config`."""
    writable = writable_fields(cognito)
    lost = [
        f
        for f in settings.raw_fields | set(settings.pool)
        if f not in writable and f not in READ_ONLY
    ]
    if lost:
        raise UnsupportedPoolSetting(str(settings.pool.get("Id")), lost)
    request: dict[str, Any] = {
        k: copy.deepcopy(v) for k, v in settings.pool.items() if k in writable
    }
    request["UserPoolId"] = settings.pool["Id"]
    if settings.pool.get("Name"):
        request["PoolName"] = settings.pool["Name"]
    # Deprecated, carried by TemporaryPasswordValidityDays; AWS rejects a request with both.
    admin = request.get("AdminCreateUserConfig")
    if isinstance(admin, dict):
        admin.pop("UnusedAccountValidityDays", None)
    request["LambdaConfig"] = dict(lambda_config)
    return request


def is_ours(arn: str | None, function_arn: str) -> bool:
    """The slot's function is ours (a version or alias of it counts)."""
    return bool(arn) and (arn == function_arn or str(arn).startswith(function_arn + ":"))


def foreign_slots(
    settings: PoolSettings, slots: tuple[str, ...], function_arn: str
) -> dict[str, str]:
    config = settings.lambda_config
    return {
        s: str(config[s]) for s in slots if config.get(s) and not is_ours(config[s], function_arn)
    }


def attach(
    cognito: Any,
    pool_id: str,
    function_arn: str,
    slots: tuple[str, ...],
    *,
    force: bool = False,
    owner_arn: str | None = None,
) -> list[str]:
    """Point `slots` at `function_arn` (a function, or its alias), keeping every other
    setting; the slots changed. A slot naming `owner_arn` (the bare function, any of its
    versions or aliases) is ours to move; any other function's is refused unless `force`."""
    settings = describe(cognito, pool_id)
    foreign = foreign_slots(settings, slots, owner_arn or function_arn)
    if foreign and not force:
        raise TriggerOwnedByOtherFunction(foreign)
    config = settings.lambda_config
    changed = [s for s in slots if config.get(s) != function_arn]
    if changed:
        config.update(dict.fromkeys(slots, function_arn))
        cognito.update_user_pool(**update_request(cognito, settings, config))
    return changed


def detach(cognito: Any, pool_id: str, function_arn: str, slots: tuple[str, ...]) -> list[str]:
    """Empty the slots that hold our function; every other setting and trigger stays."""
    settings = describe(cognito, pool_id)
    config = settings.lambda_config
    ours = [s for s in slots if is_ours(config.get(s), function_arn)]
    if ours:
        for slot in ours:
            config.pop(slot)
        cognito.update_user_pool(**update_request(cognito, settings, config))
    return ours
