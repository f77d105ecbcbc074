"""The users table: the few ways the package reads and writes a user's row.

Every write is conditional, so a replayed or retried trigger changes nothing it should not:
creation is a put on `attribute_not_exists(user_id)`; a sign-in is an update on
`attribute_exists(user_id)` that refreshes identity and `lastLoginAt` only, and fills an
app-owned field only where it is missing (`if_not_exists`), never overwriting it.

Several pools may share one table, and a late write may follow an erasure, so every write
that refreshes or erases a row also requires, in the same request (never a read followed by
a write), that the row is its pool's (`userPoolId`, or none recorded yet: the write then
adopts it) and, for a refresh, that it is not erased (`deletedAt`). An erased row stays
erased: the `delete` policy leaves a tombstone rather than nothing, so no create brings it
back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from livekart_users import schema
from livekart_users.aws import Deadline, call_within, error_code
from livekart_users.exceptions import InvalidRecord, TableBusy, TableNotFound

DEFAULT_TABLE = "livekart-users"
EMAIL_INDEX = "email-index"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class Outcome(StrEnum):
    """What a trigger's write did to the row."""

    CREATED = "created"
    ALREADY_EXISTS = "already_exists"
    REFRESHED = "refreshed"
    # The row exists but is erased, or is another pool's: nothing was written.
    NOT_REFRESHED = "not_refreshed"


def to_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    """A Python item as DynamoDB attribute values."""
    return {k: _serializer.serialize(v) for k, v in item.items()}


def from_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as a Python item (numbers as Decimal)."""
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


def _condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


def update_expression(
    values: Mapping[str, Any],
    *,
    if_missing: Mapping[str, Any] | None = None,
    remove: Iterable[str] = (),
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """An UpdateExpression with its names and values: set `values`, set `if_missing` only
    where the attribute is absent (never overwriting it), and remove `remove`."""
    names: dict[str, str] = {}
    bound: dict[str, Any] = {}
    sets: list[str] = []
    for i, (field, value) in enumerate(values.items()):
        names[f"#f{i}"], bound[f":v{i}"] = field, value
        sets.append(f"#f{i} = :v{i}")
    for i, (field, value) in enumerate((if_missing or {}).items()):
        names[f"#d{i}"], bound[f":d{i}"] = field, value
        sets.append(f"#d{i} = if_not_exists(#d{i}, :d{i})")
    expression = "SET " + ", ".join(sets)
    removed = [f"#r{i}" for i, _ in enumerate(remove)]
    names.update(zip(removed, remove, strict=True))
    if removed:
        expression += " REMOVE " + ", ".join(removed)
    return expression, names, bound


def _own_pool(
    user_pool_id: str,
    names: dict[str, str],
    values: dict[str, Any],
    *,
    adopt_legacy: bool = True,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The condition "the row is `user_pool_id`'s" (or records no pool, with `adopt_legacy`).

    Part of the write's own request: a read followed by a write could race another pool's.
    """
    names = {**names, "#pool": schema.USER_POOL_ID}
    values = {**values, ":pool": user_pool_id}
    if adopt_legacy:
        return "(#pool = :pool OR attribute_not_exists(#pool))", names, values
    return "#pool = :pool", names, values


