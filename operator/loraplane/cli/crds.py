"""`loraplane crds`: write the CRDs generated from the API types."""

from __future__ import annotations

from pathlib import Path

import click

from ..api.crdgen import write_crds


@click.command("crds")
@click.option(
    "--out",
    "outs",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    default=[Path("crds"), Path("helm/loraplane/crds")],
    show_default=True,
    help="Directory to write into (repeatable).",
)
def crds_command(outs: tuple[Path, ...]) -> None:
    """Generate CRD YAML from the pydantic API types."""
    for path in write_crds(*outs):
        click.echo(f"wrote {path}")


commands = [crds_command]
