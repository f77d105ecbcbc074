"""The local console in a real browser: headless Chromium (Debian's) driven by Selenium.

Against a running local stack: a sign-up made through the Cognito API shows in the users
view and in the activity within 2 s; a row deleted from the table shows as "row missing" and
reconcile from the page heals it; the page's actions work; a page of another origin cannot
make the console do anything. The run takes the README's screenshot (docs/console.png).
Without Chromium these tests skip, saying what to install; `.ci/run` installs it.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from livekart_users import aws
from livekart_users.local import demo
from livekart_users.local.console import open_console
from livekart_users.local.console.server import Running
from livekart_users.local.stack import LocalStack
from tests.test_console import delete_row, sign_up, table_of

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "console.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no Chromium: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver) to run the console's browser tests",
    ),
]

if CHROMIUM and CHROMEDRIVER:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Headless as root, and none of Chromium's own calls home (this network is closed).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(10)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def console(local_stack: LocalStack) -> Iterator[Running]:
    local_stack.use()
    demo.run(local_stack)  # the demo's users, as after `make demo`
    running = open_console(local_stack, environ={})
    yield running
    running.stop()


@pytest.fixture
def page(browser: WebDriver, console: Running, stack_env: LocalStack) -> WebDriver:
    browser.get(console.url)
    WebDriverWait(browser, 10).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#users tbody tr"))
    )
    return browser


def user_row(driver: WebDriver, sub: str, seconds: float) -> Any:
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f'#users tr[data-user-id="{sub}"]'))
    )


def open_user(driver: WebDriver, sub: str, seconds: float) -> None:
    """Click the user's row, found and clicked in one script: the list is redrawn as it
    refreshes, so a row found in one call may be stale by the next."""
    WebDriverWait(driver, seconds, poll_frequency=0.05).until(
        lambda d: d.execute_script(
            'const row = document.querySelector(`#users tr[data-user-id="${arguments[0]}"]`);'
            "if (!row) return false; row.click(); return true;",
            sub,
        ),
        f"no row for {sub}",
    )


def state_of(driver: WebDriver, sub: str) -> str | None:
    # Read in one script: the list is redrawn as it refreshes, so an element found in one
    # call may be gone by the next.
    state = driver.execute_script(
        'const row = document.querySelector(`#users tr[data-user-id="${arguments[0]}"]`);'
        "return row ? row.dataset.state : null;",
        sub,
    )
    return str(state) if state is not None else None


def click(driver: WebDriver, selector: str, label: str) -> None:
    """Click the detail's button once it reads `label` (found and clicked in one script: the
    detail is redrawn when the user changes)."""
    WebDriverWait(driver, 10, poll_frequency=0.1).until(
        lambda d: d.execute_script(
            "const b = document.querySelector(arguments[0]);"
            "if (!b || !b.textContent.startsWith(arguments[1])) return false;"
            "b.click(); return true;",
            selector,
            label,
        ),
        f"no {selector} reading {label!r}",
    )


def wait_state(driver: WebDriver, sub: str, state: str, seconds: float = 10.0) -> None:
    WebDriverWait(driver, seconds, poll_frequency=0.1).until(
        lambda d: state_of(d, sub) == state, f"{sub} never showed as {state!r}"
    )


def test_a_sign_up_shows_in_the_users_view_and_the_activity_within_2_s(
    page: WebDriver, stack_env: LocalStack
) -> None:
    started = time.monotonic()
    sub = sign_up(stack_env)
    signed_up = time.monotonic()
    user_row(page, sub, 2.0)
    WebDriverWait(page, 2.0, poll_frequency=0.05).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, f'#activity li[data-user-id="{sub}"]'))
    )
    assert time.monotonic() - signed_up <= 2.0 + 0.1, f"sign-up took {signed_up - started:.2f}s"
    assert state_of(page, sub) == "in step"
    line = page.find_element(By.CSS_SELECTOR, f'#activity li[data-user-id="{sub}"]')
    assert "PostConfirmation_ConfirmSignUp" in line.text and "created" in line.text


def test_a_deleted_row_shows_as_missing_and_reconcile_from_the_page_heals_it(
    page: WebDriver, stack_env: LocalStack
) -> None:
    stack = stack_env
    sub = sign_up(stack)
    user_row(page, sub, 5.0)
    delete_row(stack, sub)
    wait_state(page, sub, "row missing")  # the view looks again every 5 s

    page.find_element(By.ID, "reconcile-dry").click()
    report = page.find_element(By.ID, "reconcile-report")
    WebDriverWait(page, 20).until(lambda _: "to_create: " in report.text)
    assert "dry run" in report.text
    assert table_of(stack).get(sub) is None  # a dry run writes nothing
    page.find_element(By.ID, "reconcile-apply").click()
    WebDriverWait(page, 20).until(lambda _: report.text.startswith("applied"))
    wait_state(page, sub, "in step")
    assert table_of(stack).get(sub) is not None


def test_every_action_works_from_the_page(page: WebDriver, stack_env: LocalStack) -> None:
    stack = stack_env
    email = f"page-{uuid.uuid4().hex[:6]}@example.com"
    form = page.find_element(By.ID, "create")
    form.find_element(By.NAME, "email").send_keys(email)
    form.find_element(By.NAME, "name").send_keys("From The Page")
    Select(form.find_element(By.NAME, "role")).select_by_visible_text("vendor")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    notice = page.find_element(By.ID, "notice")
    WebDriverWait(page, 10).until(lambda _: email in notice.text)
    pool = stack.status().user_pool_id
    cognito = aws.client("cognito-idp")
    sub = next(
        a["Value"]
        for a in cognito.admin_get_user(UserPoolId=pool, Username=email)["UserAttributes"]
        if a["Name"] == "sub"
    )
    row = table_of(stack).get(sub)
    assert row is not None and row["role"] == "vendor"  # the trigger ran

    open_user(page, sub, 5.0)
    detail = page.find_element(By.ID, "detail")
    WebDriverWait(page, 10).until(lambda _: "From The Page" in detail.text)
    assert "app" in detail.find_element(By.CSS_SELECTOR, "tr.app-field").text

    click(page, "#toggle-enabled", "disable")
    wait_state(page, sub, "disabled")
    assert cognito.admin_get_user(UserPoolId=pool, Username=email)["Enabled"] is False
    click(page, "#toggle-enabled", "enable")
    WebDriverWait(page, 10).until(
        lambda _: cognito.admin_get_user(UserPoolId=pool, Username=email)["Enabled"]
    )

    page.execute_script(
        "const form = document.getElementById('change-attribute');"
        "form.elements.attribute.value = 'name';"
        "form.elements.value.value = 'Renamed On Page';"
        "form.requestSubmit();"
    )
    WebDriverWait(page, 10).until(
        lambda _: (table_of(stack).get(sub) or {}).get("name") == "Renamed On Page"
    )

    click(page, "#delete", "delete")  # arms it
    time.sleep(0.5)
    assert table_of(stack).get(sub) is not None
    click(page, "#delete", "really delete")
    wait_state(page, sub, "erased")
    row = table_of(stack).get(sub)
    assert row is not None and "deletedAt" in row and "email" not in row


class _Elsewhere(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def elsewhere() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


_FROM_ELSEWHERE = """
const [url, token, done] = arguments;
const tries = [
  // What a page would try: with the token (say, read off a shared screen) in a header ...
  fetch(url, {method: "POST", headers: {"X-Console-Token": token,
    "Content-Type": "application/json"}, body: JSON.stringify({enabled: false})}),
  // ... or as a plain form post, which needs no preflight.
  fetch(url + "?token=" + token, {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: JSON.stringify({enabled: false})}),
];
Promise.allSettled(tries).then((results) => done(results.map(
  (r) => r.status === "fulfilled" ? r.value.type + ":" + r.value.status : "refused")));
