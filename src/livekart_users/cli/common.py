"""What every command shares: consoles, and turning library errors into one clear line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console

from livekart_users.exceptions import LivekartUsersError

# Records are wide: when output is not a terminal (make, CI logs), do not fold them to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
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
            errors.print(f"[red]error:[/red] {_explain(exc)}", highlight=False, soft_wrap=True)
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


def _explain(exc: Exception) -> str:
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found: configure a profile or set AWS_PROFILE"
    if isinstance(exc, OSError) and exc.strerror:
        # A file or folder we were given cannot be used (read-only, missing, a file...).
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return str(exc)
