"""A local endpoint serving the Lambda Invoke API by running our trigger handler.

cognito-local fires triggers by calling `POST /2015-03-31/functions/<name>/invocations`; this
server answers it with `livekart_users.triggers.handler`, so the real triggers run locally.
A second function name (`--changes-function`) runs `livekart_users.changes.handler`, the
change handler, for the CloudTrail-shaped events the stack's Cognito endpoint emits (see
`change_events`); it is configured as deploy configures it on AWS, with `USER_POOL_ID` set to
the stack's pool (found by name at its first event: the pool is made after this starts).
It stands in for what cognito-local and a bare function call lack:
- it enforces the function's timeout (cognito-local waits forever) and answers a timeout or
  an exception the way Lambda does (200 with `X-Amz-Function-Error: Unhandled`);
- it marks the email verified on `PostConfirmation_ConfirmSignUp` when the pool auto-verifies
  email, as Cognito does (cognito-local does not);
- it appends one JSON line per invocation to a record that tests read: function, trigger
  source, user id, duration, function error and the handler's logged outcome.

Run: python -m livekart_users.local.endpoint --port N --function NAME --record FILE
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from livekart_users.local import loopback, private

_PATH = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
_LOCK = threading.Lock()


class FakeContext:
    """The parts of Lambda's context object a handler reads."""

    def __init__(self, function_name: str, timeout: float, memory_mb: int = 256) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{function_name}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._ends = time.monotonic() + timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._ends - time.monotonic()) * 1000))


