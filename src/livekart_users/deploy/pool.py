"""Changing a user pool's triggers without resetting anything else.

`UpdateUserPool` resets every setting it is not sent (MFA, email, policies, other triggers…),
so this is a read-modify-write: describe the pool, send every setting back, change only the
trigger slots. Which fields can go back is derived from botocore's service model.

A setting newer than the pinned botocore is dropped by botocore's parser, and would then be
reset: so the raw JSON of DescribeUserPool (botocore's `before-parse` event) is walked
against the model's shapes at every depth, and any key the model does not know — at the top
(`PasskeyConfiguration`) or nested (`LambdaConfig.FutureTrigger`) — stops the write, as does
a raw answer that cannot be read.

The MFA settings live outside DescribeUserPool (GetUserPoolMfaConfig: SMS, authenticator
app, email MFA, WebAuthn/passkeys). They are read before the update (an unknown key there
stops it too) and again after; if the update changed them, the settings read before are put
back with SetUserPoolMfaConfig, and what could not be put back stops with one line.

Settings that depend on the pool's feature plan go back only in the form UpdateUserPool
accepts (API reference, as in the pinned botocore's model):
- `DcrConfiguration` is never sent: "if you omit this parameter, Amazon Cognito keeps the
  existing configuration", while sending it back without `EnableStatus` would turn dynamic
  client registration on, and on a Lite pool it is refused;
- `AcrConfiguration` is sent only on an Essentials or Plus pool: DescribeUserPool "always
  returns the effective configuration, with default names merged in", and custom ACR names
  "require the Essentials or Plus feature plan", so on Lite there is nothing to keep;
- `SmsConfiguration` carries either the Amazon SNS form (`SnsCallerArn`, `ExternalId`,
  `SnsRegion`) or `EumsSms`, "but not both". An answer with both came from an update that
  set `EumsSms` (none can set both), so `EumsSms` goes back alone;
- `UserPoolTier` always goes back: omitted, it "defaults to ESSENTIALS".
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore
from botocore.exceptions import ClientError

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
# Writable, but kept by UpdateUserPool when omitted (see the module docstring).
KEPT_WHEN_OMITTED = frozenset({"DcrConfiguration"})
SNS_SMS = ("SnsCallerArn", "ExternalId", "SnsRegion")
TIERS_WITH_ACR = frozenset({"ESSENTIALS", "PLUS"})
MFA_PREFIX = "MfaConfig"  # how an MFA setting is named in messages: MfaConfig.WebAuthnConfiguration


def _upgrade_hint() -> str:
    return (
        f"this version (botocore {botocore.__version__}) cannot send it back, and "
        "UpdateUserPool would reset it, so nothing was changed: upgrade livekart-users, or "
        "attach the triggers by hand in the Cognito console"
    )


class UnsupportedPoolSetting(LivekartUsersError):
    """The pool has a setting UpdateUserPool would reset."""

    def __init__(self, pool_id: str, fields: list[str]) -> None:
        names = ", ".join(sorted(set(fields)))
        super().__init__(
            f"user pool {pool_id} has settings unknown here: {names}; {_upgrade_hint()}"
        )


class UnreadablePoolAnswer(LivekartUsersError):
    """The raw answer of a pool read could not be read, so what it holds is unknown."""

    def __init__(self, pool_id: str, operation: str, why: str) -> None:
        super().__init__(
            f"the answer of {operation} for user pool {pool_id} could not be read ({why}), so "
            "its settings cannot be sent back whole and nothing was changed: retry, or attach "
            "the triggers by hand in the Cognito console"
        )


class MfaSettingsChanged(LivekartUsersError):
    """UpdateUserPool changed MFA settings, and they could not be put back."""

    def __init__(self, pool_id: str, fields: list[str], why: str) -> None:
        names = ", ".join(f"{MFA_PREFIX}.{f}" for f in sorted(fields))
        super().__init__(
            f"updating user pool {pool_id}'s triggers changed {names}, and {why}: compare "
            "them with `aws cognito-idp get-user-pool-mfa-config` and set them again in the "
            "Cognito console"
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
    """A pool as DescribeUserPool returned it, and the settings its raw answer had that the
    model does not know (dotted paths: `LambdaConfig.FutureTrigger`)."""

    pool: dict[str, Any]
    unknown: list[str] = field(default_factory=list)

    @property
    def lambda_config(self) -> dict[str, Any]:
        return dict(self.pool.get("LambdaConfig") or {})


# --- the raw answer, and what in it the model does not know ---------------------------------

_raw = threading.local()


def _keep_raw(response_dict: Mapping[str, Any], **_: Any) -> None:
    _raw.body = response_dict.get("body")


def _read_raw(
    cognito: Any, operation: str, pool_id: str, call: Callable[[], dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`call()`'s parsed answer and the JSON object botocore parsed it from.

    The handler stays on the client (one per client, by its unique id) and keeps the body in
    a thread-local slot: doctor reads the pool from several threads at once.
    """
    service = cognito.meta.service_model.service_id.hyphenize()
    cognito.meta.events.register(
        f"before-parse.{service}.{operation}", _keep_raw, unique_id=f"livekart-raw-{operation}"
    )
    _raw.body = None
    try:
        parsed = call()
    except ClientError:
        raise
    except Exception as exc:
        if _raw.body is None:  # it never reached the parser: a network error, say
            raise
        why = f"botocore could not parse it: {type(exc).__name__}"
        raise UnreadablePoolAnswer(pool_id, operation, why) from exc
    finally:
        body, _raw.body = _raw.body, None
    if body is None:
        raise UnreadablePoolAnswer(pool_id, operation, "no raw answer was seen")
    try:
        raw = json.loads(body)
    except (TypeError, ValueError):
        raise UnreadablePoolAnswer(pool_id, operation, "it is not JSON") from None
    if not isinstance(raw, dict):
        raise UnreadablePoolAnswer(pool_id, operation, "it is not a JSON object")
    return parsed, raw


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "double": (int, float),
    "float": (int, float),
    "timestamp": (int, float, str),
    "blob": (str,),
}


