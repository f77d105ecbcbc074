"""The `livekart-users` command: one module per command group, each parse -> library -> render.

No logic lives in this package; the library's modules beside it do the work. A command's
module is imported only when that command runs (`users get` need not load deploy, doctor or
the local stack), and all its AWS clients come from one session.
"""

from __future__ import annotations

import importlib

import click

from livekart_users import __version__

# command name -> (module, attribute)
COMMANDS = {
    "local": ("livekart_users.cli.local", "local"),
    "deploy": ("livekart_users.cli.deploy", "deploy"),
    "destroy": ("livekart_users.cli.deploy", "destroy"),
    "attach": ("livekart_users.cli.deploy", "attach"),
    "detach": ("livekart_users.cli.deploy", "detach"),
    "package": ("livekart_users.cli.artifacts", "package"),
    "template": ("livekart_users.cli.artifacts", "template"),
    "doctor": ("livekart_users.cli.doctor", "doctor_command"),
    "users": ("livekart_users.cli.users", "users"),
    "reconcile": ("livekart_users.cli.users", "reconcile_command"),
    "logs": ("livekart_users.cli.logs", "logs_command"),
}


class LazyGroup(click.Group):
    """Imports a command's module when the command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="livekart-users")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Keep a DynamoDB users table in step with an Amazon Cognito user pool."""
    import sys

    from livekart_users import aws
    from livekart_users.cli.common import WaitingForAws, errors

    # The spinner is for a person at a terminal; checked here so a pipe never loads rich.
    waiting = WaitingForAws(errors).hook if sys.stderr.isatty() else None
    ctx.with_resource(aws.one_session(prepare=waiting))


if __name__ == "__main__":
    main()
