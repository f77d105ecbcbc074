"""Two pools sharing one table, on cognito-local and DynamoDB Local: nothing done for pool A
changes a row of pool B, and an erased row stays erased whatever arrives late.

Pool A is the local stack's own (its change handler is configured with it); pool B is made
beside it in the same cognito-local, and its users' rows land in the same table (the trigger
records each row's pool). Calls made with an access token name no pool, so the stack's
change events of B's users reach A's change handler, as they would on AWS.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from livekart_users import aws, changes, schema, triggers
from livekart_users.cli import main
from livekart_users.local.demo import DEMO_PASSWORD, DemoUser, sign_up
from livekart_users.local.stack import LocalStack
from livekart_users.table import UsersTable, to_dynamo
from tests.conftest import load_event
from tests.test_changes import PERSONAL, change_event

pytestmark = pytest.mark.slow

WITHIN = 2.0  # A's own deletions still erase A's rows within 2 s
POLICIES = ("anonymize", "delete", "keep")
TOKEN_CALLS = ("update-user-attributes", "verify-user-attribute", "delete-user-attributes")
ADMIN_CALLS = (
    "admin-update-user-attributes",
    "admin-delete-user-attributes",
    "admin-disable-user",
    "admin-enable-user",
)
ROLE_SCHEMA = {
    "Name": "role",
    "AttributeDataType": "String",
    "Mutable": False,
    "StringAttributeConstraints": {"MinLength": "1", "MaxLength": "32"},
}


class Shared:
    """The stack's pool A and a pool B made beside it, one table, seen from one test."""

    def __init__(self, stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = stack
        self.a = str(stack.status().user_pool_id)
        self.a_client = str(stack.status().client_id)
        # Through the stack's Cognito endpoint: successful changes become change events for
        # A's change handler, whichever pool they were made in.
        self.cognito = aws.client("cognito-idp")
        # Past it, for the tests that deliver their own events.
        self.direct = aws.client("cognito-idp", endpoint_url=stack.endpoints()["cognito-local"])
        self.table = UsersTable(aws.client("dynamodb"), stack.settings.table)
        self.b = self.direct.create_user_pool(
            PoolName=f"pool-b-{uuid.uuid4().hex[:6]}",
            AutoVerifiedAttributes=["email"],
            UsernameAttributes=["email"],
            Schema=[ROLE_SCHEMA],
        )["UserPool"]["Id"]
        self.b_client = self.direct.create_user_pool_client(
            UserPoolId=self.b,
            ClientName="b",
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        )["UserPoolClient"]["ClientId"]
        monkeypatch.setenv("USER_POOL_ID", self.a)  # A's change handler, in this process
        monkeypatch.delenv("USERS_ERASURE_POLICY", raising=False)
        changes._clients.cache_clear()

    def user(self, pool: str) -> tuple[str, str, str]:
        """A user who signed up and confirmed in `pool` (the trigger wrote the row):
        (email, sub, access token)."""
        client_id = self.a_client if pool == self.a else self.b_client
        email = f"u-{uuid.uuid4().hex[:8]}@example.com"
        person = DemoUser(email, "customer", name="Asha Mehta", phone_number="+15555550123")
        assert sign_up(self.cognito, client_id, person)
        token = self.cognito.initiate_auth(
            ClientId=client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": email, "PASSWORD": DEMO_PASSWORD},
        )["AuthenticationResult"]["AccessToken"]
        sub = self.sub(pool, email)
        row = self.table.get(sub)
        assert row is not None and row["userPoolId"] == pool
        return email, sub, token

    def sub(self, pool: str, email: str) -> str:
        user = self.direct.admin_get_user(UserPoolId=pool, Username=email)
        return next(a["Value"] for a in user["UserAttributes"] if a["Name"] == "sub")

    def row(self, sub: str) -> dict[str, Any] | None:
        return self.table.get(sub)

    def forget_pool(self, sub: str) -> None:
        """Make the row look written before rows recorded their pool."""
        self.table.client.update_item(
            TableName=self.table.name,
            Key=to_dynamo({"user_id": sub}),
            UpdateExpression="REMOVE userPoolId",
        )

    def deliver(self, kind: str, sub: str, pool: str) -> str:
        """Hand A's change handler the event of `kind` for `sub` (a call made in `pool`)."""
        return str(changes.handler(change_event(kind, sub, pool), None)["outcome"])

    def trigger(self, source: str, pool: str, username: str, **attributes: str) -> Any:
        """The trigger's handler, invoked as Cognito would for a user of `pool`."""
        event = load_event(source, **attributes)
        event["userPoolId"] = pool
        event["userName"] = username
        return triggers.handler(event, None)

    def until(self, check: Callable[[], bool], what: str) -> float:
        started = time.monotonic()
        while time.monotonic() - started < WITHIN:
            if check():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {WITHIN} s")


@pytest.fixture
def shared(stack_env: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Shared:
    return Shared(stack_env, monkeypatch)


def _erased(row: dict[str, Any] | None) -> bool:
    return row is not None and "deletedAt" in row


# --- the change handler --------------------------------------------------------------------


def test_pool_b_calls_through_the_stack_change_no_row_of_b_while_a_deletions_erase_in_2_s(
    shared: Shared,
) -> None:
    # GIVEN a user of each pool, each with a row in the one table
    b_email, b_sub, b_token = shared.user(shared.b)
    a_email, a_sub, _ = shared.user(shared.a)
    before = shared.row(b_sub)
    # WHEN B's user changes themself (token calls: no pool named) and an admin changes them
    # and finally deletes them, all through the stack (whose change handler is A's)
    shared.cognito.update_user_attributes(
        AccessToken=b_token, UserAttributes=[{"Name": "name", "Value": "B Renamed"}]
    )
    shared.cognito.delete_user_attributes(AccessToken=b_token, UserAttributeNames=["name"])
    shared.cognito.admin_update_user_attributes(
        UserPoolId=shared.b, Username=b_email, UserAttributes=[{"Name": "name", "Value": "X"}]
    )
    shared.cognito.admin_disable_user(UserPoolId=shared.b, Username=b_email)
    shared.cognito.admin_enable_user(UserPoolId=shared.b, Username=b_email)
    shared.cognito.delete_user(AccessToken=b_token)
    # … and then A's own user is deleted
    shared.cognito.admin_delete_user(UserPoolId=shared.a, Username=a_email)

    # THEN A's row is erased within 2 s …
    shared.until(lambda: _erased(shared.row(a_sub)), "A's row erased")
    # … and A's handler saw B's token calls and changed nothing of B's row
    function = shared.stack.settings.changes_function

    def b_calls() -> list[dict[str, Any]]:
        return [
            i
            for i in shared.stack.invocations()
            if i["function"] == function and i["user_id"] == b_sub
        ]

    token_calls = {"UpdateUserAttributes", "DeleteUserAttributes", "DeleteUser"}
    shared.until(
        lambda: {c["trigger_source"] for c in b_calls()} >= token_calls,
        "B's token calls handled by A's handler",
    )
    for call in b_calls():
        token_call = call["trigger_source"] in token_calls
        assert call["outcome"] == ("other_pool" if token_call else "dropped"), call
    assert shared.row(b_sub) == before


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("legacy", [False, True], ids=["b-row", "no-pool-row"])
def test_every_event_of_a_b_user_delivered_to_a_changes_nothing(
    shared: Shared, monkeypatch: pytest.MonkeyPatch, policy: str, legacy: bool
) -> None:
    monkeypatch.setenv("USERS_ERASURE_POLICY", policy)
    b_email, b_sub, _ = shared.user(shared.b)
    if legacy:
        shared.forget_pool(b_sub)
    before = shared.row(b_sub)
    shared.direct.admin_update_user_attributes(
        UserPoolId=shared.b, Username=b_email, UserAttributes=[{"Name": "name", "Value": "New"}]
    )
    # Token calls name no pool: A's handler gets them. Delivered twice, in both orders.
    for kind in (*TOKEN_CALLS, *reversed(TOKEN_CALLS)):
        outcome = shared.deliver(kind, b_sub, shared.b)
        assert outcome == ("not_in_pool" if legacy else "other_pool"), kind
    # Admin calls name B: dropped before anything is read.
    for kind in (*ADMIN_CALLS, "admin-delete-user"):
        assert shared.deliver(kind, b_sub, shared.b) == "dropped", kind
    if not legacy:
        # Even a deletion event naming A (misrouted: the user is alive in B) — the row says
        # whose it is. (A row recording no pool cannot say; such an event cannot be real.)
        assert shared.deliver("admin-delete-user", b_sub, shared.a) == "other_pool"
    assert shared.row(b_sub) == before


def test_a_b_users_own_deletion_leaves_their_row_to_b(shared: Shared) -> None:
    # B's user deletes their account: every pool's handler gets the DeleteUser event.
    b_email, b_sub, _ = shared.user(shared.b)
    before = shared.row(b_sub)
    shared.direct.admin_delete_user(UserPoolId=shared.b, Username=b_email)
    for _ in range(2):  # and again: a duplicate
        assert shared.deliver("delete-user", b_sub, shared.b) == "other_pool"
    assert shared.row(b_sub) == before  # B's own handler erases it, not A's


def test_a_deletion_of_a_sub_erases_its_no_pool_row_once_cognito_confirms(
    shared: Shared,
) -> None:
    # A row written before rows recorded their pool, of a user who deleted their account: the
    # deletion of that sub succeeded (a sub is unique across pools), and A's pool confirms it
    # has no such user, so the row is erased; it records A's pool from then on.
    email, sub, _ = shared.user(shared.a)
    shared.forget_pool(sub)
    shared.direct.admin_delete_user(UserPoolId=shared.a, Username=email)
    assert shared.deliver("update-user-attributes", sub, shared.a) == "not_in_pool"
    assert "email" in (shared.row(sub) or {})  # an attribute event never erases
    assert shared.deliver("delete-user", sub, shared.a) == "anonymized"
    row = shared.row(sub)
    assert row is not None and not [f for f in PERSONAL if f in row]
    assert row["userPoolId"] == shared.a


def test_a_no_pool_row_is_adopted_by_its_own_pools_sign_in(shared: Shared) -> None:
    email, sub, _ = shared.user(shared.a)
    shared.forget_pool(sub)
    shared.trigger("post-authentication", shared.a, email, sub=sub, email=email)
    assert (shared.row(sub) or {})["userPoolId"] == shared.a


# --- reconcile and users delete ------------------------------------------------------------


def _reconcile(shared: Shared, table: str, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main,
        ["reconcile", "--user-pool-id", shared.a, "--table", table, "--json", "--yes", *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_reconcile_for_a_erases_only_a_rows_and_counts_the_rest_apart(shared: Shared) -> None:
    # GIVEN a table of its own, shared by A and B
    table = UsersTable(shared.table.client, f"shared-{uuid.uuid4().hex[:8]}")
    table.create_table()

    def put(pool: str | None, email: str, sub: str) -> dict[str, Any]:
        attributes = {"sub": sub, "email": email, "name": "Asha Mehta"}
        row = schema.new_record(
            attributes, email, timestamp="2026-11-01T10:00:00.000Z", user_pool_id=pool
        )
        assert table.create_if_absent(row)
        return row

    def someone(pool: str) -> tuple[str, str]:
        email = f"r-{uuid.uuid4().hex[:8]}@example.com"
        shared.direct.admin_create_user(
            UserPoolId=pool,
            Username=email,
            UserAttributes=[{"Name": "email", "Value": email}],
            MessageAction="SUPPRESS",
        )
        return email, shared.sub(pool, email)

    b_alive = put(shared.b, *someone(shared.b))
    b_gone_email, b_gone_sub = someone(shared.b)
    b_gone = put(shared.b, b_gone_email, b_gone_sub)
    shared.direct.admin_delete_user(UserPoolId=shared.b, Username=b_gone_email)
    b_no_pool = put(None, *someone(shared.b))  # alive in B, written before pools were recorded
    a_gone_email, a_gone_sub = someone(shared.a)
    put(shared.a, a_gone_email, a_gone_sub)
    shared.direct.admin_delete_user(UserPoolId=shared.a, Username=a_gone_email)
    # A user deleted, their deletion event lost, and the same person signed up again (not
    # confirmed yet): the old row is "moved", and still erased — its user is gone.
    moved_email, moved_sub = someone(shared.a)
    put(shared.a, moved_email, moved_sub)
    shared.direct.admin_delete_user(UserPoolId=shared.a, Username=moved_email)
    shared.cognito.sign_up(
        ClientId=shared.a_client,
        Username=moved_email,
        Password=DEMO_PASSWORD,
        UserAttributes=[{"Name": "email", "Value": moved_email}],
    )
    b_rows = {r["user_id"]: r for r in (b_alive, b_gone, b_no_pool)}

    # WHEN reconcile runs for A with --apply --erase-orphans
    report = _reconcile(shared, table.name, "--apply", "--erase-orphans")

    # THEN A's orphan and moved rows are erased; B's rows are counted apart, unchanged
    assert (report["other_pool_rows"], report["no_pool_orphans"]) == (2, 1)
    assert (report["orphans"], report["moved"], report["orphans_erased"]) == (1, 1, 2)
    for sub in (a_gone_sub, moved_sub):
        row = table.get(sub)
        assert row is not None and not [f for f in PERSONAL if f in row], sub
    for sub, row in b_rows.items():
        assert table.get(sub) == row, sub

    # Rows recording no pool go only when named, and a run without them changes nothing more.
    again = _reconcile(shared, table.name, "--apply", "--erase-orphans")
    assert again["orphans_erased"] == 0
    assert table.get(b_no_pool["user_id"]) == b_no_pool


def test_users_delete_of_a_b_user_with_a_pool_id_is_refused_and_changes_nothing(
    shared: Shared,
) -> None:
    b_email, b_sub, _ = shared.user(shared.b)
    legacy_email, legacy_sub, _ = shared.user(shared.b)
    shared.forget_pool(legacy_sub)
    table = shared.table.name
    for sub in (b_sub, legacy_sub):
        before = shared.row(sub)
        result = CliRunner().invoke(
            main,
            ["users", "delete", sub, "--yes", "--user-pool-id", shared.a, "--table", table],
        )
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert "not in pool" in result.output and "nothing changed" in result.output
        assert shared.row(sub) == before
    for email in (b_email, legacy_email):
        shared.direct.admin_get_user(UserPoolId=shared.b, Username=email)  # still there


# --- an erased row stays erased --------------------------------------------------------------


def _erase(shared: Shared, monkeypatch: pytest.MonkeyPatch, policy: str) -> tuple[str, str]:
    monkeypatch.setenv("USERS_ERASURE_POLICY", policy)
    email, sub, _ = shared.user(shared.a)
    shared.direct.admin_delete_user(UserPoolId=shared.a, Username=email)
    expected = {"anonymize": "anonymized", "delete": "deleted", "keep": "marked_deleted"}
    assert shared.deliver("admin-delete-user", sub, shared.a) == expected[policy]
    return email, sub


@pytest.mark.parametrize("policy", POLICIES)
def test_late_sign_in_replayed_sign_up_and_late_attribute_event_bring_nothing_back(
    shared: Shared, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    email, sub = _erase(shared, monkeypatch, policy)
    erased = shared.row(sub)
    assert erased is not None
    late = {"sub": sub, "email": email, "name": "Late Name", "phone_number": "+15555550199"}
    # A sign-in in flight when the user was deleted (or Cognito's retry of one) …
    shared.trigger("post-authentication", shared.a, email, **late)
    # … a replayed Post Confirmation …
    shared.trigger("post-confirmation-signup-customer", shared.a, email, **late)
    # … and late attribute events, of both kinds
    for kind in ("update-user-attributes", "admin-update-user-attributes"):
        assert shared.deliver(kind, sub, shared.a) == "already_erased"
    row = shared.row(sub)
    assert row == erased
    if policy != "keep":  # keep: the app's own erasure job takes it from here
        assert not [f for f in PERSONAL if f in row]
        left = json.dumps(row, default=str)
        assert "Late Name" not in left and email not in left
    if policy == "delete":
        assert set(row) == {"user_id", "userPoolId", "deletedAt", "updatedAt"}


def test_a_sign_up_still_in_flight_when_the_user_is_deleted_creates_no_row(
    shared: Shared, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deletion is handled before the Post Confirmation write lands (no row yet).
    monkeypatch.setenv("USERS_ERASURE_POLICY", "delete")
    email = f"f-{uuid.uuid4().hex[:8]}@example.com"
    shared.direct.admin_create_user(
        UserPoolId=shared.a,
        Username=email,
        UserAttributes=[{"Name": "email", "Value": email}],
        MessageAction="SUPPRESS",
    )
    sub = shared.sub(shared.a, email)
    shared.direct.admin_delete_user(UserPoolId=shared.a, Username=email)
    assert shared.deliver("admin-delete-user", sub, shared.a) == "no_row"
    shared.trigger("post-confirmation-signup-customer", shared.a, email, sub=sub, email=email)
    shared.trigger("post-authentication", shared.a, email, sub=sub, email=email)
    row = shared.row(sub)
    assert row is not None and set(row) == {"user_id", "userPoolId", "deletedAt", "updatedAt"}


@pytest.mark.parametrize("policy", ["anonymize", "delete"])
def test_sign_ins_racing_the_deletion_leave_the_row_erased(
    shared: Shared, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    monkeypatch.setenv("USERS_ERASURE_POLICY", policy)
    for _ in range(3):
        email, sub, _ = shared.user(shared.a)
        shared.direct.admin_delete_user(UserPoolId=shared.a, Username=email)
        late = {"sub": sub, "email": email, "name": "Racing Name"}
        start = threading.Barrier(5)
        outcomes: list[str] = []

        def sign_in(email: str, late: dict[str, str], start: threading.Barrier) -> None:
            start.wait()
            shared.trigger("post-authentication", shared.a, email, **late)

        def delete(sub: str, outcomes: list[str], start: threading.Barrier) -> None:
            start.wait()
            outcomes.append(shared.deliver("admin-delete-user", sub, shared.a))

        threads = [threading.Thread(target=sign_in, args=(email, late, start)) for _ in range(4)]
        threads.append(threading.Thread(target=delete, args=(sub, outcomes, start)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert outcomes and outcomes[0] in {"anonymized", "deleted"}
        row = shared.row(sub)
        assert row is not None and "deletedAt" in row
        assert not [f for f in PERSONAL if f in row], row
        assert "Racing Name" not in json.dumps(row, default=str)