def unknown_settings(value: Any, shape: Any, path: str = "") -> list[str]:
    """Every key in `value` (raw JSON) that `shape` (a botocore shape) does not model, at any
    depth, as dotted paths; a value of another type than the model's counts too."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{path} (not an object)"]
        members = {m.serialization.get("name", n): m for n, m in shape.members.items()}
        found: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            found += unknown_settings(item, members[key], where) if key in members else [where]
        return found
    if kind == "list":
        if not isinstance(value, list):
            return [f"{path} (not a list)"]
        return sorted({p for item in value for p in unknown_settings(item, shape.member, path)})
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{path} (not an object)"]
        return sorted(
            {p for k, item in value.items() for p in unknown_settings(item, shape.value, path)}
        )
    expected = _TYPES.get(kind)
    if value is None or expected is None:
        return []
    if not isinstance(value, expected) or (bool not in expected and isinstance(value, bool)):
        return [f"{path} (not a {kind})"]
    return []


def describe(cognito: Any, pool_id: str) -> PoolSettings:
    """The pool's settings, and those in its raw answer that the model does not know."""
    try:
        answer, raw = _read_raw(
            cognito,
            "DescribeUserPool",
            pool_id,
            lambda: cognito.describe_user_pool(UserPoolId=pool_id),
        )
    except cognito.exceptions.ResourceNotFoundException:
        raise PoolNotFound(pool_id, cognito.meta.region_name) from None
    raw_pool = raw.get("UserPool")
    if not isinstance(raw_pool, dict):
        raise UnreadablePoolAnswer(pool_id, "DescribeUserPool", "it has no UserPool object")
    shape = cognito.meta.service_model.operation_model("DescribeUserPool").output_shape
    unknown = unknown_settings(raw_pool, shape.members["UserPool"])
    # A key the model does not know inside a field that never goes back cannot be reset.
    unknown = [p for p in unknown if p.split(".", 1)[0].split(" ", 1)[0] not in READ_ONLY]
    return PoolSettings(pool=answer["UserPool"], unknown=unknown)


def writable_fields(cognito: Any) -> frozenset[str]:
    """What UpdateUserPool takes, from the service model (not a hand-kept list)."""
    shape = cognito.meta.service_model.operation_model("UpdateUserPool").input_shape
    return frozenset(shape.members) - {"UserPoolId", "PoolName"}


