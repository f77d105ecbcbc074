"""What every command shares: consoles, one clear line per error, and a spinner while AWS is
slow to answer."""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import urlsplit

import click
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from livekart_users import aws
from livekart_users.cli.visible_text import visible
from livekart_users.exceptions import LivekartUsersError

if TYPE_CHECKING:
    from rich.console import Console


class _LazyConsole:
    """A rich Console made on first use: a command that prints only JSON, or nothing, never
    imports rich (≈ 40 ms of its start)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
            # rich fixes COLUMNS when a console is made; read it (or the terminal) at each
            # print instead, as a console made at import would (tests change it per command).
            self._console._width = None
        return getattr(self._console, name)


# Width: COLUMNS when set (also when output is piped), else the terminal's, else 80. What
# does not fit is laid out in lines rather than folded (see render.py).
console = cast("Console", _LazyConsole())
errors = cast("Console", _LazyConsole(stderr=True, soft_wrap=True))  # an error is one line
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Library errors become one red line and exit status 1; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (LivekartUsersError, ClientError, BotoCoreError, OSError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            # soft_wrap: an error is one line, however narrow the terminal (or log) is.
            from rich.markup import escape

            # The message may quote user data: shown as text (visible_text), never as markup.
            message = escape(visible(explain(exc)))
            errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def write_output(path: Path, data: bytes, what: str, option: str = "-o") -> None:
    """Write a command's output file, or fail with one line saying why and what to do."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(
            f"cannot write {what} to {path}: {exc.strerror or exc}; "
            f"give {option} a path in a folder you can write to"
        ) from None


def explain(exc: Exception) -> str:
    """One line: what went wrong and what to do."""
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found: configure a profile or set AWS_PROFILE"
    if isinstance(exc, ReadTimeoutError | ConnectTimeoutError | EndpointConnectionError):
        return _unreachable(exc)
    # A library error that wraps one (doctor's CannotRun): the endpoint is what to name.
    if isinstance(exc.__cause__, ReadTimeoutError | ConnectTimeoutError | EndpointConnectionError):
        return _unreachable(exc.__cause__)
    if isinstance(exc, OSError) and exc.strerror:
        # A file or folder we were given cannot be used (read-only, missing, a file...).
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return str(exc)


def _unreachable(exc: BotoCoreError) -> str:
    url = _endpoint(str(exc.kwargs.get("endpoint_url") or "AWS"))
    if isinstance(exc, EndpointConnectionError):
        return f"cannot connect to {url}: check the network, the region and AWS_ENDPOINT_URL_*"
    what = (
        f"no answer from {url}" if isinstance(exc, ReadTimeoutError) else f"cannot connect to {url}"
    )
    return (
        f"{what} within {aws.cli_budget():g} s: check the network and AWS_ENDPOINT_URL_*, "
        f"or set {aws.CLI_BUDGET_ENV} to wait longer"
    )


def _endpoint(url: str) -> str:
    """The scheme, host and port a request went to (its path and query say nothing more)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else url


class WaitingForAws:
    """A spinner on stderr, naming the endpoint, while an AWS call has waited `after` s.

    Hooked on the command's one session (`aws.one_session(prepare=...)`): botocore announces
    each attempt (`before-send`) and its end (`needs-retry`, after every attempt). Shown only
    on a terminal, so pipes and CI logs stay clean.
    """

    def __init__(self, console: Console, *, after: float = 1.0, tick: float = 0.2) -> None:
        self._console = console
        self._after = after
        self._tick = tick
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[float, str]] = {}
        self._status: Any = None
        self._watcher: threading.Thread | None = None

    def hook(self, session: Any) -> None:
        if not self._console.is_terminal:
            return
        session.events.register("before-send", self._sent, unique_id="livekart-users-waiting")
        # A call has ended when it returns or raises (after-call / after-call-error, once per
        # call); needs-retry marks an attempt that ended with no retry to follow.
        for event in ("needs-retry", "after-call", "after-call-error"):
            session.events.register(event, self._ended, unique_id=f"livekart-users-{event}")

    def _sent(self, request: Any = None, **_: Any) -> None:
        url = _endpoint(str(getattr(request, "url", "") or "AWS"))
        with self._lock:
            self._waiting[threading.get_ident()] = (time.monotonic(), url)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, daemon=True)
                self._watcher.start()

    def _ended(self, **_: Any) -> None:
        with self._lock:
            self._waiting.pop(threading.get_ident(), None)
            if not self._waiting:
                self._show(None)

    def _watch(self) -> None:
        while True:
            time.sleep(self._tick)
            with self._lock:
                oldest = min(self._waiting.values(), default=None)
                if oldest is None or time.monotonic() - oldest[0] < self._after:
                    self._show(None)
                else:
                    waited = time.monotonic() - oldest[0]
                    self._show(f"waiting for {oldest[1]} ({waited:.0f} s)")

    def _show(self, text: str | None) -> None:
        """Start, update or stop the spinner (lock held)."""
        if text is None:
            if self._status is not None:
                self._status.stop()
                self._status = None
        elif self._status is None:
            self._status = self._console.status(text, spinner="dots")
            self._status.start()
        else:
            self._status.update(text)
