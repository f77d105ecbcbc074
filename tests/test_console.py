"""The local console over HTTP, against a running local stack: its guards, its JSON, its actions.

The browser's side is in test_console_browser.py; here every request is made by hand, so a
refusal is checked exactly (status, and that nothing changed).
"""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from livekart_users import aws
from livekart_users.cli import main
from livekart_users.exceptions import LocalStackError
from livekart_users.local import demo
from livekart_users.local.console import ConsoleRefused, check_environment, open_console
from livekart_users.local.console import users_view as view
from livekart_users.local.console.server import TOKEN_HEADER, Running
from livekart_users.local.stack import LocalStack, Settings
from livekart_users.table import UsersTable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def console(local_stack: LocalStack) -> Iterator[Running]:
    running = open_console(local_stack, environ={})
    yield running
    running.stop()


def request(
    running: Running,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    token: bool = True,
) -> tuple[int, dict[str, str], Any]:
    """One request to the console; `headers` may replace Host, add Origin, and so on."""
    sent = {"Host": f"127.0.0.1:{running.port}"}
    if token:
        sent[TOKEN_HEADER] = running.token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
        sent["Content-Length"] = str(len(data))
    sent.update(headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for key, value in sent.items():
            connection.putheader(key, value)
        connection.endheaders(data)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    kind = answer_headers.get("content-type", "")
    return response.status, answer_headers, json.loads(raw) if "json" in kind else raw.decode()


def sign_up(stack: LocalStack, *, confirm: bool = True, name: str = "Console Test") -> str:
    """A new user through the Cognito API (as an app would); their sub."""
    cognito = aws.client("cognito-idp")
    email = f"console-{uuid.uuid4().hex[:8]}@example.com"
    user = demo.DemoUser(email, "customer", name=name)
    status = stack.status()
    assert status.client_id and status.user_pool_id
    if confirm:
        assert demo.sign_up(cognito, status.client_id, user)
    else:
        cognito.sign_up(
            ClientId=status.client_id,
            Username=email,
            Password=demo.DEMO_PASSWORD,
            UserAttributes=user.attributes(),
        )
    answer = cognito.admin_get_user(UserPoolId=status.user_pool_id, Username=email)
    return next(a["Value"] for a in answer["UserAttributes"] if a["Name"] == "sub")


def table_of(stack: LocalStack) -> UsersTable:
    return UsersTable(aws.client("dynamodb"), stack.settings.table)


def delete_row(stack: LocalStack, user_id: str) -> None:
    """The row goes, as if deleted by hand or never written."""
    table = table_of(stack)
    table.client.delete_item(TableName=table.name, Key={"user_id": {"S": user_id}})


def all_entries(running: Running, search: str | None = None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        query = "&".join(
            f"{k}={v}" for k, v in (("cursor", cursor), ("q", search)) if v is not None
        )
        status, _, page = request(running, "GET", f"/api/users?{query}")
        assert status == 200, page
        for entry in page["entries"]:
            assert entry["user_id"] not in found, "an entry shown twice"
            found[entry["user_id"]] = entry
        cursor = page["cursor"]
        if cursor is None:
            return found


def eventually(check: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


# --- the guards ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/users", "/api/activity"])
def test_every_request_without_the_token_is_refused(
    console: Running, stack_env: LocalStack, path: str
) -> None:
    status, _, body = request(console, "GET", path, token=False)
    assert status == 403
    assert "token" in body["error"]
    wrong, _, _ = request(console, "GET", path, token=False, headers={TOKEN_HEADER: "x" * 32})
    assert wrong == 403
    with_query, _, _ = request(
        console, "GET", f"{path}{'&' if '?' in path else '?'}token={console.token}", token=False
    )
    assert with_query == 200


def test_the_page_links_its_files_with_the_token_and_sends_no_cors(
    console: Running, stack_env: LocalStack
) -> None:
    status, headers, page = request(console, "GET", f"/?token={console.token}", token=False)
    assert status == 200
    assert f"/static/app.js?token={console.token}" in page
    assert "{{TOKEN}}" not in page
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer"  # the URL carries the token
    preflight, preflight_headers, _ = request(
        console,
        "OPTIONS",
        "/api/users",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight == 403
    assert not any(k.startswith("access-control-") for k in {**headers, **preflight_headers})


def test_a_foreign_host_is_refused_even_with_the_token(
    console: Running, stack_env: LocalStack
) -> None:
    # DNS rebinding: a page on rebound.example (resolving to 127.0.0.1) is same-origin to
    # the browser; only the Host header tells it apart.
    status, _, body = request(
        console, "GET", "/api/users", headers={"Host": f"rebound.example:{console.port}"}
    )
    assert status == 403
    assert "127.0.0.1" in body["error"]
    ok, _, _ = request(console, "GET", "/api/stack", headers={"Host": f"localhost:{console.port}"})
    assert ok == 200


def test_a_change_from_another_origin_is_refused_and_changes_nothing(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env)
    path = f"/api/users/{sub}/enabled"
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        status, _, body = request(console, "POST", path, {"enabled": False}, headers=headers)
        assert status == 403, headers
        assert "refused" in body["error"]
    # The token in the URL is not enough for a change (a link or a form could carry it).
    status, _, _ = request(
        console, "POST", f"{path}?token={console.token}", {"enabled": False}, token=False
    )
    assert status == 403
    status, _, _ = request(console, "POST", path, None, headers={"Content-Type": "text/plain"})
    assert status == 415
    _, _, detail = request(console, "GET", f"/api/users/{sub}")
    assert detail["cognito"]["enabled"] is True


def test_the_console_refuses_an_environment_that_points_elsewhere(tmp_path: Path) -> None:
    stack = LocalStack(Settings(directory=tmp_path / "stack", dynamodb_port=8000))
    with pytest.raises(ConsoleRefused, match="AWS_ENDPOINT_URL_DYNAMODB"):
        check_environment(
            stack, {"AWS_ENDPOINT_URL_DYNAMODB": "https://dynamodb.us-east-1.amazonaws.com"}
        )
    with pytest.raises(ConsoleRefused, match="AWS_ENDPOINT_URL="):
        check_environment(stack, {"AWS_ENDPOINT_URL": "https://example.com"})
    check_environment(stack, stack.environment())  # the stack's own: fine
    with pytest.raises(LocalStackError, match="not running"):
        open_console(stack, environ={})


def test_local_console_says_in_one_line_why_it_will_not_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["local", "console", "--dir", str(tmp_path / "none")],
        env={"AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": "https://cognito-idp.amazonaws.com"},
    )
    assert result.exit_code == 1
    assert "points elsewhere than this local stack" in result.output
    assert "Traceback" not in result.output


# --- the users view --------------------------------------------------------------------------


def test_users_view_marks_each_user_beside_their_row(
    console: Running, stack_env: LocalStack
) -> None:
    table = table_of(stack_env)
    cognito = aws.client("cognito-idp")
    pool = stack_env.status().user_pool_id
    in_step = sign_up(stack_env)
    row_missing = sign_up(stack_env)
    delete_row(stack_env, row_missing)
    stale = sign_up(stack_env, name="Old Name")
    table.client.update_item(
        TableName=table.name,
        Key={"user_id": {"S": stale}},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": {"S": "Not What Cognito Says"}},
    )
    disabled = sign_up(stack_env)
    username = cognito.admin_get_user(UserPoolId=pool, Username=disabled)["Username"]
    cognito.admin_disable_user(UserPoolId=pool, Username=username)
    unconfirmed = sign_up(stack_env, confirm=False)
    orphan = str(uuid.uuid4())
    erased = str(uuid.uuid4())
    other_pools = str(uuid.uuid4())
    for uid, extra in (
        (orphan, {}),
        (erased, {"deletedAt": "2026-01-01T00:00:00.000Z"}),
        (other_pools, {"userPoolId": "eu-west-1_AbCdEfGhI"}),
    ):
        table.create_if_absent(
            {
                "user_id": uid,
                "username": uid,
                "role": "customer",
                "status": "active",
                "createdAt": "2026-01-01T00:00:00.000Z",
                "updatedAt": "2026-01-01T00:00:00.000Z",
                "emailVerified": False,
                "cart": [],
                "wishlist": [],
                **extra,
            }
        )

    entries = all_entries(console)

    assert entries[in_step]["state"] == view.IN_STEP
    assert entries[row_missing]["state"] == view.ROW_MISSING
    assert entries[row_missing]["row"] is None
    assert entries[stale]["state"] == view.STALE
    assert entries[stale]["stale_fields"] == ["name"]
    assert entries[disabled]["state"] == view.DISABLED
    assert entries[disabled]["enabled"] is False
    assert entries[unconfirmed]["state"] == view.UNCONFIRMED
    assert entries[orphan]["state"] == view.ORPHAN
    assert entries[erased]["state"] == view.ERASED
    assert other_pools not in entries  # another pool's row is not this pool's orphan


def test_users_view_pages_through_both_sides_without_repeating(
    stack_env: LocalStack,
) -> None:
    for _ in range(3):
        sign_up(stack_env)
    orphan = str(uuid.uuid4())
    table_of(stack_env).create_if_absent(
        {
            "user_id": orphan,
            "username": "gone",
            "role": "customer",
            "status": "active",
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "emailVerified": False,
        }
    )
    cognito = aws.client("cognito-idp")
    table = table_of(stack_env)
    pool = stack_env.status().user_pool_id
    assert pool
    whole = view.UsersView(cognito, table, pool, page_size=10_000).page()
    assert whole.cursor is None

    paged = view.UsersView(cognito, table, pool, page_size=2)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = paged.page(cursor)
        pages += 1
        assert len(page.entries) <= 2 or page.stage == "rows"
        seen.extend(e.user_id for e in page.entries)
        cursor = page.cursor
        if cursor is None:
            break
    assert pages >= 2
    assert len(seen) == len(set(seen))
    assert set(seen) == {e.user_id for e in whole.entries}
    assert orphan in seen


def test_search_finds_users_by_email_prefix_any_case(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env)
    _, _, detail = request(console, "GET", f"/api/users/{sub}")
    email = detail["cognito"]["attributes"]["email"]
    found = all_entries(console, search=email[:14].upper())
    assert sub in found
    assert all(e["email"].startswith(email[:14]) for e in found.values() if e["email"])


def test_a_bad_cursor_is_one_clear_error(console: Running, stack_env: LocalStack) -> None:
    status, _, body = request(console, "GET", "/api/users?cursor=bm90LWpzb24")
    assert status == 400
    assert "reload the page" in body["error"]


def test_detail_shows_cognito_and_the_row_side_by_side_with_app_fields_marked(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env, name="Side By Side")
    status, _, detail = request(console, "GET", f"/api/users/{sub}")
    assert status == 200
    assert detail["cognito"]["attributes"]["name"] == "Side By Side"
    assert detail["row"]["name"] == "Side By Side"
    assert {"cart", "wishlist", "totalOrders", "role", "status"} <= set(detail["app_fields"])
    assert not {"email", "name", "username"} & set(detail["app_fields"])
    missing, _, body = request(console, "GET", f"/api/users/{uuid.uuid4()}")
    assert missing == 400
    assert "no user" in body["error"]


# --- actions ---------------------------------------------------------------------------------


def test_create_a_test_user_signs_up_and_confirms_so_the_trigger_writes_the_row(
    console: Running, stack_env: LocalStack
) -> None:
    email = f"made-{uuid.uuid4().hex[:6]}@example.com"
    status, _, made = request(
        console,
        "POST",
        "/api/users",
        {"email": email, "password": "LiveKart-test-1", "role": "vendor", "name": "Made Here"},
    )
    assert status == 200, made
    row = table_of(stack_env).get(made["user_id"])
    assert row is not None
    assert row["role"] == "vendor" and row["email"] == email and row["name"] == "Made Here"
    again, _, body = request(
        console, "POST", "/api/users", {"email": email, "password": "LiveKart-test-1"}
    )
    assert again == 400
    assert "signed up already" in body["error"]


def test_disable_enable_and_change_an_attribute_reach_cognito_and_the_row_follows(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env)
    status, _, _ = request(console, "POST", f"/api/users/{sub}/enabled", {"enabled": False})
    assert status == 200
    _, _, detail = request(console, "GET", f"/api/users/{sub}")
    assert detail["cognito"]["enabled"] is False
    assert detail["entry"]["state"] == view.DISABLED
    request(console, "POST", f"/api/users/{sub}/enabled", {"enabled": True})

    status, _, _ = request(
        console, "POST", f"/api/users/{sub}/attributes", {"name": "name", "value": "Renamed"}
    )
    assert status == 200
    _, _, detail = request(console, "GET", f"/api/users/{sub}")
    assert detail["cognito"]["attributes"]["name"] == "Renamed"
    # The stack's change events run the change handler, which refreshes the row.
    assert eventually(lambda: (table_of(stack_env).get(sub) or {}).get("name") == "Renamed")

    refused, _, body = request(
        console, "POST", f"/api/users/{sub}/attributes", {"name": "custom:role", "value": "admin"}
    )
    assert refused == 400
    assert "cannot be changed here" in body["error"]


def test_delete_removes_the_cognito_user_and_erases_the_row_by_the_policy(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env)
    status, _, done = request(console, "POST", f"/api/users/{sub}/delete", {"policy": "anonymize"})
    assert status == 200, done
    assert done["cognito_user_deleted"] is True
    row = table_of(stack_env).get(sub)
    assert row is not None and "deletedAt" in row and "email" not in row
    _, _, detail = request(console, "GET", f"/api/users/{sub}")
    assert detail["cognito"] is None
    assert detail["entry"]["state"] == view.ERASED


def test_reconcile_dry_run_changes_nothing_then_apply_heals_a_missing_row(
    console: Running, stack_env: LocalStack
) -> None:
    sub = sign_up(stack_env)
    table = table_of(stack_env)
    delete_row(stack_env, sub)
    status, _, report = request(console, "POST", "/api/reconcile", {"apply": False})
    assert status == 200
    assert report["to_create"] >= 1
    assert table.get(sub) is None
    status, _, report = request(console, "POST", "/api/reconcile", {"apply": True})
    assert status == 200
    assert table.get(sub) is not None
    assert all_entries(console)[sub]["state"] != view.ROW_MISSING


def test_stack_info_tells_the_confirmation_code(console: Running, stack_env: LocalStack) -> None:
    status, _, info = request(console, "GET", "/api/stack")
    assert status == 200
    assert info["confirmation_code"] == "123456"
    assert info["user_pool_id"] == stack_env.status().user_pool_id


# --- activity --------------------------------------------------------------------------------


def test_activity_is_newest_first_and_shows_the_cold_start(
    console: Running, stack_env: LocalStack
) -> None:
    _, _, before = request(console, "GET", "/api/activity")
    first = sign_up(stack_env)
    second = sign_up(stack_env)
    _, _, fresh = request(console, "GET", f"/api/activity?after={before['last']}")
    users = [i["user_id"] for i in fresh["invocations"]]
    assert users.index(second) < users.index(first)
    assert all(i["seq"] > before["last"] for i in fresh["invocations"])
    _, _, everything = request(console, "GET", "/api/activity")
    oldest = everything["invocations"][-1]
    # The module's stack is new: its first invocation was the trigger's cold start.
    assert oldest["seq"] == 1
    assert oldest["cold_start"] is True and oldest["init_duration_ms"] > 0
    assert all(
        not i["cold_start"]
        for i in everything["invocations"]
        if i["function"] == "trigger" and i["seq"] != 1
    )
    # The change handler's init is the same process's: its first invocation tells it too.
    handler = [i["cold_start"] for i in everything["invocations"] if i["function"] != "trigger"]
    if handler:
        assert handler == [False] * (len(handler) - 1) + [True]


def test_the_stack_answers_list_users_in_pages_as_cognito_does(stack_env: LocalStack) -> None:
    for _ in range(3):
        sign_up(stack_env)
    cognito = aws.client("cognito-idp")
    pool = stack_env.status().user_pool_id
    pages = list(cognito.get_paginator("list_users").paginate(UserPoolId=pool, Limit=2))
    assert len(pages) >= 2 and all(len(p["Users"]) <= 2 for p in pages)
    names = [u["Username"] for p in pages for u in p["Users"]]
    assert len(names) == len(set(names))
    assert len(names) == len(cognito.list_users(UserPoolId=pool, Limit=60)["Users"]) or (
        len(names) > 60
    )


def test_local_console_prints_a_url_that_serves_the_stack_until_interrupted(
    local_stack: LocalStack,
) -> None:
    import os
    import signal
    import subprocess
    import sys

    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "AWS_PROF"))
    }
    command = [
        sys.executable,
        "-c",
        "from livekart_users.cli import main; main()",
        "local",
        "console",
    ]
    process = subprocess.Popen(
        [*command, "--dir", str(local_stack.dir)],
        stdout=subprocess.PIPE,
        text=True,
        env={**environment, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("console: http://127.0.0.1:"), line
        url = line.split()[1]
        port = int(url.split(":")[2].split("/")[0])
        token = url.split("token=")[1]
        running = Running(url, port, token, None, None)  # type: ignore[arg-type]
        status, _, info = request(running, "GET", "/api/stack")
        assert status == 200
        assert info["user_pool_id"] == local_stack.status().user_pool_id
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