def update_request(
    cognito: Any, settings: PoolSettings, lambda_config: Mapping[str, Any]
) -> dict[str, Any]:
    """The UpdateUserPool request that keeps every setting and sets `lambda_config`.

    Raises UnsupportedPoolSetting when the pool has a setting the request cannot carry.
    """
    pool_id = str(settings.pool.get("Id"))
    writable = writable_fields(cognito)
    lost = [f for f in settings.pool if f not in writable and f not in READ_ONLY]
    if lost or settings.unknown:
        raise UnsupportedPoolSetting(pool_id, [*lost, *settings.unknown])
    request: dict[str, Any] = {
        k: copy.deepcopy(v)
        for k, v in settings.pool.items()
        if k in writable and k not in KEPT_WHEN_OMITTED
    }
    request["UserPoolId"] = settings.pool["Id"]
    if settings.pool.get("Name"):
        request["PoolName"] = settings.pool["Name"]
    # Deprecated, carried by TemporaryPasswordValidityDays; AWS rejects a request with both.
    admin = request.get("AdminCreateUserConfig")
    if isinstance(admin, dict):
        admin.pop("UnusedAccountValidityDays", None)
    if request.get("UserPoolTier") not in TIERS_WITH_ACR:
        request.pop("AcrConfiguration", None)
    if "SmsConfiguration" in request:
        request["SmsConfiguration"] = _one_sms_form(request["SmsConfiguration"])
    request["LambdaConfig"] = dict(lambda_config)
    # Whatever goes back must fit UpdateUserPool's own shapes, at every depth.
    shape = cognito.meta.service_model.operation_model("UpdateUserPool").input_shape
    refused = unknown_settings(request, shape)
    if refused:
        raise UnsupportedPoolSetting(pool_id, refused)
    return request


def _one_sms_form(sms: Any) -> Any:
    """The Amazon SNS form or `EumsSms`, never both (UpdateUserPool and SetUserPoolMfaConfig
    refuse both); `EumsSms` when the answer had both."""
    if isinstance(sms, dict) and sms.get("EumsSms"):
        return {"EumsSms": sms["EumsSms"]}
    return sms


# --- the MFA settings, which live outside DescribeUserPool ----------------------------------


@dataclass
class MfaSettings:
    parsed: dict[str, Any]
    raw: dict[str, Any]


def read_mfa(cognito: Any, pool_id: str) -> MfaSettings:
    """GetUserPoolMfaConfig, parsed and raw; an unknown key in it stops a write."""
    answer, raw = _read_raw(
        cognito,
        "GetUserPoolMfaConfig",
        pool_id,
        lambda: cognito.get_user_pool_mfa_config(UserPoolId=pool_id),
    )
    shape = cognito.meta.service_model.operation_model("GetUserPoolMfaConfig").output_shape
    unknown = unknown_settings(raw, shape)
    if unknown:
        raise UnsupportedPoolSetting(pool_id, [f"{MFA_PREFIX}.{p}" for p in unknown])
    answer.pop("ResponseMetadata", None)
    return MfaSettings(parsed=answer, raw=raw)


def _mfa_request(settings: Mapping[str, Any]) -> dict[str, Any]:
    """GetUserPoolMfaConfig's answer in the form SetUserPoolMfaConfig takes."""
    request = copy.deepcopy(dict(settings))
    sms_mfa = request.get("SmsMfaConfiguration")
    if isinstance(sms_mfa, dict) and "SmsConfiguration" in sms_mfa:
        sms_mfa["SmsConfiguration"] = _one_sms_form(sms_mfa["SmsConfiguration"])
    return request


def _differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in {*before, *after} if before.get(k) != after.get(k))


def update_keeping_mfa(cognito: Any, request: Mapping[str, Any]) -> list[str]:
    """UpdateUserPool, then the MFA settings as they were; the MFA settings it had changed
    (and that were put back)."""
    pool_id = str(request["UserPoolId"])
    before = read_mfa(cognito, pool_id)
    cognito.update_user_pool(**request)
    after = read_mfa(cognito, pool_id)
    changed = _differences(before.raw, after.raw)
    if not changed:
        return []
    try:
        cognito.set_user_pool_mfa_config(UserPoolId=pool_id, **_mfa_request(before.parsed))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "an error")
        raise MfaSettingsChanged(pool_id, changed, f"putting them back failed ({code})") from exc
    still = _differences(before.raw, read_mfa(cognito, pool_id).raw)
    if still:
        raise MfaSettingsChanged(pool_id, still, "putting them back did not restore them")
    return changed


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
        update_keeping_mfa(cognito, update_request(cognito, settings, config))
    return changed


def detach(cognito: Any, pool_id: str, function_arn: str, slots: tuple[str, ...]) -> list[str]:
    """Empty the slots that hold our function; every other setting and trigger stays."""
    settings = describe(cognito, pool_id)
    config = settings.lambda_config
    ours = [s for s in slots if is_ours(config.get(s), function_arn)]
    if ours:
        for slot in ours:
            config.pop(slot)
        update_keeping_mfa(cognito, update_request(cognito, settings, config))
    return ours
