"""The `livekart-users` command: one module per command group, each parse -> library -> render.

No logic lives in this package; the library's modules beside it do the work.
"""

from __future__ import annotations

import click

from livekart_users import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="livekart-users")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """Keep a DynamoDB users table in step with an Amazon Cognito user pool."""


# The groups import after `main` exists; each module registers nothing by itself.
from livekart_users.cli.artifacts import package, template  # noqa: E402
from livekart_users.cli.deploy import attach, deploy, destroy  # noqa: E402
from livekart_users.cli.doctor import doctor_command  # noqa: E402
from livekart_users.cli.local import local  # noqa: E402
from livekart_users.cli.logs import logs_command  # noqa: E402
from livekart_users.cli.users import reconcile_command, users  # noqa: E402

for command in (
    local,
    deploy,
    destroy,
    attach,
    package,
    template,
    doctor_command,
    users,
    reconcile_command,
    logs_command,
):
    main.add_command(command)

if __name__ == "__main__":
    main()
