"""The user record: built from Cognito user attributes, and what a valid row is.

Pure functions, no I/O. Cognito owns identity (sub, username, email, name, phone, email
verified); the app owns everything else. `new_record` is the only place that decides role,
status, vendor fields and app defaults; `identity` is what a sign-in may refresh.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from livekart_users.exceptions import InvalidExtraFields, InvalidRecord

CUSTOMER, VENDOR, ADMIN = "customer", "vendor", "admin"
ROLES = frozenset({CUSTOMER, VENDOR, ADMIN})
# Self-service sign-up may only pick these; `admin` is granted by an administrator.
SELF_SERVICE_ROLES = frozenset({CUSTOMER, VENDOR})
STATUSES = frozenset({"active", "suspended"})

IDENTITY_FIELDS = ("username", "email", "name", "phoneNumber", "emailVerified")
# Written once, at creation, and after that only by the app (or an administrator).
APP_DEFAULTS: Mapping[str, Any] = {
    "address": None,
    "profileImage": None,
    "wishlist": [],
    "cart": [],
    "totalOrders": Decimal(0),
    "totalSpent": Decimal(0),
}
VENDOR_DEFAULTS: Mapping[str, Any] = {
    "storeName": None,
    "storeDescription": None,
    "totalProducts": Decimal(0),
    "totalRevenue": Decimal(0),
    "rating": Decimal(0),
    "totalReviews": Decimal(0),
}
# Written by the change handler (livekart_users.changes), `users delete` and reconcile only.
DELETED_AT = "deletedAt"  # when the Cognito user was deleted; the row keeps only app data
COGNITO_ENABLED = "cognitoEnabled"  # Cognito's own enabled flag; absent: not seen yet
# The pool the row's user belongs to. Several pools may share one table: every write that
# refreshes or erases a row is conditioned on it, so one pool never changes another's rows.
# Absent on rows written before it existed ("legacy" rows): a write from the user's own pool
# adopts them; nothing erases them on a guess.
USER_POOL_ID = "userPoolId"
# What erasure removes: everything that names or reaches the person, the user name included
# whatever its form (a federated `Google_1234…` is the person's id at the provider; a chosen
# name identifies them as well as an email does).
PERSONAL_FIELDS = ("email", "name", "phoneNumber", "address", "profileImage", "username")
RECORD_FIELDS = frozenset(
    {"user_id", "role", "status", "createdAt", "updatedAt", "lastLoginAt"}
    | {DELETED_AT, COGNITO_ENABLED, USER_POOL_ID}
    | set(IDENTITY_FIELDS)
    | set(APP_DEFAULTS)
    | set(VENDOR_DEFAULTS)
)

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit
MAX_KEY_BYTES = 2048  # DynamoDB's partition key limit
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def now() -> str:
    """The current time as ISO-8601 UTC with milliseconds and `Z`."""
    return format_timestamp(datetime.now(UTC))


def format_timestamp(moment: datetime) -> str:
    """`moment` as ISO-8601 UTC with milliseconds and `Z`."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _text(value: Any) -> str | None:
    """A trimmed non-empty string, or None: Cognito sends strings, emulators sometimes not."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


# Characters that would drive a terminal or reorder text where the name is shown: C0 and C1
# controls (ESC, newline, ...), DEL, the line and paragraph separators, and the bidirectional
# embeddings, overrides and isolates (U+202A-202E, U+2066-2069). See docs/record.md.
_LINE_BREAKS = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029]+")  # each run: one space
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # removed


def clean_name(value: Any) -> str | None:
    """A name as the row keeps it: line breaks and tabs a space, other controls and the
    bidirectional controls removed, trimmed; None when nothing is left. The user writes their
    own name: a sign-up is never refused for it, but it cannot steer an operator's terminal."""
    if not isinstance(value, str):
        return None
    return _text(_CONTROLS.sub("", _LINE_BREAKS.sub(" ", value)))


# A-Z only. str.lower() folds more than ASCII: the Kelvin sign (U+212A) becomes "k" and
# U+0130 becomes "i̇", so two different addresses would share one `email-index` key.
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_email(email: str) -> str:
    """The address as the row and the `email-index` key hold it: trimmed, A-Z lower-cased
    and every other character as given."""
    return email.strip().translate(_ASCII_LOWER)


def user_id(attributes: Mapping[str, Any]) -> str | None:
    """The stable id of the user (Cognito `sub`), or None when the event carries none."""
    return _text(attributes.get("sub"))


def is_deleted(row: Mapping[str, Any]) -> bool:
    """True when the row is marked deleted (its Cognito user is gone): an anonymized row, a
    kept one, or the tombstone the `delete` policy leaves."""
    return row.get(DELETED_AT) is not None


def pool_of(row: Mapping[str, Any]) -> str | None:
    """The pool the row records, or None for a row written before rows recorded one."""
    pool = row.get(USER_POOL_ID)
    return pool if isinstance(pool, str) and pool else None


