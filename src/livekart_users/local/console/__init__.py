"""The local console: the pool and the table side by side, in the browser.

`livekart-users local console` serves one page (shipped in `static/`, no build step) for the
running local stack: the users view (`users_view`), the activity (`activity`), the actions
(`actions`), behind the guards of `server`. `open_console` checks that everything it would
reach is the local stack before it starts.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from livekart_users.exceptions import LocalStackError

if TYPE_CHECKING:
    from livekart_users.local.console.server import Running
    from livekart_users.local.stack import LocalStack

# Variables that would point an AWS client somewhere else than the stack's endpoints.
_ENDPOINT_VARIABLES = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
)


class ConsoleRefused(LocalStackError):
    """The console will not start: what it would reach is not (only) the local stack."""


def check_environment(stack: LocalStack, environ: dict[str, str] | None = None) -> None:
    """Refuse an environment whose endpoints point anywhere but this stack.

    The console reads and writes personal data and deletes users: an endpoint variable left
    pointing at AWS (or another stack) is a mistake to stop, not to override silently.
    """
    from livekart_users.local.console.server import is_loopback

    environ = dict(os.environ) if environ is None else environ
    mine = stack.environment()
    for variable in _ENDPOINT_VARIABLES:
        value = environ.get(variable)
        if not value:
            continue
        expected = mine.get(variable)
        if (expected is None and not is_loopback(value)) or (
            expected is not None and value.rstrip("/") != expected
        ):
            raise ConsoleRefused(
                f"{variable}={value} points elsewhere than this local stack "
                f"({expected or 'a loopback address'}): the console works on the local stack "
                f'only; unset it, or load the stack\'s: eval "$(livekart-users local env)"'
            )


def open_console(
    stack: LocalStack, *, port: int = 0, environ: dict[str, str] | None = None
) -> Running:
    """Start the console for this running stack, in a thread; it serves until stopped."""
    from livekart_users import aws
    from livekart_users.local.console import actions, server
    from livekart_users.local.console.activity import Activity
    from livekart_users.local.stack import CONFIRMATION_CODE
    from livekart_users.table import UsersTable

    check_environment(stack, environ)
    status = stack.status()
    if not status.all_running or not status.user_pool_id or not status.client_id:
        raise LocalStackError(
            f"the local stack in {stack.dir} is not running: start it with "
            "`livekart-users local up` (and `local demo` for sample users)"
        )
    stack.use()
    cognito = aws.client("cognito-idp")
    dynamodb = aws.client("dynamodb")
    for client in (cognito, dynamodb):
        if not server.is_loopback(client.meta.endpoint_url):
            raise ConsoleRefused(
                f"{client.meta.service_model.service_name} would be reached at "
                f"{client.meta.endpoint_url}, not the local stack: the console refuses to start"
            )
    target = actions.Stack(
        cognito=cognito,
        table=UsersTable(dynamodb, stack.settings.table),
        user_pool_id=status.user_pool_id,
        client_id=status.client_id,
        confirmation_code=CONFIRMATION_CODE,
    )
    # The stack's Cognito endpoint keeps the pool's listing until the next write: reading it
    # now lets the page open at once, however large the pool.
    cognito.list_users(UserPoolId=status.user_pool_id, Limit=1)
    return server.serve(target, Activity(stack.record_file), port=port)
