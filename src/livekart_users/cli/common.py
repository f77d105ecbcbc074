"""What every command shares: the options that name the pool, table, region, function and
local stack (declared once, so each has one name, one variable and one help text everywhere),
consoles, one clear line (or one JSON object) per error, and a spinner while AWS is slow to
answer."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast
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
from livekart_users.table import DEFAULT_TABLE

if TYPE_CHECKING:
    from rich.console import Console

    from livekart_users.local.stack import LocalStack


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


# --- the shared options ----------------------------------------------------------------------
# Each option that names where a command works is declared here only. Environment variables
# are the same as the library's and `local env`'s exports.
POOL_ENV = "LIVEKART_USER_POOL_ID"
TABLE_ENV = "USERS_TABLE"
FUNCTION_ENV = "LIVEKART_FUNCTION"
LOCAL_DIR_ENV = "LIVEKART_LOCAL_DIR"
DEFAULT_FUNCTION = "livekart-post-confirmation-trigger"  # deploy.models' (not imported: slow)
LOCAL_DEFAULT = "; against the local stack, its own"


def user_pool_option(*, required: bool = False, local: bool = True) -> Callable[[F], F]:
    """--user-pool-id. Where the local stack can supply it (`local`), it is not required
    here: `resolve_pool` asks for it when neither the flag, the variable nor a stack has one."""
    return click.option(
        "--user-pool-id",
        metavar="POOL",
        envvar=POOL_ENV,
        required=required,
        help=f"The Cognito user pool, e.g. us-east-1_AbCdEfGhI "
        f"[env {POOL_ENV}{LOCAL_DEFAULT if local else ''}].",
    )


def table_option(*, local: bool = True) -> Callable[[F], F]:
    return click.option(
        "--table",
        metavar="NAME",
        envvar=TABLE_ENV,
        default=None,
        help=f"The users table [env {TABLE_ENV}; default {DEFAULT_TABLE}"
        f"{LOCAL_DEFAULT if local else ''}].",
    )


def region_option(command: F) -> F:
    return click.option(
        "--region",
        metavar="REGION",
        default=None,
        help="The AWS region [default: AWS_REGION, AWS_DEFAULT_REGION, the profile's, the pool "
        "id's prefix, else us-east-1].",
    )(command)


def function_option(command: F) -> F:
    return click.option(
        "--function-name",
        metavar="NAME",
        envvar=FUNCTION_ENV,
        default=None,
        help=f"The trigger function [env {FUNCTION_ENV}; default {DEFAULT_FUNCTION}].",
    )(command)


def local_dir_option(name: str = "local_dir") -> Callable[[F], F]:
    """The local stack's folder: `--dir` in the `local` group, `--local-dir` elsewhere; both
    names are accepted everywhere."""
    names = ("--dir", "--local-dir") if name == "directory" else ("--local-dir", "--dir")
    return click.option(
        *names,
        name,
        type=click.Path(path_type=Path),
        default=None,
        help=f"The local stack's folder, as given to `local up --dir` [env {LOCAL_DIR_ENV}; "
        "default .local-stack]. Other commands use the stack when given it, or when "
        "`local env`'s variables point at it.",
    )


def erasure_policy_option(command: F) -> F:
    """--erasure-policy: its choices and default are the library's."""
    from livekart_users import erasure

    return click.option(
        "--erasure-policy",
        envvar=erasure.ENVIRONMENT_VARIABLE,
        type=click.Choice([str(p) for p in erasure.Policy], case_sensitive=False),
        default=str(erasure.DEFAULT_POLICY),
        show_default=True,
        help="What erasing a deleted user's row does: anonymize (remove personal fields, keep "
        f"app data), delete (the row goes) or keep (only mark it) [env "
        f"{erasure.ENVIRONMENT_VARIABLE}].",
    )(command)


def extra_fields_option(command: F) -> F:
    """--extra-fields, checked as it is parsed: a bad value names the flag or the variable
    it came from, before anything starts."""
    return click.option(
        "--extra-fields",
        envvar="USERS_EXTRA_FIELDS",
        default=None,
        metavar="JSON",
        callback=_valid_extra_fields,
        help="Extra record fields with defaults for the rows created, e.g. "
        '\'{"subscriptionTier": "free"}\' [env USERS_EXTRA_FIELDS].',
    )(command)


