"""`loraplane validate|split|augment`: the trainer's dataset tools, run as a process as the cluster runs them.

The options are the trainer's own (`python -m loraplane_trainer <command> --help`); they are passed through.
"""

from __future__ import annotations

import click

from .processes import python_module

TRAINER = "loraplane_trainer"
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


def _command(name: str, summary: str) -> click.Command:
    @click.command(name, context_settings=PASS_THROUGH, help=summary, add_help_option=False)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def run(args: tuple[str, ...]) -> None:
        raise SystemExit(python_module(TRAINER, [name, *args]))

    return run


commands = [
    _command("validate", "Check a dataset or a FineTuneJob's dataset; exit 1 on errors (--json for the report)."),
    _command("split", "Check and split a dataset into train.jsonl and validation.jsonl (--out DIR)."),
    _command("augment", "Check, split and augment a dataset: the files the trainer reads (--out DIR)."),
]