def _live_row_of_pool(
    user_pool_id: str,
    names: dict[str, str],
    values: dict[str, Any],
    *,
    adopt_legacy: bool = True,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The condition "the row exists, is not erased, and is `user_pool_id`'s" (see _own_pool):
    every write that brings identity into a row, or erases it, is conditioned on all three."""
    owned, names, values = _own_pool(user_pool_id, names, values, adopt_legacy=adopt_legacy)
    names = {**names, "#deletedAt": schema.DELETED_AT}
    return (
        f"attribute_exists(user_id) AND attribute_not_exists(#deletedAt) AND {owned}",
        names,
        values,
    )


def _unchanged_since_read(
    read_updated_at: str | None, names: dict[str, str], values: dict[str, Any]
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The condition "the row exists and nothing wrote to it since it was read"."""
    names = {**names, "#readUpdatedAt": "updatedAt"}
    if read_updated_at is None:
        return "attribute_exists(user_id) AND attribute_not_exists(#readUpdatedAt)", names, values
    values = {**values, ":readUpdatedAt": read_updated_at}
    return "attribute_exists(user_id) AND #readUpdatedAt = :readUpdatedAt", names, values


# Rows a census reads at most: enough to tell whether pools share the table.
CENSUS_ROWS = 5000


@dataclasses.dataclass
class PoolCensus:
    """Rows per recorded pool, and rows recording no pool, in the rows read."""

    pools: dict[str, int] = dataclasses.field(default_factory=dict)
    no_pool: int = 0
    rows: int = 0
    complete: bool = False  # every row was read (else: a sample of the first `rows`)

    def add(self, pool: str | None) -> None:
        self.rows += 1
        if pool is None:
            self.no_pool += 1
        else:
            self.pools[pool] = self.pools.get(pool, 0) + 1

    def others(self, user_pool_id: str) -> dict[str, int]:
        """Rows of pools other than `user_pool_id`."""
        return {p: n for p, n in self.pools.items() if p != user_pool_id}


class UsersTable:
    """One users table, reached through one DynamoDB client."""

    def __init__(self, client: Any, name: str = DEFAULT_TABLE) -> None:
        self.client = client
        self.name = name

    # --- writes the trigger makes ------------------------------------------------------

    def create_if_absent(
        self, item: Mapping[str, Any], *, deadline: Deadline | None = None
    ) -> bool:
        """Create the row unless one exists for this user; True when it was created.

        `item` comes from `schema.new_record`, which has validated it: validating again here
        would cost the trigger's hot path a second walk of the row for nothing.
        """
        try:
            self._call(
                deadline,
                self.client.put_item,
                TableName=self.name,
                Item=to_dynamo(item),
                ConditionExpression="attribute_not_exists(user_id)",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise self._translated(exc) from exc
        return True

    def record_sign_in(
        self,
        attributes: Mapping[str, Any],
        username: str,
        *,
        user_pool_id: str,
        timestamp: str,
        extra_fields: Mapping[str, Any] | None = None,
        deadline: Deadline | None = None,
    ) -> Outcome:
        """Refresh identity and `lastLoginAt` of the user's row, or create the row if missing.

        Role, status, cart, wishlist, counters and vendor fields are never changed here: a
        sign-in cannot turn a customer into a vendor, whatever the token claims. A row that
        is erased (a sign-in that was in flight while the user was deleted, or Cognito's
        retry of one) or that another pool owns is left as it is: NOT_REFRESHED.
        """
        # Built first so that attributes which cannot make a valid row are refused before
        # anything is written.
        item = schema.new_record(
            attributes,
            username,
            timestamp=timestamp,
            signed_in=True,
            extra_fields=extra_fields,
            user_pool_id=user_pool_id,
        )
        if self._try_refresh(attributes, username, user_pool_id, timestamp, deadline):
            return Outcome.REFRESHED
        # No row, or one we must not write. The trigger may not read (least privilege), so
        # the create tells them apart: it fails on any row, erased and foreign ones included.
        if self.create_if_absent(item, deadline=deadline):
            return Outcome.CREATED
        # Created by a concurrent invocation between our two calls: refresh it after all.
        if self._try_refresh(attributes, username, user_pool_id, timestamp, deadline):
            return Outcome.REFRESHED
        return Outcome.NOT_REFRESHED

    def _try_refresh(
        self,
        attributes: Mapping[str, Any],
        username: str,
        user_pool_id: str,
        timestamp: str,
        deadline: Deadline | None,
    ) -> bool:
        try:
            self._refresh(attributes, username, user_pool_id, timestamp, deadline)
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise self._translated(exc) from exc
        return True

    def _refresh(
        self,
        attributes: Mapping[str, Any],
        username: str,
        user_pool_id: str,
        timestamp: str,
        deadline: Deadline | None,
    ) -> None:
        uid = schema.user_id(attributes)
        fields = schema.identity(attributes, username)
        fields["lastLoginAt"] = timestamp
        fields["updatedAt"] = timestamp
        fields[schema.USER_POOL_ID] = user_pool_id  # adopts a row that records no pool
        # Heal a row that lost an app-owned field, without ever overwriting one that exists.
        defaults = {
            "role": schema.CUSTOMER,
            "status": "active",
            "createdAt": timestamp,
            **schema.APP_DEFAULTS,
        }
        expression, names, values = update_expression(
            fields, if_missing=defaults, remove=() if "email" in fields else ("email",)
        )
        condition, names, values = _live_row_of_pool(user_pool_id, names, values)
        self._call(
            deadline,
            self.client.update_item,
            TableName=self.name,
            Key=to_dynamo({"user_id": uid}),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    # --- reads -------------------------------------------------------------------------

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The user's row, read consistently, or None."""
        try:
            answer = self.client.get_item(
                TableName=self.name, Key=to_dynamo({"user_id": user_id}), ConsistentRead=True
            )
        except ClientError as exc:
            raise self._translated(exc) from exc
        return from_dynamo(answer["Item"]) if "Item" in answer else None

    def get_many(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The rows of these users by id (absent ids are missing from the answer).

        `BatchGetItem`, 100 keys a call, its unprocessed keys asked again; reads are
        eventually consistent (a view's read, never a write's condition).
        """
        ids = list(dict.fromkeys(user_ids))
        found: dict[str, dict[str, Any]] = {}
        try:
            for start in range(0, len(ids), 100):
                keys = [to_dynamo({"user_id": uid}) for uid in ids[start : start + 100]]
                request: dict[str, Any] = {self.name: {"Keys": keys}}
                for _ in range(10):
                    answer = self.client.batch_get_item(RequestItems=request)
                    for item in answer.get("Responses", {}).get(self.name, []):
                        row = from_dynamo(item)
                        found[str(row["user_id"])] = row
                    request = answer.get("UnprocessedKeys") or {}
                    if not request:
                        break
                else:
                    # Never a row reported missing because DynamoDB was too busy to read it.
                    raise TableBusy(self.name)
        except ClientError as exc:
            raise self._translated(exc) from exc
        return found

    def find_by_email(self, email: str, *, unverified: bool = False) -> list[dict[str, Any]]:
        """Rows whose email is `email` (any case) and verified, through the `email-index` GSI;
        with `unverified`, also rows whose address is not (yet) verified.

        Unless the pool requires verification before an update (`UserAttributeUpdateSettings`
        with `email` in `AttributesRequireVerificationBeforeUpdate`), Cognito changes `email`
        at once and sets `email_verified` to false: anyone can put any address on their own
        account, so an unverified match says nothing about who owns the address.
        GSI reads are eventually consistent: a row written a moment ago may not show yet.
        """
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "IndexName": EMAIL_INDEX,
            "KeyConditionExpression": "#e = :e",
            "ExpressionAttributeNames": {"#e": "email"},
            "ExpressionAttributeValues": {":e": {"S": schema.fold_email(email)}},
        }
        if not unverified:
            # A filter, not a key: a page may then come back short or empty while more remain.
            kwargs["FilterExpression"] = "#v = :v"
            kwargs["ExpressionAttributeNames"]["#v"] = "emailVerified"
            kwargs["ExpressionAttributeValues"][":v"] = {"BOOL": True}
        try:
            while True:
                answer = self.client.query(**kwargs)
                items.extend(from_dynamo(i) for i in answer.get("Items", []))
                if "LastEvaluatedKey" not in answer:
                    return items
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except ClientError as exc:
            raise self._translated(exc) from exc

    def pages(self, page_size: int = 500) -> Iterator[list[dict[str, Any]]]:
        """Every row, a page at a time (a page may be short or empty while more remain)."""
        kwargs: dict[str, Any] = {"TableName": self.name, "Limit": page_size}
        try:
            while True:
                answer = self.client.scan(**kwargs)
                yield [from_dynamo(i) for i in answer.get("Items", [])]
                if "LastEvaluatedKey" not in answer:
                    return
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except ClientError as exc:
            raise self._translated(exc) from exc

    def scan(self, page_size: int = 500) -> Iterator[dict[str, Any]]:
        """Every row, one at a time."""
        for page in self.pages(page_size):
            yield from page

    def scan_where(
        self, *, role: str | None = None, status: str | None = None, page_size: int = 100
    ) -> Iterator[dict[str, Any]]:
        """Every row with this role and/or status, one at a time, a page of the table at a time.

        The filter runs in DynamoDB, but a scan still reads the whole table: stop iterating as
        soon as you have enough.
        """
        tests: list[str] = []
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        for field, wanted in (("role", role), ("status", status)):
            if wanted is not None:
                names[f"#{field}"] = field
                values[f":{field}"] = wanted
                tests.append(f"#{field} = :{field}")
        kwargs: dict[str, Any] = {"TableName": self.name, "Limit": page_size}
        if tests:
            kwargs["FilterExpression"] = " AND ".join(tests)
            kwargs["ExpressionAttributeNames"] = names
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        try:
            while True:
                answer = self.client.scan(**kwargs)
                for item in answer.get("Items", []):
                    yield from_dynamo(item)
                if "LastEvaluatedKey" not in answer:
                    return
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except ClientError as exc:
            raise self._translated(exc) from exc

    def pool_census(self, limit: int = CENSUS_ROWS) -> PoolCensus:
        """Whose rows the table holds: the number of rows per recorded pool, and of rows
        recording none, from at most `limit` rows (a scan of the pool attribute only, so a
        large table costs a bounded read)."""
        census = PoolCensus()
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "ProjectionExpression": "#pool",
            "ExpressionAttributeNames": {"#pool": schema.USER_POOL_ID},
            "Limit": min(limit, 1000),
        }
        try:
            while census.rows < limit:
                answer = self.client.scan(**kwargs)
                for item in answer.get("Items", []):
                    census.add(schema.pool_of(from_dynamo(item)))
                if "LastEvaluatedKey" not in answer:
                    census.complete = True
                    return census
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        except ClientError as exc:
            raise self._translated(exc) from exc
        return census

    # --- what an administrator changes -------------------------------------------------

    def set_role(
        self, user_id: str, role: str, *, timestamp: str | None = None
    ) -> dict[str, Any] | None:
        """Give the user `role`; the row as it is now, or None when there is no row.

        Becoming a vendor adds the vendor fields with their defaults where they are absent;
        leaving keeps them (they are the app's data). Nothing else changes but `updatedAt`.
        """
        if role not in schema.ROLES:
            raise InvalidRecord([f"role: must be one of {', '.join(sorted(schema.ROLES))}"])
        defaults = schema.VENDOR_DEFAULTS if role == schema.VENDOR else {}
        return self._admin_update(user_id, {"role": role}, defaults, timestamp)

    def set_status(
        self, user_id: str, status: str, *, timestamp: str | None = None
    ) -> dict[str, Any] | None:
        """Mark the user `active` or `suspended` in the table (Cognito is not touched).

        The row as it is now, or None when there is no row.
        """
        if status not in schema.STATUSES:
            raise InvalidRecord([f"status: must be one of {', '.join(sorted(schema.STATUSES))}"])
        return self._admin_update(user_id, {"status": status}, {}, timestamp)

    def _admin_update(
        self,
        user_id: str,
        fields: Mapping[str, Any],
        defaults: Mapping[str, Any],
        timestamp: str | None,
    ) -> dict[str, Any] | None:
        expression, names, values = update_expression(
            {**fields, "updatedAt": timestamp or schema.now()}, if_missing=defaults
        )
        try:
            answer = self.client.update_item(
                TableName=self.name,
                Key=to_dynamo({"user_id": user_id}),
                UpdateExpression=expression,
                # Without it, UpdateItem would create a row holding nothing but these fields.
                ConditionExpression="attribute_exists(user_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=to_dynamo(values),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if _condition_failed(exc):
                return None
            raise self._translated(exc) from exc
        return from_dynamo(answer.get("Attributes", {}))

    # --- what reconcile changes --------------------------------------------------------

    def refresh_identity(
        self,
        user_id: str,
        identity: Mapping[str, Any],
        *,
        user_pool_id: str,
        read_updated_at: str | None,
        timestamp: str,
        enabled: bool | None = None,
    ) -> bool:
        """Write Cognito's identity attributes (`schema.identity`) and `updatedAt` into the row,
        and Cognito's enabled flag (`cognitoEnabled`) when `enabled` is given; the row records
        `user_pool_id` from then on (the caller found the user in that pool).

        Only if the row still exists, is not marked deleted, is `user_pool_id`'s or records no
        pool, and its `updatedAt` is still `read_updated_at` (None: it had none), i.e. nothing
        wrote to it since it was read; True when it was written. Never touches `lastLoginAt`
        (this is not a sign-in) or any app-owned field, `status` included.
        """
        fields: dict[str, Any] = {f: identity[f] for f in schema.IDENTITY_FIELDS if f in identity}
        if enabled is not None:
            fields[schema.COGNITO_ENABLED] = enabled
        fields[schema.USER_POOL_ID] = user_pool_id
        expression, names, values = update_expression(
            {**fields, "updatedAt": timestamp},
            remove=() if "email" in identity else ("email",),
        )
        condition, names, values = _unchanged_since_read(read_updated_at, names, values)
        owned, names, values = _own_pool(user_pool_id, names, values)
        # A late change event must never bring personal data back into an erased row.
        condition += f" AND {owned} AND attribute_not_exists(#deletedAt)"
        names = {**names, "#deletedAt": schema.DELETED_AT}
        return self._written(
            self.client.update_item,
            TableName=self.name,
            Key=to_dynamo({"user_id": user_id}),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    def delete_if_unchanged(
        self,
        user_id: str,
        *,
        user_pool_id: str,
        read_updated_at: str | None,
        adopt_legacy: bool = False,
    ) -> bool:
        """Delete the row if it is `user_pool_id`'s (or records no pool, with `adopt_legacy`)
        and its `updatedAt` is still `read_updated_at`; True when deleted."""
        condition, names, values = _unchanged_since_read(read_updated_at, {}, {})
        owned, names, values = _own_pool(user_pool_id, names, values, adopt_legacy=adopt_legacy)
        condition += f" AND {owned}"
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "Key": to_dynamo({"user_id": user_id}),
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = to_dynamo(values)
        return self._written(self.client.delete_item, **kwargs)

    # --- erasure: the Cognito user is gone --------------------------------------------

    def anonymize(
        self, user_id: str, *, user_pool_id: str, timestamp: str, adopt_legacy: bool = False
    ) -> bool:
        """Remove every personal field (`schema.PERSONAL_FIELDS`, the user name included) and
        mark the row deleted at `timestamp`; app data stays. True when this call did it, False
        when the row is missing, already marked deleted (a replay changes nothing), or not
        `user_pool_id`'s (a row recording no pool counts as its own only with `adopt_legacy`).

        With `email` gone, the `email-index` GSI no longer finds the row.
        """
        return self._mark_deleted(
            user_id, user_pool_id, timestamp, list(schema.PERSONAL_FIELDS), adopt_legacy
        )

    def mark_deleted(
        self, user_id: str, *, user_pool_id: str, timestamp: str, adopt_legacy: bool = False
    ) -> bool:
        """Mark the row deleted at `timestamp` and keep everything (the `keep` policy); the
        same conditions as `anonymize`."""
        return self._mark_deleted(user_id, user_pool_id, timestamp, [], adopt_legacy)

    def _mark_deleted(
        self,
        user_id: str,
        user_pool_id: str,
        timestamp: str,
        removed: list[str],
        adopt_legacy: bool,
    ) -> bool:
        expression, names, values = update_expression(
            {
                schema.DELETED_AT: timestamp,
                "updatedAt": timestamp,
                schema.USER_POOL_ID: user_pool_id,
            },
            remove=removed,
        )
        condition, names, values = _live_row_of_pool(
            user_pool_id, names, values, adopt_legacy=adopt_legacy
        )
        return self._written(
            self.client.update_item,
            TableName=self.name,
            Key=to_dynamo({"user_id": user_id}),
            UpdateExpression=expression,
            # Not conditioned on updatedAt: erasure must win over any concurrent write.
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    def replace_with_tombstone(
        self, user_id: str, *, user_pool_id: str, timestamp: str, adopt_legacy: bool = False
    ) -> bool:
        """The `delete` policy: replace the row with its tombstone (`schema.tombstone`), so no
        late sign-in, replayed sign-up or reconcile can create it again. The same conditions
        as `anonymize`; True when this call did it."""
        condition, names, values = _live_row_of_pool(
            user_pool_id, {}, {}, adopt_legacy=adopt_legacy
        )
        return self._written(
            self.client.put_item,
            TableName=self.name,
            Item=to_dynamo(schema.tombstone(user_id, user_pool_id, timestamp)),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(values),
        )

    def tombstone_if_absent(self, user_id: str, *, user_pool_id: str, timestamp: str) -> bool:
        """Write the tombstone of a user confirmed gone from `user_pool_id` who has no row,
        so a sign-up or sign-in still in flight cannot create one; True when written."""
        return self.create_if_absent(schema.tombstone(user_id, user_pool_id, timestamp))

    # --- the table itself --------------------------------------------------------------

    def exists(self) -> bool:
        try:
            self.client.describe_table(TableName=self.name)
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return False
            raise
        return True

    def create_table(self, *, wait: bool = True) -> bool:
        """Create the table (key `user_id`, GSI `email-index`, on-demand) unless it exists.

        True when it was created.
        """
        if self.exists():
            return False
        try:
            self.client.create_table(
                TableName=self.name,
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[
                    {"AttributeName": "user_id", "AttributeType": "S"},
                    {"AttributeName": "email", "AttributeType": "S"},
                ],
                KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": EMAIL_INDEX,
                        "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceInUseException":
                return False
            raise
        if wait:
            self.client.get_waiter("table_exists").wait(
                TableName=self.name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        return True

    # --- plumbing ----------------------------------------------------------------------

    def _written(self, operation: Any, **kwargs: Any) -> bool:
        """A conditional write: True when it was made, False when its condition failed."""
        try:
            operation(**kwargs)
        except ClientError as exc:
            if _condition_failed(exc):
                return False
            raise self._translated(exc) from exc
        return True

    @staticmethod
    def _call(deadline: Deadline | None, operation: Any, **kwargs: Any) -> Any:
        # Without a deadline (commands, reconcile) the client's own retries are enough.
        if deadline is None:
            return operation(**kwargs)
        return call_within(deadline, operation, **kwargs)

    def _translated(self, exc: Exception) -> Exception:
        if error_code(exc) == "ResourceNotFoundException":
            return TableNotFound(self.name)
        return exc
