"""The demo: users sign up through the real Cognito API and become rows, on the local stack.

Each step goes through cognito-local exactly as an app would (SignUp, ConfirmSignUp with the
code, InitiateAuth); cognito-local fires our trigger through the local Lambda endpoint, and
the rows are then read back from DynamoDB Local.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from livekart_users import aws
from livekart_users.exceptions import LocalStackError
from livekart_users.local.stack import CONFIRMATION_CODE, LocalStack
from livekart_users.table import UsersTable

DEMO_PASSWORD = "LiveKart-demo-1"  # a throwaway password for local, emulated users only


@dataclass(frozen=True)
class DemoUser:
    email: str
    role: str
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    phone_number: str | None = None

    def attributes(self) -> list[dict[str, str]]:
        values = {
            "email": self.email,
            "custom:role": self.role,
            "name": self.name,
            "given_name": self.given_name,
            "family_name": self.family_name,
            "phone_number": self.phone_number,
        }
        return [{"Name": k, "Value": v} for k, v in values.items() if v]


DEMO_USERS = (
    DemoUser("testuser@example.com", "customer", name="Test User"),
    DemoUser(
        "asha@spices.example",
        "vendor",
        given_name="Asha",
        family_name="Mehta",
        phone_number="+919876543210",
    ),
    DemoUser("mallory@example.com", "admin", name="Mallory"),
)


@dataclass
class DemoResult:
    steps: list[str]
    records: list[dict[str, Any]]
    found_by_email: list[dict[str, Any]]
    lookup_email: str


def sign_up(cognito: Any, client_id: str, user: DemoUser, password: str = DEMO_PASSWORD) -> bool:
    """SignUp then ConfirmSignUp with the code; False when the user had signed up before."""
    try:
        cognito.sign_up(
            ClientId=client_id,
            Username=user.email,
            Password=password,
            UserAttributes=user.attributes(),
        )
    except ClientError as exc:
        if aws.error_code(exc) == "UsernameExistsException":
            return False
        raise
    cognito.confirm_sign_up(
        ClientId=client_id, Username=user.email, ConfirmationCode=CONFIRMATION_CODE
    )
    return True


def sign_in(cognito: Any, client_id: str, email: str, password: str = DEMO_PASSWORD) -> None:
    cognito.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": email, "PASSWORD": password},
    )


def run(stack: LocalStack, say: Callable[[str], None] = lambda _: None) -> DemoResult:
    """Sign up, confirm and sign in the demo users; read their rows back."""
    status = stack.status()
    if not status.all_running or not status.client_id:
        raise LocalStackError(
            "the local stack is not running: start it with `livekart-users local up`"
        )
    stack.use()
    cognito = aws.client("cognito-idp")
    steps: list[str] = []
    subs: list[str] = []
    for user in DEMO_USERS:
        fresh = sign_up(cognito, status.client_id, user)
        step = (
            f"{user.email}: signed up asking for role {user.role!r}, confirmed with code "
            f"{CONFIRMATION_CODE}"
            if fresh
            else f"{user.email}: already signed up earlier"
        )
        steps.append(step)
        say(step)
        subs.append(_sub(cognito, status.user_pool_id, user.email))
    first = DEMO_USERS[0].email
    sign_in(cognito, status.client_id, first)
    steps.append(f"{first}: signed in (USER_PASSWORD_AUTH): lastLoginAt refreshed")
    say(steps[-1])
    table = UsersTable(aws.client("dynamodb"), stack.settings.table)
    records = [row for sub in subs if (row := table.get(sub)) is not None]
    # cognito-local sends no email_verified after ConfirmSignUp, so the demo's rows are not
    # verified: the lookup includes unverified addresses (`users find --unverified`).
    found = table.find_by_email(first.upper(), unverified=True)
    return DemoResult(steps, records, found, first.upper())


def _sub(cognito: Any, pool_id: str | None, username: str) -> str:
    user = cognito.admin_get_user(UserPoolId=pool_id, Username=username)
    attributes = {a["Name"]: a["Value"] for a in user.get("UserAttributes", [])}
    return str(attributes["sub"])


# --- the backfill: a user made by an administrator gets a row from reconcile ----------------

# AdminCreateUser never fires Post Confirmation: this user has no row until reconcile.
ADMIN_CREATED_USER = DemoUser("ops@bazaar.example", "vendor", name="Bazaar Ops")


@dataclass
class BackfillResult:
    email: str
    user_id: str
    created_now: bool
    before: dict[str, Any] | None
    report: Any  # reconcile.Report
    after: dict[str, Any] | None


def backfill(stack: LocalStack, say: Callable[[str], None] = lambda _: None) -> BackfillResult:
    """Create a user with AdminCreateUser (no trigger, no row), then reconcile --apply."""
    from livekart_users import reconcile

    status = stack.status()
    stack.use()
    cognito = aws.client("cognito-idp")
    user = ADMIN_CREATED_USER
    try:
        cognito.admin_create_user(
            UserPoolId=status.user_pool_id,
            Username=user.email,
            UserAttributes=user.attributes(),
            TemporaryPassword=DEMO_PASSWORD,
            MessageAction="SUPPRESS",
        )
        fresh = True
        say(f"{user.email}: created by an administrator (AdminCreateUser): no trigger fires")
    except ClientError as exc:
        if aws.error_code(exc) != "UsernameExistsException":
            raise
        fresh = False
        say(f"{user.email}: created by an administrator earlier")
    sub = _sub(cognito, status.user_pool_id, user.email)
    table = UsersTable(aws.client("dynamodb"), stack.settings.table)
    before = table.get(sub)
    say(f"{user.email}: row before reconcile: {'present' if before else 'none'}")
    say(f"livekart-users reconcile --user-pool-id {status.user_pool_id} --apply")
    pool_client, dynamodb = reconcile.clients(aws.region())
    report = reconcile.reconcile(
        pool_client, UsersTable(dynamodb, table.name), str(status.user_pool_id), apply=True
    )
    return BackfillResult(user.email, sub, fresh, before, report, table.get(sub))


# --- changes in the pool: an email change and a deletion reach the row, no sign-in ---------------

# The Done-when of issue 12: the row follows within 2 s on the local stack.
CHANGE_WAIT_SECONDS = 2.0


@dataclass
class ChangesResult:
    emitted: bool  # False: this stack's Cognito endpoint emits no change events
    user_id: str | None = None
    email_after: str | None = None
    email_seconds: float | None = None
    found_by_new_email: bool = False
    erased_after: dict[str, Any] | None = None
    erase_seconds: float | None = None


def stack_emits_changes() -> bool:
    """The stack's Cognito endpoint is the proxy that emits change events (change_events)."""
    import importlib.util

    return importlib.util.find_spec("livekart_users.local.cognito_proxy") is not None