def tombstone(user_id: str, user_pool_id: str, timestamp: str) -> dict[str, Any]:
    """What the `delete` policy leaves of a row: enough to say "erased" and block every
    conditional create (`attribute_not_exists(user_id)`) from bringing the user back."""
    return {
        "user_id": user_id,
        USER_POOL_ID: user_pool_id,
        DELETED_AT: timestamp,
        "updatedAt": timestamp,
    }


def display_name(attributes: Mapping[str, Any]) -> str | None:
    """`name`, or given + family name, or None (cleaned: see `clean_name`)."""
    name = clean_name(attributes.get("name"))
    if name:
        return name
    parts = [clean_name(attributes.get("given_name")), clean_name(attributes.get("family_name"))]
    return " ".join(p for p in parts if p) or None


def resolve_role(claimed: Any) -> str:
    """The role a self-service sign-up gets: customer or vendor; anything else is a customer."""
    role = _text(claimed)
    role = role.lower() if role else None
    return role if role in SELF_SERVICE_ROLES else CUSTOMER


def role_was_downgraded(claimed: Any) -> bool:
    """True when the sign-up asked for a role it cannot have by itself (e.g. `admin`)."""
    role = _text(claimed)
    return role is not None and role.lower() != resolve_role(role)


def identity(attributes: Mapping[str, Any], username: str) -> dict[str, Any]:
    """The identity attributes Cognito owns, as they appear in the row.

    `email` is folded (`fold_email`) and absent (not empty, not null) when the user has none:
    it is the key of the `email-index` GSI, and DynamoDB rejects an empty index key.
    """
    fields: dict[str, Any] = {
        "username": username,
        "name": display_name(attributes),
        "phoneNumber": _text(attributes.get("phone_number")),
        "emailVerified": _text(attributes.get("email_verified")) == "true",
    }
    email = _text(attributes.get("email"))
    if email:
        fields["email"] = fold_email(email)
    return fields


def new_record(
    attributes: Mapping[str, Any],
    username: str,
    *,
    timestamp: str,
    signed_in: bool = False,
    extra_fields: Mapping[str, Any] | None = None,
    user_pool_id: str | None = None,
) -> dict[str, Any]:
    """The complete row for a user seen for the first time, in `user_pool_id` (recorded in
    the row; None only where no pool is known, as in a unit test).

    Raises InvalidRecord when the attributes cannot make a valid row (no `sub`, say).
    """
    uid = user_id(attributes)
    role = resolve_role(attributes.get("custom:role"))
    item: dict[str, Any] = {
        **{k: _fresh(v) for k, v in (extra_fields or {}).items()},
        "user_id": uid,
        **identity(attributes, username),
        "role": role,
        "status": "active",
        "createdAt": timestamp,
        "updatedAt": timestamp,
        "lastLoginAt": timestamp if signed_in else None,
        **{k: _fresh(v) for k, v in APP_DEFAULTS.items()},
    }
    if role == VENDOR:
        item.update(VENDOR_DEFAULTS)
    if user_pool_id is not None:
        item[USER_POOL_ID] = user_pool_id
    validate(item)
    return item


def _fresh(value: Any) -> Any:
    """A copy of a default, so no two rows share one mutable list or map."""
    return copy.deepcopy(value) if isinstance(value, list | dict) else value


# --- validation --------------------------------------------------------------------------


def problems(item: Mapping[str, Any]) -> list[str]:
    """Everything that makes `item` an invalid row (empty when it is valid)."""
    found: list[str] = []
    vendor = item.get("role") == VENDOR
    # An erased row has lost its personal fields on purpose; the `delete` policy's tombstone
    # keeps nothing but its key, pool and timestamps.
    erased = DELETED_AT in item
    gone = _ERASABLE | (set(_RULES) if erased and set(item) <= _TOMBSTONE_FIELDS else set())
    for field, (check, what) in _RULES.items():
        if field not in item:
            required = (field in _REQUIRED and not (erased and field in gone)) or (
                vendor and field in VENDOR_DEFAULTS
            )
            if required:
                found.append(
                    f"{field}: is missing"
                    + (" (required on a vendor row)" if field in VENDOR_DEFAULTS else "")
                )
        elif not check(item[field]):
            found.append(f"{field}: {what}")
    stored = _stored_problem(item)
    if stored:
        found.append(stored)
    return found


def validate(item: Mapping[str, Any]) -> None:
    """Raise InvalidRecord naming every problem when `item` is not a valid row."""
    found = problems(item)
    if found:
        raise InvalidRecord(found)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_number(value: Any) -> bool:
    return isinstance(value, Decimal) and value.is_finite()


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str) or not _TIMESTAMP.match(value):
        return False
    try:
        # The pattern fixed the shape; this checks the calendar (fromisoformat is C, strptime
        # is not, and validation runs on the trigger's hot path).
        datetime.fromisoformat(value[:-1])
    except ValueError:
        return False
    return True