"""


def test_another_origin_and_a_tokenless_visit_are_refused(
    browser: WebDriver, console: Running, stack_env: LocalStack, elsewhere: str
) -> None:
    sub = sign_up(stack_env)
    browser.get(console.url.split("?")[0])
    assert "token is missing" in browser.find_element(By.TAG_NAME, "body").text

    browser.get(elsewhere)
    url = f"http://127.0.0.1:{console.port}/api/users/{sub}/enabled"
    results = browser.execute_async_script(_FROM_ELSEWHERE, url, console.token)
    # The preflight is refused (no CORS), the form-like post is answered 403 (opaque to it).
    assert results[0] == "refused"
    assert results[1] in ("opaque:0", "refused")
    pool = stack_env.status().user_pool_id
    cognito = aws.client("cognito-idp")
    users = cognito.list_users(UserPoolId=pool, Filter=f'sub = "{sub}"')["Users"]
    assert users and users[0]["Enabled"] is True  # nothing changed


def test_the_page_fits_a_narrow_window_and_the_readme_screenshot_is_taken(
    page: WebDriver, stack_env: LocalStack
) -> None:
    stack = stack_env
    demo_email = demo.DEMO_USERS[1].email
    cognito = aws.client("cognito-idp")
    pool = stack.status().user_pool_id
    answer = cognito.admin_get_user(UserPoolId=pool, Username=demo_email)
    sub = next(a["Value"] for a in answer["UserAttributes"] if a["Name"] == "sub")
    open_user(page, sub, 5.0)
    WebDriverWait(page, 10).until(lambda d: demo_email in d.find_element(By.ID, "detail").text)
    try:
        page.set_window_size(420, 900)
        overflow = page.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than a 420px window"
    finally:
        page.set_window_size(1280, 900)
    page.execute_script("window.scrollTo(0, 0)")
    height = page.execute_script("return document.documentElement.scrollHeight")
    page.set_window_size(1280, min(max(int(height), 700), 1400))
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert page.save_screenshot(str(SCREENSHOT))
    page.set_window_size(1280, 900)
