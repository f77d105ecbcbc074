"""The stack's Cognito endpoint: a loopback proxy in front of cognito-local, one write at a time.

cognito-local keeps each pool in one JSON file and rewrites the whole file on every write with
a plain `fs.writeFile` (truncate, then write). Two writes that overlap interleave: the file
ends with the tail of the longer one ("trailing garbage"), and cognito-local then refuses to
start (`Failed to load StormDB database file`). Each request awaits its own writes before it
answers, so letting one state-changing request through at a time keeps writes from
overlapping. Reads (Describe*, List*, Get*) pass concurrently.

Stages of one request: read it; if it may write, take the write lock; answer it here if
`sign_in` does (USER_SRP_AUTH, disabled users: what cognito-local does not do as Cognito
does), else forward it to cognito-local unchanged and answer with cognito-local's answer;
then, for a successful request, queue it (still inside the lock, so in the order the writes
happened) for the `after` hooks, which one thread calls with each `Exchange` in turn. The
caller gets its answer at once and the next write does not wait for the hooks; `drain()`
waits until they have seen everything queued. A hook that fails is logged and never
changes the answer.

Speed: header names are matched case-insensitively (SDK v3 and Amplify send
`x-amz-target`); Nagle's algorithm is off on both sides (an answer written as head then body
otherwise waits for the client's delayed ACK, ~40 ms); connections to cognito-local are kept
alive. bench/cognito_endpoint.py measures it against cognito-local itself.

A trigger fired by a write (ConfirmSignUp -> PostConfirmation) runs while that write holds
the lock: what the trigger's endpoint sends to Cognito must go to cognito-local directly, not
through here, or it would wait for the lock its own caller holds.

Run: python -m livekart_users.local.cognito_proxy --port N --upstream-port M
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from livekart_users.local import list_users_pages, loopback, sign_in

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
        cognito_db: Path | None = None,
        page_list_users: bool = False,
    ) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.upstream_timeout = upstream_timeout
        self._connections = Upstream(self.upstream, upstream_timeout)
        self.after: list[AfterHook] = list(after)
        self.write_lock = threading.Lock()
        self._done: queue.Queue[Exchange] = queue.Queue()
        threading.Thread(target=self._run_hooks, name="proxy-hooks", daemon=True).start()
        self.allowed_origins = loopback.allowed_origins()
        # What cognito-local cannot answer as Cognito would (SRP sign-in, disabled users).
        self.sign_in = sign_in.SignIn(cognito_db, self.call) if cognito_db else None
        # ListUsers in pages of at most 60, as Cognito answers it (cognito-local answers all).
        self.pages = (
            list_users_pages.ListUsersPages(self.call, cognito_db) if page_list_users else None
        )
        super().__init__(("127.0.0.1", port), _Handler)

    def exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        reply: Callable[[Exchange], None] | None = None,
    ) -> Exchange:
        """Forward one request; `reply` sends the answer (the hooks see it later, in order)."""
        name = operation(headers)
        writes = may_write(method, name)
        lock = self.write_lock if writes else contextlib.nullcontext()
        with lock:
            if writes and self.pages is not None:
                self.pages.changed()
            here = self._answer_here(name, body) if method == "POST" else None
            if here is None and self.pages is not None and method == "POST":
                here = self.pages.answer(name, body)
            if here is not None:
                status, answer_headers, answer = here
                origin = header(headers, "Origin")
                if origin:  # it passed the origin guard: a web app the user allowed
                    answer_headers = {
                        **answer_headers,
                        "Access-Control-Allow-Origin": origin,
                        "Vary": "Origin",
                    }
            else:
                status, answer_headers, answer = self._forward(method, path, headers, body)
            if writes and self.pages is not None:
                self.pages.changed()  # what the write (and any trigger it ran) changed
            done = Exchange(method, path, name, headers, body, status, answer_headers, answer)
            if done.succeeded and self.after:
                self._done.put(done)  # inside the lock: in the order the writes happened
        if reply is not None:
            reply(done)
        return done

    def _answer_here(self, name: str | None, body: bytes) -> sign_in.Answer | None:
        if self.sign_in is None:
            return None
        try:
            return self.sign_in.answer(name, body)
        except Exception:  # a bug here must not leave the caller without an answer
            log.exception("sign-in answer failed for %s", name)
            return sign_in.error("InternalErrorException", "the local stack failed", 500)

    def drain(self) -> None:
        """Wait until the hooks have seen every request answered so far."""
        self._done.join()

    def _run_hooks(self) -> None:
        while True:
            done = self._done.get()
            for hook in self.after:
                try:
                    hook(done)
                except Exception:
                    log.exception("after-request hook %r failed", hook)
            self._done.task_done()

    def server_close(self) -> None:
        super().server_close()
        self._connections.close()

    def call(self, name: str, request: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Call operation `name` on cognito-local itself (not through the write lock)."""
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"AWSCognitoIdentityProviderService.{name}",
        }
        return self._forward("POST", "/", headers, json.dumps(request).encode())

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
        sent["Content-Length"] = str(len(body))
        connection, reused = self._connections.take()
        try:
            try:
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                if not reused:
                    raise
                # cognito-local closed the idle connection as the request went out, so it
                # never read it: send it once more on a new connection.
                connection.close()
                connection, reused = self._connections.take(fresh=True)
                connection.request(method, path, body=body, headers=sent)
                response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            raise
        if response.will_close:
            connection.close()
        else:
            self._connections.give_back(connection)
        # This server sends its own Date and Server headers.
        dropped = HOP_BY_HOP | {"date", "server"}
        kept = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
        return response.status, kept, data


