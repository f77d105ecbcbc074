"""Real JavaScript clients against the local stack, as an app uses them; the row follows.

tests/js/ pins them in a lockfile (installed by `make bootstrap` with `npm ci`, or here on
first use): Amplify v6 and amazon-cognito-identity-js with their default sign-in
(`USER_SRP_AUTH`, answered by the stack's endpoint: `local/srp.py`, `local/sign_in.py`),
and the AWS SDK for JavaScript v3 configured only by what `local env` prints.
After each step the users table must show it within 2 s (issue 19's Done-when).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from livekart_users import aws
from livekart_users.local.stack import LocalStack
from livekart_users.table import UsersTable

pytestmark = pytest.mark.slow

JS = Path(__file__).resolve().parent / "js"
WITHIN = 2.0
PASSWORD = "LiveKart-js-1"


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    if found is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the JavaScript clients (install Node.js 20+)")
    with _install_lock():  # pytest-xdist workers may get here at once
        if not (JS / "node_modules" / ".package-lock.json").is_file():
            # What `make bootstrap` does: the lockfile's exact versions, integrity-checked.
            subprocess.run(
                ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
                cwd=JS,
                check=True,
                capture_output=True,
                timeout=600,
            )
    return found


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # Windows: make bootstrap installs them first
        yield
        return
    with open(JS / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Stack:
    def __init__(self, stack: LocalStack, node: str) -> None:
        status = stack.status()
        self.stack = stack
        self.node = node
        self.pool = str(status.user_pool_id)
        self.client = str(status.client_id)
        self.endpoint = status.endpoints["cognito-idp"]
        self.table = UsersTable(aws.client("dynamodb"), stack.settings.table)

    def run(self, *command: str, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run a client script in tests/js; its last line of output, as JSON."""
        done = subprocess.run(
            command,
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
        assert done.stdout.strip(), done.stderr
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def identity_js(self, action: str, email: str, *more: str) -> dict[str, Any]:
        return self.run(
            self.node,
            "identity_js.mjs",
            action,
            self.pool,
            self.client,
            self.endpoint,
            email,
            *more,
        )

    def sdk_v3(self, action: str, username: str, *pairs: str) -> dict[str, Any]:
        """SDK v3 in an environment made only of `local env`'s output (through a real shell)."""
        printed = subprocess.run(
            [_cli(), "local", "env", "--dir", str(self.stack.dir), "--shell", "posix"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        shell = f'{printed}\nexec "$0" "$@"'
        command = [self.node, "sdk_v3.mjs", action, self.pool, username, *pairs]
        return self.run("sh", "-c", shell, *command, env=clean)

    def row(self, sub: str) -> dict[str, Any]:
        return self.table.get(sub) or {}

    def until(self, check: Callable[[], bool], what: str) -> None:
        started = time.monotonic()
        while time.monotonic() - started < WITHIN:
            if check():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what}: not within {WITHIN} s")


def _login(row: dict[str, Any]) -> str:
    """When the row last saw a sign-in ("" for never)."""
    return str(row.get("lastLoginAt") or "")


def _cli() -> str:
    found = shutil.which("livekart-users", path=str(Path(sys.executable).parent))
    assert found, "the livekart-users command (make bootstrap installs it in .venv)"
    return found


@pytest.fixture
def js(stack_env: LocalStack, node: str) -> Iterator[Stack]:
    yield Stack(stack_env, node)


def test_amplify_v6_with_its_defaults_signs_up_in_changes_and_deletes_itself(js: Stack) -> None:
    email = f"amplify-{uuid.uuid4().hex[:8]}@example.com"
    new_email = f"amplify-new-{uuid.uuid4().hex[:8]}@example.com"
    process = subprocess.Popen(
        [js.node, "amplify.mjs", js.pool, js.client, js.endpoint, email, PASSWORD, new_email],
        cwd=JS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def step(name: str) -> dict[str, Any]:
        line = process.stdout.readline()  # type: ignore[union-attr]
        assert line, process.stderr.read()  # type: ignore[union-attr]
        answer = dict(json.loads(line))
        assert answer["step"] == name and "error" not in answer, answer
        return answer

    def next_step() -> None:
        process.stdin.write("\n")  # type: ignore[union-attr]
        process.stdin.flush()  # type: ignore[union-attr]

    try:
        assert step("signUp")["nextStep"] == "CONFIRM_SIGN_UP"
        assert js.table.find_by_email(email) == []  # the row comes with the confirmation
        next_step()
        assert step("confirmSignUp")["isSignUpComplete"] is True
        js.until(lambda: len(js.table.find_by_email(email)) == 1, "row after confirmation")
        sub = js.table.find_by_email(email)[0]["user_id"]
        created = js.row(sub)
        assert created["role"] == "customer"
        next_step()
        # Amplify's default sign-in is USER_SRP_AUTH: cognito-local alone answers it with 500.
        signed_in = step("signIn")
        assert (signed_in["isSignedIn"], signed_in["sub"]) == (True, sub)
        js.until(
            lambda: _login(js.row(sub)) > _login(created),
            "Post Authentication after the SRP sign-in",
        )
        next_step()
        updated = step("updateUserAttributes")
        assert updated["updated"] == {"email": False, "name": True}
        assert updated["emailStep"] == "CONFIRM_ATTRIBUTE_WITH_CODE"
        js.until(lambda: js.row(sub).get("name") == "Renamed", "the new name")
        next_step()
        step("confirmUserAttribute")
        js.until(
            lambda: (
                (js.row(sub).get("email"), js.row(sub).get("emailVerified")) == (new_email, True)
            ),
            "the new email, verified",
        )
        next_step()
        step("deleteUser")
        js.until(lambda: "email" not in js.row(sub), "the row erased")
        assert js.row(sub).get("deletedAt")
        next_step()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_identity_js_signs_in_with_srp_and_sdk_v3_from_local_env_makes_admin_changes(
    js: Stack,
) -> None:
    email = f"idjs-{uuid.uuid4().hex[:8]}@example.com"
    made = js.identity_js("signUp", email, PASSWORD)
    assert made["ok"], made
    sub = made["sub"]
    js.until(lambda: js.row(sub).get("email") == email, "row after confirmation")
    confirmed = _login(js.row(sub))

    signed_in = js.identity_js("signIn", email, PASSWORD)
    assert signed_in == {"ok": True, "sub": sub, "flow": "USER_SRP_AUTH"}
    js.until(lambda: _login(js.row(sub)) > confirmed, "Post Authentication after SRP sign-in")
    wrong = js.identity_js("signIn", email, "Not-the-password-1")
    assert (wrong["error"], wrong["message"]) == (
        "NotAuthorizedException",
        "Incorrect username or password.",
    )

    assert js.sdk_v3("update", email, "name=Set By Admin")["ok"]
    js.until(lambda: js.row(sub).get("name") == "Set By Admin", "admin's name change")
    assert js.sdk_v3("disable", email)["ok"]
    js.until(lambda: js.row(sub).get("cognitoEnabled") is False, "disabled")
    # cognito-local lets a disabled user sign in; Cognito (and so the stack) does not.
    refused = js.identity_js("signIn", email, PASSWORD)
    assert (refused["error"], refused["message"]) == (
        "NotAuthorizedException",
        "User is disabled.",
    )
    assert js.sdk_v3("enable", email)["ok"]
    js.until(lambda: js.row(sub).get("cognitoEnabled") is True, "enabled again")
    assert js.sdk_v3("delete", email)["ok"]
    js.until(lambda: "email" not in js.row(sub), "the row erased")


def test_an_admin_created_user_sets_a_new_password_at_the_first_srp_sign_in(js: Stack) -> None:
    email = f"invited-{uuid.uuid4().hex[:8]}@example.com"
    aws.client("cognito-idp").admin_create_user(
        UserPoolId=js.pool,
        Username=email,
        TemporaryPassword="Temporary-pass-1",
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": email},
            {"Name": "custom:role", "Value": "customer"},
        ],
    )
    first = js.identity_js("signInNewPassword", email, "Temporary-pass-1", PASSWORD)
    assert first["ok"] and first["challenged"] is True, first
    js.until(lambda: js.row(first["sub"]).get("email") == email, "row at the first sign-in")
    again = js.identity_js("signIn", email, PASSWORD)
    assert again == {"ok": True, "sub": first["sub"], "flow": "USER_SRP_AUTH"}
    assert not js.identity_js("signIn", email, "Temporary-pass-1")["ok"]
