"""CloudTrail for the local stack: the change events AWS would send, from calls that succeeded.

cognito-local has no CloudTrail and no EventBridge. The stack's Cognito endpoint is a
loopback proxy in front of it (`cognito_proxy`); `ChangeEmitter` is one of its "after a
successful request" hooks. For each call the change handler cares about (`changes.HANDLED`)
it builds the event EventBridge would deliver — "AWS API Call via CloudTrail" from
`aws.cognito-idp`, the user named only by `additionalEventData.sub`, sensitive parameters
hidden, `userPoolId` only on admin calls (the documented shape; see tests/events/README.md)
— and invokes the change function through the local Lambda Invoke endpoint, on a thread of
its own, so the Cognito caller gets its answer at once and the row follows within a second.

Where the sub comes from, as CloudTrail has it:
- calls made with an access token (`DeleteUser`, `UpdateUserAttributes`, …): the token's
  `sub` claim. cognito-local does NOT verify the token (it only decodes it:
  `jsonwebtoken.decode`, no signature, no expiry), then acts on the user that claim names;
  so the claim names the user it changed, but anyone on this machine can forge a token
  (AWS would refuse such a call: the local stack is not a security boundary);
- admin calls: `AdminGetUser` on cognito-local itself (a read the proxy need not see).
  The hook runs after the call (and maybe after later writes: the proxy's hooks run on a
  thread of their own, in order), so a deleted user is gone and an email used as the user
  name may just have changed: then the users table, the only
  other place that knows the user, names the sub (`user_id`, found by user name, email or
  sub, whichever the caller passed). With no row there is nothing an event could change,
  so none is sent.

Delivery is best effort, as on AWS: a failure is logged and dropped; reconcile is the
backstop in both places.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from livekart_users import changes, schema
from livekart_users.table import UsersTable, from_dynamo, to_dynamo

log = logging.getLogger(__name__)

HIDDEN = "HIDDEN_DUE_TO_SECURITY_REASONS"
LOCAL_ACCOUNT = "000000000000"
# Calls made with the user's own access token: no pool id, an anonymous caller.
TOKEN_CALLS = frozenset(
    {"DeleteUser", "UpdateUserAttributes", "VerifyUserAttribute", "DeleteUserAttributes"}
)
# Request parameters CloudTrail keeps in clear, per call; everything else is hidden.
CLEAR_PARAMETERS = {"userPoolId", "attributeName", "userAttributeNames"}


class Exchange(Protocol):
    """What a hook reads of one request through the proxy (see `cognito_proxy.Exchange`)."""

    @property
    def operation(self) -> str | None: ...
    @property
    def request_body(self) -> bytes: ...
    @property
    def succeeded(self) -> bool: ...


def cloudtrail_event(
    name: str,
    sub: str,
    request: Mapping[str, Any],
    *,
    region: str,
    account: str = LOCAL_ACCOUNT,
    when: datetime | None = None,
) -> dict[str, Any]:
    """The EventBridge event of one successful Cognito user pool call, as AWS shapes it."""
    when = when or datetime.now(UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    parameters = {
        key[0].lower() + key[1:]: (
            value if key[0].lower() + key[1:] in CLEAR_PARAMETERS else HIDDEN
        )
        for key, value in request.items()
    }
    identity: dict[str, Any] = (
        {"type": "Unknown", "principalId": "Anonymous"}
        if name in TOKEN_CALLS
        else {"type": "IAMUser", "principalId": "LOCAL", "accountId": account, "userName": "local"}
    )
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": changes.DETAIL_TYPE,
        "source": changes.SOURCE,
        "account": account,
        "time": stamp,
        "region": region,
        "resources": [],
        "detail": {
            "eventVersion": "1.08",
            "userIdentity": identity,
            "eventTime": stamp,
            "eventSource": changes.EVENT_SOURCE,
            "eventName": name,
            "awsRegion": region,
            "sourceIPAddress": "127.0.0.1",
            "userAgent": "livekart-users local stack",
            "requestParameters": parameters,
            "responseElements": None,
            "additionalEventData": {"sub": sub},
            "requestID": str(uuid.uuid4()),
            "eventID": str(uuid.uuid4()),
            "readOnly": False,
            "eventType": "AwsApiCall",
            "managementEvent": True,
            "recipientAccountId": account,
            "eventCategory": "Management",
        },
    }


def token_sub(token: Any) -> str | None:
    """The `sub` claim of a JWT, unverified, as cognito-local reads it (it verifies nothing)."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None


