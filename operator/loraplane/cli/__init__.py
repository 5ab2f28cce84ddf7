"""The `loraplane` command line.

Every module of this package that defines `commands` (a list of click commands)
is picked up, so each capability keeps its commands beside its own code. The CLI
never imports the trainer or the server: it runs them as processes, exactly as
the cluster runs them as pods (see `loraplane.cli.processes`).
"""

from __future__ import annotations

import importlib
import pkgutil

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="loraplane")
def cli() -> None:
    """LoRAPlane: fine-tune chat models with LoRA and serve them with canaried A/B rollouts."""


def _register() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "commands", []):
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli()