def _valid_extra_fields(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    from livekart_users import schema
    from livekart_users.exceptions import InvalidExtraFields

    try:
        schema.parse_extra_fields(value)
    except InvalidExtraFields as exc:
        source = ctx.get_parameter_source(param.name or "")
        named = "USERS_EXTRA_FIELDS" if source is click.core.ParameterSource.ENVIRONMENT else ""
        raise click.BadParameter(f"{named} {exc.reason}".strip(), ctx, param) from None
    return value


def json_option(help_text: str) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help_text)


def stack_in_use(local_dir: Path | None) -> LocalStack | None:
    """The local stack this command works against (its clients pointed at it), if any.

    Looked for only when asked (`--local-dir`) or when an endpoint variable says an emulator
    is in use, so a command against AWS never imports the local stack."""
    if local_dir is None and not (
        os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER")
        or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    ):
        return None
    from livekart_users.local import current

    stack = current.in_use(local_dir)
    if stack is not None and local_dir is not None:
        stack.use()
    return stack


def resolve_table(table: str | None, local_dir: Path | None = None) -> str:
    """--table > USERS_TABLE > the local stack's > livekart-users."""
    if local_dir is not None:
        stack = stack_in_use(local_dir)
    elif table:
        return table
    else:
        try:
            stack = stack_in_use(None)
        except LivekartUsersError:
            # Endpoints of some other emulator (moto, LocalStack): no stack of ours to ask.
            return DEFAULT_TABLE
    if table:
        return table
    if stack is None:
        return DEFAULT_TABLE
    from livekart_users.local import current

    return current.defaults(stack).table or DEFAULT_TABLE


def resolve_pool(user_pool_id: str | None, local_dir: Path | None = None) -> str:
    """--user-pool-id > LIVEKART_USER_POOL_ID > the local stack's; else a usage error."""
    stack = stack_in_use(local_dir) if local_dir is not None or not user_pool_id else None
    if user_pool_id:
        return user_pool_id
    from livekart_users.local import current

    found = current.defaults(stack).user_pool_id
    if not found:
        raise click.UsageError(
            f"--user-pool-id is needed (or {POOL_ENV}); against the local stack, load its "
            'variables first: eval "$(livekart-users local env)"'
        )
    return found


# --- errors ------------------------------------------------------------------------------


def wants_json() -> bool:
    """The command running was given --json: its failure is then a JSON object on stdout."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def command_name() -> str:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ""
    return " ".join(ctx.command_path.split()[1:])  # without the program's name


def json_error(message: str, exit_code: int, command: str | None = None) -> str:
    """The one object a failed `--json` command prints on stdout (README: Output)."""
    return json.dumps(
        {
            "command": command_name() if command is None else command,
            # `status` as doctor's report has it, `outcome` as deploy's: either one tells.
            "status": "error",
            "outcome": "failed",
            "error": message,
            "exit_code": exit_code,
        },
        sort_keys=True,
    )


def fail(message: str, *, label: str = "error", exit_code: int = 1) -> NoReturn:
    """One red line on stderr (and, with --json, one JSON object on stdout), then exit."""
    from rich.markup import escape

    if wants_json():
        click.echo(json_error(message, exit_code))
    # soft_wrap: an error is one line, however narrow the terminal (or log) is. The message
    # may quote user data: shown as text (visible_text), never as markup.
    shown = escape(visible(message))
    errors.print(f"[red]{label}:[/red] {shown}", highlight=False, soft_wrap=True)
    sys.exit(exit_code)


def debugging() -> bool:
    """--debug was given: before the command's name or after it."""
    ctx = click.get_current_context()
    return bool(ctx.find_root().params.get("debug") or ctx.meta.get(_DEBUG))


_DEBUG = "livekart_users.debug"


def _debug_given(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_DEBUG] = True  # meta is shared by every context of the invocation


def friendly_errors(command: F) -> F:
    """Library errors become one red line and exit status 1; tracebacks only with --debug
    (which every command takes too, as the last option). With --json, stdout carries one
    JSON object saying what failed, also for usage errors found in the command."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (LivekartUsersError, ClientError, BotoCoreError, OSError) as exc:
            if debugging():
                raise
            fail(explain(exc))
        except click.ClickException as exc:
            if wants_json():
                click.echo(json_error(exc.format_message(), exc.exit_code))
                exc.json_printed = True  # type: ignore[attr-defined]
            raise

    debug = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_debug_given,
        help="Show tracebacks for errors.",
    )
    return debug(wrapper)  # type: ignore[return-value]


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
