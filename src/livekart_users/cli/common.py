"""What every command shares: consoles, and turning library errors into one clear line."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from rich.console import Console

from livekart_users.exceptions import LivekartUsersError

# Width: COLUMNS when set (also when output is piped), else the terminal's, else 80. What
# does not fit is laid out in lines rather than folded (see render.py).
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(command: F) -> F:
    """Library errors become one red line and exit status 1; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (LivekartUsersError, ClientError, BotoCoreError) as exc:
            if click.get_current_context().find_root().params.get("debug"):
                raise
            errors.print(f"[red]error:[/red] {_explain(exc)}", highlight=False)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _explain(exc: Exception) -> str:
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found: configure a profile or set AWS_PROFILE"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return str(exc)