def _stored_problem(item: Mapping[str, Any]) -> str | None:
    """Why DynamoDB would refuse to store `item` (a float, an empty set, bad text, size)."""
    size = 0
    stack: list[Any] = [item]
    while stack:
        value = stack.pop()
        if isinstance(value, bool) or value is None:
            size += 1
        elif isinstance(value, str):
            try:
                size += len(value.encode("utf-8"))
            except UnicodeEncodeError:
                return "text: contains characters that are not valid UTF-8"
        elif isinstance(value, Decimal):
            if not value.is_finite():
                return "numbers: must be finite"
            size += 21
        elif isinstance(value, int):
            size += 21
        elif isinstance(value, float):
            return "numbers: floats are not allowed, use Decimal"
        elif isinstance(value, bytes | bytearray):
            size += len(value)
        elif isinstance(value, dict):
            for key, inner in value.items():
                if not isinstance(key, str):
                    return "maps: keys must be strings"
                stack.append(key)
                stack.append(inner)
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, set | frozenset):
            if not value:
                return "sets: must not be empty"
            stack.extend(value)
        else:
            return f"values: {type(value).__name__} cannot be stored"
    if size > MAX_ITEM_BYTES:
        return "item: larger than DynamoDB's 400 KB limit"
    return None


def _is_key(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value.encode("utf-8", "replace")) <= MAX_KEY_BYTES


def _is_email(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and value == fold_email(value)


_STRING_OR_NULL = (_is_optional_str, "must be a string or null")
_NUMBER = (_is_number, "must be a number (Decimal)")
_TIMESTAMP_RULE = (_is_timestamp, "must be an ISO-8601 UTC timestamp like 2026-01-31T12:00:00.000Z")
# What each field of the record may hold. Fields not named here belong to the app (or to the
# extra-fields configuration) and only have to be storable.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "user_id": (_is_key, "must be a non-empty string of at most 2048 bytes"),
    "username": (lambda v: isinstance(v, str) and bool(v), "must be a non-empty string"),
    "email": (_is_email, "must be a non-empty lower-case string, or absent"),
    "name": _STRING_OR_NULL,
    "phoneNumber": _STRING_OR_NULL,
    "emailVerified": (lambda v: isinstance(v, bool), "must be true or false"),
    "role": (lambda v: v in ROLES, f"must be one of {', '.join(sorted(ROLES))}"),
    "status": (lambda v: v in STATUSES, f"must be one of {', '.join(sorted(STATUSES))}"),
    "createdAt": _TIMESTAMP_RULE,
    "updatedAt": _TIMESTAMP_RULE,
    "lastLoginAt": (lambda v: v is None or _is_timestamp(v), "must be a timestamp or null"),
    "address": (
        lambda v: v is None or isinstance(v, dict | str),
        "must be a map, a string or null",
    ),
    "profileImage": _STRING_OR_NULL,
    "wishlist": (lambda v: isinstance(v, list), "must be a list"),
    "cart": (lambda v: isinstance(v, list), "must be a list"),
    "totalOrders": _NUMBER,
    "totalSpent": _NUMBER,
    "storeName": _STRING_OR_NULL,
    "storeDescription": _STRING_OR_NULL,
    "totalProducts": _NUMBER,
    "totalRevenue": _NUMBER,
    "rating": _NUMBER,
    "totalReviews": _NUMBER,
    DELETED_AT: _TIMESTAMP_RULE,
    USER_POOL_ID: (lambda v: isinstance(v, str) and bool(v), "must be a non-empty string"),
    COGNITO_ENABLED: (lambda v: isinstance(v, bool), "must be true or false"),
}
# Every row has these; vendor rows also have the vendor fields; `email` is absent without one.
_REQUIRED = (
    frozenset(_RULES) - {"email", DELETED_AT, COGNITO_ENABLED, USER_POOL_ID} - set(VENDOR_DEFAULTS)
)
_ERASABLE = frozenset(PERSONAL_FIELDS)
_TOMBSTONE_FIELDS = frozenset({"user_id", USER_POOL_ID, DELETED_AT, "updatedAt"})


# --- extra fields from configuration -----------------------------------------------------


def parse_extra_fields(text: str | None) -> dict[str, Any]:
    """Extra fields with defaults, from one JSON object (the guide's "adding more user fields").

    Numbers become Decimal. Raises InvalidExtraFields saying what is wrong.
    """
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text, parse_float=Decimal, parse_int=Decimal)
    except ValueError as exc:
        raise InvalidExtraFields(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidExtraFields("must be a JSON object of field names to default values")
    for name, default in value.items():
        if name in RECORD_FIELDS:
            raise InvalidExtraFields(f"{name!r} is a field of the record itself; pick another name")
        if not _FIELD_NAME.match(name):
            raise InvalidExtraFields(
                f"{name!r} is not a usable field name (a letter, then letters, digits or _)"
            )
        problem = _stored_problem({name: default})
        if problem:
            raise InvalidExtraFields(f"{name!r}: {problem}")
    return value
