"""The stack's Cognito endpoint: a loopback proxy in front of cognito-local, one write at a time.

cognito-local keeps each pool in one JSON file and rewrites the whole file on every write with
a plain `fs.writeFile` (truncate, then write). Two writes that overlap interleave: the file
ends with the tail of the longer one ("trailing garbage"), and cognito-local then refuses to
start (`Failed to load StormDB database file`). Each request awaits its own writes before it
answers, so letting one state-changing request through at a time keeps writes from
overlapping. Reads (Describe*, List*, Get*) pass concurrently.

Stages of one request: read it; if it may write, take the write lock; forward it to
cognito-local unchanged; answer with cognito-local's answer; then, for a successful request
and still inside the lock (so hooks see writes in the order they happened), call each
`after` hook with the `Exchange`. A hook that fails is logged and never changes the answer.

A trigger fired by a write (ConfirmSignUp -> PostConfirmation) runs while that write holds
the lock: what the trigger's endpoint sends to Cognito must go to cognito-local directly, not
through here, or it would wait for the lock its own caller holds.

Run: python -m livekart_users.local.cognito_proxy --port N --upstream-port M
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from livekart_users.local import loopback

log = logging.getLogger(__name__)

# Operations that only read (with or without the Admin prefix). Anything else may write:
# InitiateAuth, for one, stores a refresh token on the user.
READ_PREFIXES = ("Describe", "List", "Get")
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
}


@dataclass(frozen=True)
class Exchange:
    """One request through the proxy and cognito-local's answer, as hooks see it."""

    method: str
    path: str
    operation: str | None  # from X-Amz-Target, e.g. "SignUp"; None for plain HTTP (jwks)
    request_headers: dict[str, str]
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status < 300


AfterHook = Callable[[Exchange], None]


def header(headers: Any, name: str) -> str | None:
    """The value of header `name`, whatever the case of its name in `headers` (RFC 9110 5.1).

    Amplify and the AWS SDK for JavaScript v3 send `x-amz-target`, botocore `X-Amz-Target`.
    """
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def operation(headers: Any) -> str | None:
    """The API operation named by `X-Amz-Target: AWSCognitoIdentityProviderService.<Op>`."""
    target = header(headers, "X-Amz-Target") or ""
    return target.rpartition(".")[2] or None


def may_write(method: str, name: str | None) -> bool:
    if name is None:
        return method not in ("GET", "HEAD", "OPTIONS")
    return not name.removeprefix("Admin").startswith(READ_PREFIXES)


class CognitoProxy(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog is 5: a burst of sign-ups beyond it had connections
    # reset before a thread could take them.
    request_queue_size = 128

    def __init__(
        self,
        port: int,
        upstream_port: int,
        *,
        after: Sequence[AfterHook] = (),
        upstream_timeout: float = 60.0,
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.upstream_timeout = upstream_timeout
        self.after: list[AfterHook] = list(after)
        self.write_lock = threading.Lock()
        self.allowed_origins = loopback.allowed_origins()
        super().__init__(("127.0.0.1", port), _Handler)

    def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Exchange:
        name = operation(headers)
        lock = self.write_lock if may_write(method, name) else contextlib.nullcontext()
        with lock:
            status, answer_headers, answer = self._forward(method, path, headers, body)
            done = Exchange(method, path, name, headers, body, status, answer_headers, answer)
            if done.succeeded:
                for hook in self.after:
                    try:
                        hook(done)
                    except Exception:
                        log.exception("after-request hook %r failed", hook)
        return done

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=self.upstream_timeout)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            sent["Content-Length"] = str(len(body))
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            data = response.read()
            # This server sends its own Date and Server headers.
            dropped = HOP_BY_HOP | {"date", "server"}
            kept = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
            return response.status, kept, data
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: CognitoProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints do

    timeout = loopback.READ_TIMEOUT  # a client that sends nothing frees its thread

    def _relay(self) -> None:
        # A DNS-rebinding page (Host: its own name) or a page of an origin not allowed is
        # refused here, before anything reaches cognito-local (see loopback).
        why = loopback.refusal(
            self.headers.get("Host"), self.headers.get("Origin"), self.server.allowed_origins
        )
        if why is not None:
            self._answer(403, {"Content-Type": "text/plain"}, why.encode() + b"\n")
            return
        length = loopback.body_length(self.headers.get("Content-Length"))
        if length is None:
            self.close_connection = True  # the body's end is unknown: nothing more to read
            message = b'{"__type": "SerializationException", "message": "bad Content-Length"}'
            self._answer(400, {"Content-Type": "application/json"}, message)
            return
        body = self.rfile.read(length) if length else b""
        try:
            done = self.server.exchange(self.command, self.path, dict(self.headers.items()), body)
        except OSError as exc:
            self._answer(502, {"Content-Type": "application/json"}, _error(exc))
            return
        self._answer(done.status, done.response_headers, done.response_body)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _relay

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _error(exc: OSError) -> bytes:
    return (
        '{"__type": "ServiceUnavailable", "message": "cognito-local did not answer: '
        + str(exc).replace('"', "'")
        + '"}'
    ).encode()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    from livekart_users.local import change_events

    change_events.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Local CloudTrail: each successful user change becomes a change event for the change
    # function, delivered by the hook (in order, while the write lock is held).
    after = change_events.hooks(args, args.upstream_port)
    CognitoProxy(args.port, args.upstream_port, after=after).serve_forever()


if __name__ == "__main__":
    main()