class _OutcomeCapture(logging.Handler):
    """Reads `outcome` and `error_code` off the handler's log records, per worker thread."""

    def __init__(self) -> None:
        super().__init__()
        self.by_thread: dict[int, dict[str, Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        outcome = getattr(record, "outcome", None)
        if outcome is not None and record.thread is not None:
            self.by_thread[record.thread] = {
                "outcome": outcome,
                "error_code": getattr(record, "error_code", None),
            }


@lru_cache(maxsize=32)
def _auto_verifies_email(pool_id: str) -> bool:
    """Whether the pool verifies email on sign-up (read from the Cognito endpoint)."""
    try:
        pool = _cognito().describe_user_pool(UserPoolId=pool_id)["UserPool"]
    except Exception:
        return False
    return "email" in (pool.get("AutoVerifiedAttributes") or [])


@lru_cache(maxsize=1)
def _cognito() -> Any:
    from livekart_users import aws  # the endpoint's own process; not on the trigger path

    return aws.client("cognito-idp")


def as_cognito_would(event: Any) -> Any:
    """The event as Cognito would send it, and the user as Cognito would keep them.

    Cognito marks the email verified when a sign-up is confirmed by the code it emailed;
    cognito-local does not, so here a confirmed sign-up in an email-verifying pool gets
    `email_verified: "true"`, in the event and (for later sign-ins) on the user.
    """
    if (
        not isinstance(event, dict)
        or event.get("triggerSource") != "PostConfirmation_ConfirmSignUp"
    ):
        return event
    attributes = (event.get("request") or {}).get("userAttributes")
    pool_id = str(event.get("userPoolId"))
    if (
        isinstance(attributes, dict)
        and attributes.get("email")
        and "email_verified" not in attributes
        and _auto_verifies_email(pool_id)
    ):
        attributes["email_verified"] = "true"
        # The event is right either way; if this fails, a later sign-in would show false.
        with contextlib.suppress(Exception):
            _cognito().admin_update_user_attributes(
                UserPoolId=pool_id,
                Username=str(event.get("userName")),
                # cognito-local insists on the email beside email_verified.
                UserAttributes=[
                    {"Name": "email", "Value": str(attributes["email"])},
                    {"Name": "email_verified", "Value": "true"},
                ],
            )
    return event


class InvokeServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of sign-ups beyond it had connections
    # reset before a thread could take them.
    request_queue_size = 128

    timeout: float

    def __init__(
        self,
        port: int,
        function: str,
        timeout: float,
        record: Path,
        handler: Callable[[Any, Any], Any] | None = None,
        *,
        changes_function: str | None = None,
        changes_pool_name: str | None = None,
        changes_timeout: float = 30.0,
        init_ms: float | None = None,
    ) -> None:
        from livekart_users import triggers

        self.function = function
        self.timeout = timeout
        self.record = record
        self.handler: Callable[[Any, Any], Any] = handler or triggers.handler
        self.changes_function = changes_function
        self.changes_pool_name = changes_pool_name
        self.changes_timeout = changes_timeout
        self.capture = _OutcomeCapture()
        # Each function's init (Lambda's `Init Duration`), told once, by its first invocation:
        # the record then shows the cold start, as Lambda's REPORT line does.
        # The init (`warm_up`) builds both functions' clients, so each one's first invocation
        # tells it.
        self.cold: dict[str, float] = (
            {name: init_ms for name in (function, changes_function) if name}
            if init_ms is not None
            else {}
        )
        logging.getLogger(triggers.SERVICE).addHandler(self.capture)
        # A timed-out invocation keeps its worker (Lambda would kill the sandbox): keep spares.
        self.pool = ThreadPoolExecutor(max_workers=16)
        super().__init__(("127.0.0.1", port), _RequestHandler)

    def serves(self, name: str | None) -> bool:
        return name is not None and name in (self.function, self.changes_function)

    def invoke(
        self, event: Any, function: str | None = None
    ) -> tuple[int, dict[str, str], Any, dict[str, Any]]:
        changes = function is not None and function == self.changes_function
        name = function if changes and function else self.function
        timeout = self.changes_timeout if changes else self.timeout
        context = FakeContext(name, timeout)
        started = time.monotonic()
        run = self._run_changes if changes else self._run
        future = self.pool.submit(run, event, context)
        error: str | None = None
        try:
            result, thread = future.result(timeout=timeout)
            body: Any = result
            outcome = self.capture.by_thread.pop(thread, {})
        except FutureTimeout:
            error = "Unhandled"
            body = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"{datetime.now(UTC).isoformat()} {context.aws_request_id} "
                f"Task timed out after {timeout:.2f} seconds",
            }
            outcome = {}
        except Exception as exc:
            error = "Unhandled"
            body = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
            outcome = {}
        duration = (time.monotonic() - started) * 1000
        headers = {"X-Amz-Executed-Version": "$LATEST", "X-Amz-Request-Id": context.aws_request_id}
        if error:
            headers["X-Amz-Function-Error"] = error
        entry = {
            "time": datetime.now(UTC).isoformat(),
            "function": name,
            "request_id": context.aws_request_id,
            "trigger_source": _source(event),
            "user_id": _user_id(event),
            "duration_ms": round(duration, 1),
            "function_error": error,
            "error_type": body.get("errorType") if error else None,
            "outcome": outcome.get("outcome"),
            "error_code": outcome.get("error_code"),
        }
        with _LOCK:
            init = self.cold.pop(name, None)
        if init is not None:
            entry["init_duration_ms"] = round(init, 1)
        return 200, headers, body, entry

    def _run(self, event: Any, context: FakeContext) -> tuple[Any, int]:
        return self.handler(as_cognito_would(event), context), threading.get_ident()

    def _run_changes(self, event: Any, context: FakeContext) -> tuple[Any, int]:
        from livekart_users import changes

        self._configure_changes()
        return changes.handler(event, context), threading.get_ident()  # type: ignore[arg-type]

    def _configure_changes(self) -> None:
        """USER_POOL_ID, as deploy sets it on the function: the stack's pool."""
        import os

        if os.environ.get("USER_POOL_ID") or not self.changes_pool_name:
            return
        for pool in _cognito().list_user_pools(MaxResults=60).get("UserPools", []):
            if pool.get("Name") == self.changes_pool_name:
                os.environ["USER_POOL_ID"] = str(pool["Id"])
                return

    def write_record(self, entry: dict[str, Any]) -> None:
        with _LOCK, private.open_file(self.record, "a") as out:
            out.write(json.dumps(entry) + "\n")


def _source(event: Any) -> str | None:
    """A trigger's source, or a change event's call name."""
    if not isinstance(event, dict):
        return None
    detail = event.get("detail")
    value = detail.get("eventName") if isinstance(detail, dict) else event.get("triggerSource")
    return value if isinstance(value, str) else None


def _user_id(event: Any) -> str | None:
    try:
        value = event["request"]["userAttributes"]["sub"]
    except (KeyError, TypeError):
        try:
            value = event["detail"]["additionalEventData"]["sub"]
        except (KeyError, TypeError):
            return None
    return value if isinstance(value, str) else None


class _RequestHandler(BaseHTTPRequestHandler):
    server: InvokeServer
    timeout = loopback.READ_TIMEOUT  # a client that sends nothing frees its thread

    def _refused(self) -> bool:
        """Answer 403 to a request from a web page, or sent to a name that is not loopback.

        Browsers send Origin; cognito-local, our only caller, does not: no origin is allowed.
        Without this a web page could run the trigger with a forged event (a form POST needs
        no CORS), directly or through DNS rebinding (see loopback).
        """
        why = loopback.refusal(self.headers.get("Host"), self.headers.get("Origin"))
        if why is None:
            return False
        self._reply(
            403, {"x-amzn-ErrorType": "AccessDeniedException"}, {"Type": "User", "Message": why}
        )
        return True

    def do_POST(self) -> None:
        if self._refused():
            return
        match = _PATH.match(self.path.split("?")[0])
        # The name may come as an ARN (URL-encoded in the path); Lambda takes either.
        name = urllib.parse.unquote(match.group(1)).split(":")[-1] if match else None
        if not self.server.serves(name):
            self._reply(
                404,
                {"x-amzn-ErrorType": "ResourceNotFoundException"},
                {"Type": "User", "Message": f"Function not found: {name or self.path}"},
            )
            return
        length = loopback.body_length(self.headers.get("Content-Length"))
        if length is None:
            self.close_connection = True  # the body's end is unknown: nothing more to read
            self._reply(
                400,
                {"x-amzn-ErrorType": "InvalidRequestContentException"},
                {"Type": "User", "Message": "Content-Length is not a length up to 6 MB"},
            )
            return
        try:
            event = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            self._reply(
                400,
                {"x-amzn-ErrorType": "InvalidRequestContentException"},
                {"Type": "User", "Message": "Could not parse request body into json"},
            )
            return
        status, headers, body, entry = self.server.invoke(event, name)
        self.server.write_record(entry)
        self._reply(status, headers, body)

    def do_GET(self) -> None:
        if self._refused():
            return
        self._reply(200, {}, {"function": self.server.function, "ready": True})

    def _reply(self, status: int, headers: dict[str, str], body: Any) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the invocation record says what happened; request lines would only add noise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--timeout", type=float, default=4.0)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--changes-function", default=None)
    parser.add_argument("--changes-pool-name", default=None)
    args = parser.parse_args(argv)
    started = time.monotonic()
    warm_up()
    server = InvokeServer(
        args.port,
        args.function,
        args.timeout,
        args.record,
        changes_function=args.changes_function,
        changes_pool_name=args.changes_pool_name,
        init_ms=(time.monotonic() - started) * 1000,
    )
    server.serve_forever()


def warm_up() -> None:
    """Lambda's init phase, before the port opens (the stack waits for it to listen).

    Without it, a burst of sign-ups just after `up` had every worker build its own clients
    at once, under one GIL, inside the function's timeout (16 at once: 3 timed out).
    """
    _cognito()
    # The handler's init builds its own client from this process's environment, as Lambda's
    # init would, so that every invocation finds it built.
    import livekart_users.triggers  # noqa: F401

    # The change function too: its first event (a user's first change after `up`) was a
    # cold start of 2.2 s under load, past the 2 s in which the row should follow.
    from livekart_users import changes

    changes.clients()


if __name__ == "__main__":
    main()