def changes(stack: LocalStack, say: Callable[[str], None] = lambda _: None) -> ChangesResult:
    """An administrator changes a user's email, then deletes the user; the row follows."""
    import time
    import uuid

    if not stack_emits_changes():
        say("change events: skipped, this stack's Cognito endpoint emits none (no proxy)")
        return ChangesResult(emitted=False)
    status = stack.status()
    stack.use()
    cognito = aws.client("cognito-idp")
    table = UsersTable(aws.client("dynamodb"), stack.settings.table)
    user = DemoUser(f"leaving-{uuid.uuid4().hex[:6]}@example.com", "customer", name="Lea Ving")
    sign_up(cognito, str(status.client_id), user)
    sub = _sub(cognito, status.user_pool_id, user.email)
    say(f"{user.email}: signed up; row {sub} written by the trigger")

    def wait(check: Callable[[], bool]) -> float | None:
        started = time.monotonic()
        while time.monotonic() - started < CHANGE_WAIT_SECONDS:
            if check():
                return round(time.monotonic() - started, 2)
            time.sleep(0.05)
        return None

    new_email = user.email.replace("leaving-", "moved-")
    cognito.admin_update_user_attributes(
        UserPoolId=status.user_pool_id,
        Username=user.email,
        UserAttributes=[{"Name": "email", "Value": new_email}],
    )
    say(f"AdminUpdateUserAttributes: email → {new_email} (no sign-in follows)")
    result = ChangesResult(emitted=True, user_id=sub)
    result.email_seconds = wait(lambda: (table.get(sub) or {}).get("email") == new_email)
    result.email_after = (table.get(sub) or {}).get("email")
    # Cognito marks a changed address unverified (until the user confirms its code).
    result.found_by_new_email = any(
        r["user_id"] == sub for r in table.find_by_email(new_email, unverified=True)
    )
    say(
        f"the row's email is {result.email_after}"
        + (f", {result.email_seconds} s after the call" if result.email_seconds is not None else "")
    )
    cognito.admin_delete_user(UserPoolId=status.user_pool_id, Username=new_email)
    say("AdminDeleteUser: the user is gone from Cognito")
    result.erase_seconds = wait(lambda: "email" not in (table.get(sub) or {"email": 1}))
    result.erased_after = table.get(sub)
    if result.erase_seconds is not None:
        say(f"the row was erased {result.erase_seconds} s after the call (policy anonymize)")
    return result