class ChangeEmitter:
    """An after-request hook of the Cognito proxy that emits change events (see module doc)."""

    def __init__(
        self,
        *,
        cognito: Any,
        table: UsersTable,
        invoke_url: str,
        region: str,
        send: Callable[[str, bytes], None] | None = None,
    ) -> None:
        """`cognito` reaches cognito-local directly; `invoke_url` is the change function's
        Invoke URL on the local Lambda endpoint; `send` (url, body) replaces the HTTP POST in
        tests."""
        self.cognito = cognito
        self.table = table
        self.invoke_url = invoke_url
        self.region = region
        self._send = send or _post

    def __call__(self, exchange: Exchange) -> None:
        name = exchange.operation
        if not exchange.succeeded or name not in changes.HANDLED:
            return
        try:
            request = json.loads(exchange.request_body or b"{}")
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        sub = self._sub(name, request)
        if sub is None:
            return
        event = cloudtrail_event(name, sub, request, region=self.region)
        threading.Thread(
            target=self._deliver, args=(event,), name="livekart-change-event", daemon=True
        ).start()

    def _sub(self, name: str, request: Mapping[str, Any]) -> str | None:
        if name in TOKEN_CALLS:
            return token_sub(request.get("AccessToken"))
        pool, username = request.get("UserPoolId"), request.get("Username")
        if not isinstance(pool, str) or not isinstance(username, str):
            return None
        if name not in changes.DELETIONS:
            try:
                user = self.cognito.admin_get_user(UserPoolId=pool, Username=username)
            except Exception:  # the name was an email the call just changed, say
                user = {}
            for attribute in user.get("UserAttributes", []):
                if attribute["Name"] == "sub":
                    return str(attribute["Value"])
        return self._sub_from_table(username)

    def _sub_from_table(self, username: str) -> str | None:
        """The sub of the row named by `username` (a user name, an email or the sub itself)."""
        if self.table.get(username) is not None:
            return username
        kwargs: dict[str, Any] = {
            "TableName": self.table.name,
            "FilterExpression": "#u = :u OR #e = :e",
            "ExpressionAttributeNames": {"#u": "username", "#e": "email", "#id": "user_id"},
            "ExpressionAttributeValues": to_dynamo(
                {":u": username, ":e": schema.fold_email(username)}
            ),
            "ProjectionExpression": "#id",
        }
        found: list[str] = []
        while True:  # a local table: small, but a filtered page may be empty while more remain
            answer = self.table.client.scan(**kwargs)
            found.extend(str(from_dynamo(i)["user_id"]) for i in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                break
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return found[0] if len(found) == 1 else None

    def _deliver(self, event: dict[str, Any]) -> None:
        try:
            self._send(self.invoke_url, json.dumps(event).encode())
        except Exception as exc:  # best effort, as EventBridge: reconcile is the backstop
            log.warning("change event not delivered: %s", type(exc).__name__)


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


# --- wiring into the Cognito proxy's process -----------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The proxy's command-line options for this hook (absent: no change events)."""
    parser.add_argument("--changes-invoke-url", default=None)
    parser.add_argument("--changes-table", default=None)
    parser.add_argument("--changes-region", default="us-east-1")


def hooks(args: argparse.Namespace, upstream_port: int) -> list[Callable[[Any], None]]:
    """The after-request hooks `--changes-*` ask for: `CognitoProxy(..., after=hooks(...))`.

    The emitter reads cognito-local directly (`upstream_port`), not through the proxy it
    serves. DynamoDB is reached through AWS_ENDPOINT_URL_DYNAMODB, as everywhere.
    """
    if not args.changes_invoke_url or not args.changes_table:
        return []
    from livekart_users import aws

    cognito = aws.client(
        "cognito-idp",
        region_name=args.changes_region,
        endpoint_url=f"http://127.0.0.1:{upstream_port}",
    )
    return [
        ChangeEmitter(
            cognito=cognito,
            table=UsersTable(aws.client("dynamodb"), args.changes_table),
            invoke_url=args.changes_invoke_url,
            region=args.changes_region,
        )
    ]
