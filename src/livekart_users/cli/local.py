"""`livekart-users local`: start, inspect, stop and demo the local stack of emulators."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from livekart_users.cli import Group, render
from livekart_users.cli.common import (
    F,
    console,
    errors,
    extra_fields_option,
    friendly_errors,
    local_dir_option,
)


@click.group(cls=Group)
def local() -> None:
    """The local stack: DynamoDB Local, cognito-local and the trigger, no AWS account."""


def stack_options(command: F) -> F:
    options = [
        local_dir_option("directory"),
        click.option(
            "--dynamodb-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="[env LIVEKART_LOCAL_DYNAMODB_PORT; default 8000]",
        ),
        click.option(
            "--cognito-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="[env LIVEKART_LOCAL_COGNITO_PORT; default 9229]",
        ),
        click.option(
            "--lambda-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="Port of the local Lambda Invoke endpoint "
            "[env LIVEKART_LOCAL_LAMBDA_PORT; default 9001]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _stack(
    directory: Path | None = None,
    dynamodb_port: int | None = None,
    cognito_port: int | None = None,
    lambda_port: int | None = None,
    extra_fields: str | None = None,
) -> Any:
    from livekart_users.local.stack import LocalStack, Settings

    settings = Settings()
    for name, value in (
        ("directory", directory),
        ("dynamodb_port", dynamodb_port),
        ("cognito_port", cognito_port),
        ("endpoint_port", lambda_port),
        ("extra_fields", extra_fields),
    ):
        if value is not None:
            setattr(settings, name, value)
    stack = LocalStack(settings)
    stack.refuse_a_file()  # every command, as `up` does: never "nothing was running"
    return stack


def _shell_option(command: F) -> F:
    from livekart_users.local.shells import SHELLS

    return click.option(
        "--shell",
        type=click.Choice(SHELLS),
        default=None,
        help="The shell to print for [default: the shell this runs in]",
    )(command)


@local.command("up")
@stack_options
@extra_fields_option
@_shell_option
@click.option("--json", "as_json", is_flag=True, help="Print what was started, and where, as JSON.")
@friendly_errors
def local_up(shell: str | None, as_json: bool, **options: Any) -> None:
    """Start the emulators and create the pool, app client and table (idempotent).

    The first time, the pinned emulators are installed into a per-user cache (npm ci).
    """
    from livekart_users.local import loopback, shells

    stack = _stack(**options)
    # With --json, stdout carries only the JSON: what up says goes to stderr.
    status = stack.up(say=errors.print) if as_json else _start(stack)
    listening = loopback.listening(status.endpoints)
    exposed = loopback.exposed(listening)
    if as_json:
        click.echo(render.local_up_json(status, listening, exposed))
        return
    started = ", ".join(status.started) or "nothing (all were running)"
    console.print(f"started: {started}")
    render.print_status(console, status)
    render.print_exposed(errors, exposed, status.endpoints)
    dir_flag = _dir_flag(options.get("directory"))
    hint = shells.load_hint(shell or shells.detect(), f"livekart-users local env{dir_flag}")
    render.print_commands(
        console,
        [
            ("Point boto3, the AWS CLI and livekart-users at it:", hint),
            ("Try it:", f"livekart-users local demo{dir_flag}"),
            (
                "See the pool and the table side by side:",
                f"livekart-users local console{dir_flag}",
            ),
            ("Stop it:", f"livekart-users local down{dir_flag}"),
        ],
    )


def _start(stack: Any) -> Any:
    """`stack.up()` under a spinner; what it installs or restores is said as it happens."""
    with console.status("starting the local stack…") as spinner:
        return stack.up(
            say=lambda line: spinner.console.print(f"[yellow]{line}[/yellow]", soft_wrap=True)
        )


def _dir_flag(directory: Path | None) -> str:
    return f" --dir {directory}" if directory is not None else ""


@local.command("down")
@local_dir_option("directory")
@click.option(
    "--wipe",
    is_flag=True,
    help="Also delete the stack's users, rows and logs (only in a folder `local up` made).",
)
@friendly_errors
def local_down(directory: Path | None, wipe: bool) -> None:
    """Stop every process `local up` started."""
    stack = _stack(directory)
    result = stack.down(wipe=wipe)
    line = f"stopped: {', '.join(result.stopped) or 'nothing was running'}"
    if result.wiped:
        line += f"; deleted the stack's files in {stack.dir}"
        if result.kept:
            line += f" (kept what is not the stack's: {', '.join(result.kept)})"
    console.print(line, highlight=False, soft_wrap=True)


@local.command("status")
@local_dir_option("directory")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@friendly_errors
def local_status(directory: Path | None, as_json: bool) -> None:
    """Show which emulators run and where. Exit status 1 when any is stopped."""
    status = _stack(directory).status()
    if as_json:
        click.echo(render.to_json({**vars(status), "all_running": status.all_running}))
    else:
        render.print_status(console, status)
    sys.exit(0 if status.all_running else 1)


@local.command("env")
@local_dir_option("directory")
@_shell_option
@friendly_errors
def local_env(directory: Path | None, shell: str | None) -> None:
    """Print the variables that point AWS clients at the local stack, for your shell: the
    SDKs' endpoints, region and credentials, and the stack's folder and pool, with which
    every livekart-users command finds the stack by itself.

    POSIX shells: eval "$(livekart-users local env)"; PowerShell:
    livekart-users local env --shell powershell | Invoke-Expression.
    """
    from livekart_users.local import current, shells

    stack = _stack(directory)
    for line in shells.exports(current.exports(stack), shell or shells.detect()):
        click.echo(line)
    if not stack.status().user_pool_id:  # on stderr: `eval` takes only stdout
        errors.print(
            f"[yellow]warning:[/yellow] no local stack in {escape(str(stack.dir))} yet: "
            f"start it with `livekart-users local up{escape(_dir_flag(directory))}`",
            highlight=False,
            soft_wrap=True,
        )


@local.command("install")
@friendly_errors
def local_install() -> None:
    """Install the pinned emulators now (`local up` does it on first use) and say where."""
    from livekart_users.local import install, runtimes

    found = runtimes.require(runtimes.NODE, runtimes.NPM, runtimes.JAVA)
    with console.status("checking the emulators…") as spinner:
        modules = install.node_modules(say=lambda line: spinner.console.print(line))
    console.print(f"emulators ready in {modules.parent}", highlight=False)
    console.print("using " + ", ".join(found.values()), highlight=False)


@local.command("console")
@local_dir_option("directory")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port on 127.0.0.1 (0: a free one).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in your browser too.")
@friendly_errors
def local_console(directory: Path | None, port: int, open_browser: bool) -> None:
    """Serve a page of the running stack: each Cognito user beside their row, the trigger's
    activity as it happens, and test actions. Loopback only; stop it with Ctrl-C.

    The URL carries a token made for this start: anyone without it is refused.
    """
    import signal
    import threading
    import webbrowser

    from livekart_users.local.console import open_console

    # Ctrl-C (or a TERM) sets an event rather than raising KeyboardInterrupt, so a stop that
    # arrives while the URL is still being printed ends as cleanly as one during the wait.
    stopping = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in signals}
    try:
        running = open_console(_stack(directory), port=port)
        try:
            console.print(f"console: {running.url}", highlight=False, soft_wrap=True)
            console.print(
                "(the token in the URL is this start's key: keep it to yourself) Ctrl-C stops."
            )
            if open_browser:
                webbrowser.open(running.url)
            stopping.wait()
        finally:
            running.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@local.command("demo")
@local_dir_option("directory")
@click.option(
    "--up/--no-up",
    "start",
    default=True,
    show_default=True,
    help="Start the stack first if it is not running (the same as `local up`).",
)
@friendly_errors
def local_demo(directory: Path | None, start: bool) -> None:
    """Sign up, confirm and sign in sample users through Cognito; show their rows.

    Then create a user with AdminCreateUser (no trigger fires, so no row) and backfill its
    row with `reconcile --apply`; then change a user's email and delete the user as an
    administrator, and show the row following both without a sign-in (change events).
    """
    from livekart_users.local import demo

    stack = _stack(directory)
    if start and not stack.status().all_running:
        console.print(f"started: {', '.join(_start(stack).started)}")
    result = demo.run(stack, say=lambda line: console.print(f"• {line}"))
    render.print_records(console, result.records, "rows the trigger wrote")
    console.print(
        f"find_by_email({result.lookup_email!r}, unverified=True) through the GSI email-index:"
    )
    for row in result.found_by_email:
        render.print_user_detail(console, row, f"user {row['user_id']}")
    backfill = demo.backfill(stack, say=lambda line: console.print(f"• {line}"))
    render.print_reconcile(console, backfill.report)
    if backfill.after is not None:
        title = f"{backfill.email}: row after reconcile"
        render.print_user_detail(console, backfill.after, title)
    changed = demo.changes(stack, say=lambda line: console.print(f"• {line}"))
    if changed.erased_after is not None:
        title = "the deleted user's row: personal fields gone, app data kept"
        render.print_user_detail(console, changed.erased_after, title)
    _show_invocations(stack)
    dir_flag = _dir_flag(directory)
    from livekart_users.local import shells

    render.print_commands(
        console,
        [
            (
                "See every row: load the stack's variables into your shell, then every "
                "livekart-users command finds the stack, its pool and its table:",
                shells.load_hint(shells.detect(), f"livekart-users local env{dir_flag}"),
            ),
            ("", "livekart-users users list"),
            (
                "Or see each user beside their row, and the invocations live, in the browser:",
                f"livekart-users local console{dir_flag}",
            ),
            (
                "Stop the stack (add --wipe to delete its data):",
                f"livekart-users local down{dir_flag}",
            ),
        ],
    )


def _show_invocations(stack: Any) -> None:
    """What the trigger did during the demo, as `livekart-users logs` shows it."""
    from livekart_users import logs

    window = logs.LocalRecord(stack.record_file).read(
        logs.parse_since(logs.DEFAULT_SINCE), logs.Filters(), logs.DEFAULT_LIMIT
    )
    render.print_logs_window(console, console, window, as_json=False, follow=False)
    render.print_commands(
        console,
        [
            (
                "The same for a deployed trigger (add --follow to watch):",
                "livekart-users logs --user-pool-id POOL",
            )
        ],
    )
