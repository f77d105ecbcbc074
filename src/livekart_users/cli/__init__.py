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


class Group(click.Group):
    """A command group that suggests the nearest command for a mistyped one, and answers a
    usage error with one JSON object on stdout when --json was asked for."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        typed = args[0] if args else ""
        unknown = typed and not typed.startswith("-") and self.get_command(ctx, typed) is None
        if unknown and not ctx.resilient_parsing:
            import difflib

            known = self.list_commands(ctx)
            nearest = difflib.get_close_matches(typed, known, n=1, cutoff=0.6)
            hint = f"did you mean '{nearest[0]}'?" if nearest else f"one of {', '.join(known)}"
            raise click.UsageError(f"no such command {typed!r}: {hint}", ctx)
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> object:
        # click >= 8.2 keeps the command's name apart as `_protected_args`; 8.1 as `protected_args`.
        protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
        asked = "--json" in (*protected, *ctx.args)
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if asked and not getattr(exc, "json_printed", False):
                from livekart_users.cli.common import json_error

                where = getattr(exc, "ctx", None) or ctx
                command = " ".join(where.command_path.split()[1:])
                click.echo(json_error(exc.format_message(), exc.exit_code, command))
                exc.json_printed = True  # type: ignore[attr-defined]
            raise


class LazyGroup(Group):
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
