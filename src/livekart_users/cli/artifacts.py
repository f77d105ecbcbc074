"""`livekart-users package` and `livekart-users template`: the artefacts for IaC teams."""

from __future__ import annotations

from pathlib import Path

import click

from livekart_users.cli import render
from livekart_users.cli.common import console, friendly_errors, write_output

DEFAULT_ZIP = Path("build") / "livekart-users-trigger.zip"


@click.command("package")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_ZIP,
    show_default=True,
    help="Where to write the zip.",
)
@click.option(
    "--architecture",
    type=click.Choice(["arm64", "x86_64"]),
    default="arm64",
    show_default=True,
    help="The function's architecture (the zip is pure Python: this checks it can run there).",
)
@click.option(
    "--bundle-sdk/--no-bundle-sdk",
    default=True,
    show_default=True,
    help="Carry the pinned boto3/botocore, or rely on the Lambda runtime's.",
)
@click.option("--json", "as_json", is_flag=True, help="Print where the zip is and its digests.")
@friendly_errors
def package(output: Path, architecture: str, bundle_sdk: bool, as_json: bool) -> None:
    """Build the Lambda zip reproducibly and print its size and SHA-256."""
    from livekart_users.deploy.package import build_zip

    built = build_zip(architecture, bundle_sdk)
    write_output(output, built.data, "the zip")
    if as_json:
        click.echo(render.package_json(output, built, architecture, bundle_sdk))
        return
    # Lines broken at spaces only: the path, digests and S3 key are never cut (README).
    width = console.width
    render.print_lines(
        console,
        [
            *render.wrapped(
                f"wrote {output} ({built.size:,} bytes, {built.size / 2**20:.1f} MiB)", width
            ),
            f"sha256      {built.sha256}",
            f"CodeSha256  {built.code_sha256}",
            *render.wrapped(
                "contains    " + ", ".join(f"{n} {v}" for n, v in built.distributions), width
            ),
            *render.wrapped(
                f"Upload it under a key of its own, e.g. aws s3 cp {output} "
                f"s3://BUCKET/livekart-users/{built.sha256}.zip and pass the bucket and key "
                "to the template's CodeBucket and CodeKey.",
                width,
            ),
        ],
    )


@click.command("template")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the template here instead of printing it.",
)
@friendly_errors
def template(output: Path | None) -> None:
    """Print (or write) the CloudFormation template: the same resources as deploy."""
    from livekart_users.deploy import template as cfn

    text = cfn.render()
    if output is None:
        click.echo(text, nl=False)
        return
    write_output(output, text.encode(), "the template")
    console.print(
        f"wrote {output}; after creating the stack, run the command in its AttachCommand output",
        highlight=False,
    )