class Upstream:
    """Kept-alive connections to cognito-local (a connection per request cost a connect and
    a close on every call), with Nagle's algorithm off as on the client side."""

    # Node's HTTP server closes a connection after 5 s idle (keepAliveTimeout): one idle
    # for longer here is dropped before it can race that close.
    IDLE_SECONDS = 2.0

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._idle: list[tuple[float, http.client.HTTPConnection]] = []
        self._lock = threading.Lock()

    def take(self, fresh: bool = False) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it served a request before."""
        now = time.monotonic()
        with self._lock:
            while self._idle and not fresh:
                since, connection = self._idle.pop()
                if now - since < self.IDLE_SECONDS:
                    return connection, True
                connection.close()
        connection = http.client.HTTPConnection(*self.address, timeout=self.timeout)
        connection.connect()
        assert connection.sock is not None
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, False

    def give_back(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.append((time.monotonic(), connection))

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, connection in idle:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    server: CognitoProxy
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints do

    timeout = loopback.READ_TIMEOUT  # a client that sends nothing frees its thread
    # A buffered wfile: an answer's head and body go out in one write, one segment, one
    # wake-up of the client (unbuffered, the head went alone).
    wbufsize = -1

    def setup(self) -> None:
        super().setup()
        # The answer goes out as two writes (head, then body): with Nagle's algorithm the
        # body waits for the ACK of the head, which a client delays by up to 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
            self.server.exchange(
                self.command, self.path, dict(self.headers.items()), body, reply=self._reply
            )
        except OSError as exc:
            self._answer(502, {"Content-Type": "application/json"}, _error(exc))

    def _reply(self, done: Exchange) -> None:
        try:
            self._answer(done.status, done.response_headers, done.response_body)
        except OSError:  # the caller went away: the hooks still see what cognito-local did
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _relay

    def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()  # head and body leave together (see wbufsize)

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
    parser.add_argument("--cognito-db", type=Path, help="cognito-local's data folder (.cognito/db)")
    parser.add_argument(
        "--page-list-users", action="store_true", help="answer ListUsers in pages, as Cognito"
    )
    from livekart_users.local import change_events

    change_events.add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Local CloudTrail: each successful user change becomes a change event for the change
    # function, delivered by the hook (in the order the writes happened).
    after = change_events.hooks(args, args.upstream_port)
    CognitoProxy(
        args.port,
        args.upstream_port,
        after=after,
        cognito_db=args.cognito_db,
        page_list_users=args.page_list_users,
    ).serve_forever()


if __name__ == "__main__":
    main()
