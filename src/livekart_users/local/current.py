"""The local stack a command should use, and what it supplies by default.

A command works against the local stack when it is given `--local-dir`, or when the
environment's Cognito or DynamoDB endpoint (`AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`,
`AWS_ENDPOINT_URL_DYNAMODB`, as `local env` exports them) is a stack's. Which stack: the
folder of `--local-dir`, else `LIVEKART_LOCAL_DIR` (also exported by `local env`), else
`.local-stack`. Its pool and table then serve as the defaults of `--user-pool-id` and
`--table`, so after `eval "$(livekart-users local env --dir X)"` no command needs either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from livekart_users.exceptions import LocalStackError
from livekart_users.local.stack import LocalStack, Settings

# The variables `local env` exports beside the SDKs' endpoints: what our own commands read.
DIR_ENV = "LIVEKART_LOCAL_DIR"
POOL_ENV = "LIVEKART_USER_POOL_ID"
# The endpoints that say "this process talks to an emulator", in the order they are checked.
_ENDPOINTS = (
    ("AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER", "cognito-idp"),
    ("AWS_ENDPOINT_URL_DYNAMODB", "dynamodb"),
)


@dataclass(frozen=True)
class Defaults:
    """What the stack in use supplies to options left out."""

    user_pool_id: str | None
    table: str | None


def in_use(
    directory: Path | None = None, environ: Mapping[str, str] | None = None
) -> LocalStack | None:
    """`directory`'s stack, or the one the environment's endpoints belong to; None when the
    environment points at AWS. Raises LocalStackError when a stack is named but not there."""
    env = os.environ if environ is None else environ
    if directory is not None:
        stack = LocalStack(Settings(directory=directory))
        stack.refuse_a_file()
        if not stack.status().user_pool_id:
            raise LocalStackError(
                f"no local stack in {stack.dir}: start one with `livekart-users local up "
                f"--dir {directory}`"
            )
        return stack
    pointed = [(env[name], service) for name, service in _ENDPOINTS if env.get(name)]
    if not pointed:
        return None
    named = env.get(DIR_ENV)
    stack = LocalStack(Settings(directory=Path(named) if named else Path(".local-stack")))
    endpoint, service = pointed[0]
    if stack.status().user_pool_id and stack.endpoints()[service] == endpoint.rstrip("/"):
        return stack
    if service == "dynamodb":
        return None  # a DynamoDB Local of its own (the tests', say): no stack to default from
    variable = _ENDPOINTS[0][0]
    raise LocalStackError(
        f"{variable} points at {endpoint}, but the local stack in {stack.dir} does not run "
        f"there: pass --local-dir (the folder of `local up --dir`), or load the stack's "
        f'variables: eval "$(livekart-users local env --dir FOLDER)"'
    )


def defaults(stack: LocalStack | None) -> Defaults:
    """The stack's pool and table (nothing when no stack is in use)."""
    if stack is None:
        return Defaults(None, None)
    status = stack.status()
    return Defaults(status.user_pool_id, status.table or stack.settings.table)


def exports(stack: LocalStack) -> dict[str, str]:
    """What `local env` prints: the SDKs' endpoints and credentials, and what our own
    commands read to find the stack (its folder) and its pool."""
    found = {**stack.environment(), DIR_ENV: str(stack.dir)}
    pool = stack.status().user_pool_id
    if pool:
        found[POOL_ENV] = pool
    return found
