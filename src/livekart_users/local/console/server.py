"""The console's web server: a page and a small JSON API, on 127.0.0.1 only.

Safe by construction (each guard runs before any route):
- it listens on 127.0.0.1, and answers only requests whose `Host` is that address or
  `localhost` at its port: a page on a name that resolves to 127.0.0.1 (DNS rebinding) is
  same-origin to the browser, and only the `Host` header tells it apart;
- a random token, new at every start, is required on every request: in the URL the command
  prints (`?token=`, as Jupyter does) or in the `X-Console-Token` header;
- a request that changes anything (POST) needs the token in the header (a cross-site form or
  link cannot set a header), a JSON body, and no `Origin` but its own;
- no CORS headers are ever sent, and the page may not be framed or leak its URL (the token)
  in a `Referer`.
Its clients are built from the stack's own environment, and it refuses to start when an
endpoint they would use is not on the loopback interface (see `local_stack_clients`).
"""

from __future__ import annotations

import json
import secrets
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import bottle
from botocore.exceptions import BotoCoreError, ClientError

from livekart_users.exceptions import LivekartUsersError
from livekart_users.local.console import actions, users_view
from livekart_users.local.console.activity import Activity

TOKEN_HEADER = "X-Console-Token"
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Refused(Exception):
    """A request the guards turn away: its status and one line saying why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=True)


@dataclass
class Guard:
    """The checks every request passes first."""

    token: str
    port: int

    @property
    def hosts(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}", f"localhost:{self.port}"})

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(f"http://{host}" for host in self.hosts)

    def check(self, method: str, headers: Any, query_token: str | None) -> None:
        host = (headers.get("Host") or "").lower()
        if host not in self.hosts:
            raise Refused(403, "this console answers only at 127.0.0.1 or localhost")
        origin = headers.get("Origin")
        if origin is not None and origin not in self.origins:
            raise Refused(403, "requests from other origins are refused")
        if headers.get("Sec-Fetch-Site") == "cross-site":
            raise Refused(403, "requests from other sites are refused")
        sent = headers.get(TOKEN_HEADER)
        if method not in ("GET", "HEAD"):
            if not _same(sent, self.token):
                raise Refused(403, f"a change needs the console's token in {TOKEN_HEADER}")
            kind = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if kind != "application/json":
                raise Refused(415, "send JSON (Content-Type: application/json)")
            return
        if not (_same(sent, self.token) or _same(query_token, self.token)):
            raise Refused(
                403,
                "the console's token is missing or wrong: open the URL "
                "`livekart-users local console` printed",
            )


def _same(given: str | None, token: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode(), token.encode())


class ConsoleApp:
    """The routes, over one local stack's clients."""

    def __init__(
        self,
        stack: actions.Stack,
        activity: Activity,
        guard: Guard,
        *,
        page_size: int = users_view.PAGE_SIZE,
    ) -> None:
        self.stack = stack
        self.activity = activity
        self.guard = guard
        self.view = users_view.UsersView(
            stack.cognito, stack.table, stack.user_pool_id, page_size=page_size
        )
        self.app = bottle.Bottle()
        self.app.config["catchall"] = False  # an unexpected error is a 500, not bottle's page
        self.app.add_hook("after_request", self._headers)
        self._routes()

    # --- plumbing --------------------------------------------------------------------------

    def _headers(self) -> None:
        for key, value in _SECURITY_HEADERS.items():
            bottle.response.set_header(key, value)

    def _guarded(self, route: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            request = bottle.request
            try:
                self.guard.check(request.method, request.headers, request.query.get("token"))
                result = route(*args, **kwargs)
            except Refused as refused:
                return self._error(refused.status, str(refused))
            except (actions.ActionError, users_view.InvalidCursor) as exc:
                return self._error(400, str(exc))
            except LivekartUsersError as exc:
                return self._error(409, str(exc))
            except ClientError as exc:
                error = exc.response.get("Error", {})
                return self._error(409, f"{error.get('Code')}: {error.get('Message')}")
            except BotoCoreError as exc:
                return self._error(503, f"the local stack did not answer: {exc}")
            if isinstance(result, str | bytes):
                return result
            bottle.response.content_type = "application/json"
            return to_json(result)

        return run

    def _error(self, status: int, message: str) -> str:
        bottle.response.status = status
        bottle.response.content_type = "application/json"
        return to_json({"error": message})

    def _body(self) -> dict[str, Any]:
        try:
            body = json.loads(bottle.request.body.read() or b"{}")
        except ValueError:
            raise actions.ActionError("the request's body is not JSON") from None
        if not isinstance(body, dict):
            raise actions.ActionError("the request's body must be a JSON object")
        return body

    def _routes(self) -> None:
        route = self.app.route
        route("/", "GET", self._guarded(self.index))
        route("/static/<name>", "GET", self._guarded(self.static))
        route("/api/stack", "GET", self._guarded(self.stack_info))
        route("/api/users", "GET", self._guarded(self.users))
        route("/api/users", "POST", self._guarded(self.create_user))
        route("/api/users/<user_id>", "GET", self._guarded(self.user))
        route("/api/users/<user_id>/enabled", "POST", self._guarded(self.enabled))
        route("/api/users/<user_id>/attributes", "POST", self._guarded(self.attribute))
        route("/api/users/<user_id>/delete", "POST", self._guarded(self.delete))
        route("/api/reconcile", "POST", self._guarded(self.reconcile))
        route("/api/activity", "GET", self._guarded(self.activity_after))
        # Anything else, any method: the same JSON error, after the same guards.
        route(
            "/<path:path>",
            ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"],
            self._guarded(self.not_found),
        )

    # --- the page ----------------------------------------------------------------------------

    def index(self) -> str:
        bottle.response.content_type = "text/html; charset=utf-8"
        page = resources.files(__package__).joinpath("static/index.html").read_text()
        # The token goes into the page's own links; token_urlsafe's alphabet needs no escaping.
        return page.replace("{{TOKEN}}", self.guard.token)

    def static(self, name: str) -> str:
        if name not in _STATIC:
            raise Refused(404, f"no such file: {name}")
        bottle.response.content_type = f"{_STATIC[name]}; charset=utf-8"
        return resources.files(__package__).joinpath(f"static/{name}").read_text()

    def not_found(self, path: str) -> Any:
        raise Refused(404 if bottle.request.method == "GET" else 405, f"nothing at /{path}")

    # --- reads -------------------------------------------------------------------------------

    def stack_info(self) -> dict[str, Any]:
        return {
            "user_pool_id": self.stack.user_pool_id,
            "client_id": self.stack.client_id,
            "table": self.stack.table.name,
            "confirmation_code": self.stack.confirmation_code,
            "states": list(users_view.STATES),
            "erasure_policies": ["anonymize", "delete", "keep"],
            "editable_attributes": list(actions.EDITABLE_ATTRIBUTES),
        }

    def users(self) -> dict[str, Any]:
        query = bottle.request.query
        page = self.view.page(query.get("cursor") or None, query.get("q") or None)
        return {
            "entries": [e.as_dict() for e in page.entries],
            "cursor": page.cursor,
            "stage": page.stage,
        }

    def user(self, user_id: str) -> dict[str, Any]:
        return actions.detail(self.stack, user_id)

    def activity_after(self) -> dict[str, Any]:
        seen = bottle.request.query.get("after") or "0"
        return self.activity.after(int(seen) if seen.isdigit() else 0)

    # --- actions -----------------------------------------------------------------------------

    def create_user(self) -> dict[str, Any]:
        body = self._body()
        sub = actions.create_test_user(
            self.stack,
            str(body.get("email") or ""),
            str(body.get("password") or ""),
            role=str(body.get("role") or "customer"),
            name=str(body.get("name") or "") or None,
        )
        return {"user_id": sub}

    def enabled(self, user_id: str) -> dict[str, Any]:
        enabled = self._body().get("enabled")
        if not isinstance(enabled, bool):
            raise actions.ActionError('send {"enabled": true} or {"enabled": false}')
        actions.set_enabled(self.stack, user_id, enabled)
        return {"user_id": user_id, "enabled": enabled}

    def attribute(self, user_id: str) -> dict[str, Any]:
        body = self._body()
        name, value = body.get("name"), body.get("value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise actions.ActionError('send {"name": "<attribute>", "value": "<text>"}')
        actions.change_attribute(self.stack, user_id, name, value)
        return {"user_id": user_id, "changed": name}

    def delete(self, user_id: str) -> dict[str, Any]:
        return actions.delete(self.stack, user_id, str(self._body().get("policy") or ""))

    def reconcile(self) -> dict[str, Any]:
        return actions.reconcile(self.stack, apply=self._body().get("apply") is True)


# --- serving -------------------------------------------------------------------------------


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # The page polls while an action runs: a few requests at once, never a crowd.
    request_queue_size = 32


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines carry the token in the URL: never printed


@dataclass
class Running:
    """A started console: where it is, and how to stop it."""

    url: str
    port: int
    token: str
    server: WSGIServer
    thread: threading.Thread

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(
    stack: actions.Stack,
    activity: Activity,
    *,
    port: int = 0,
    token: str | None = None,
    page_size: int = users_view.PAGE_SIZE,
) -> Running:
    """Start the console on 127.0.0.1 in a thread; `port` 0 takes a free one."""
    token = token or secrets.token_urlsafe(24)
    holder: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = make_server(
        "127.0.0.1", port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    bound = int(server.server_address[1])
    holder["app"] = ConsoleApp(stack, activity, Guard(token, bound), page_size=page_size).app
    thread = threading.Thread(target=server.serve_forever, name="console", daemon=True)
    thread.start()
    return Running(f"http://127.0.0.1:{bound}/?token={token}", bound, token, server, thread)


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
