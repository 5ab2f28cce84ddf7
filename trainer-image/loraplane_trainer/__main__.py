"""`python -m loraplane_trainer <command>`: the training pod's entrypoint and the dataset tools.

Commands live beside their code; each module listed here that exists contributes
its `commands` (a list of click commands).
"""

from __future__ import annotations

import importlib
import importlib.util

import click

COMMAND_MODULES = (
    "loraplane_trainer.dataset.cli",
    "loraplane_trainer.training.cli",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """LoRAPlane trainer."""


for _name in COMMAND_MODULES:
    try:
        _found = importlib.util.find_spec(_name)
    except ModuleNotFoundError:
        _found = None
    if _found is not None:
        for _command in importlib.import_module(_name).commands:
            cli.add_command(_command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
