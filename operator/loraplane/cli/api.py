"""`loraplane api`: the OpenAI-compatible fine-tuning API, run as a process as the cluster runs its pod.

The options are the server's own (`python -m loraplane_api --help`); they are passed through.
"""

from __future__ import annotations

import click

from .processes import python_module

PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.command("api", context_settings=PASS_THROUGH, add_help_option=False,
               help="Serve /v1/files and /v1/fine_tuning/jobs over FineTuneJobs (--files-uri, --api-server, --port).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def api_command(args: tuple[str, ...]) -> None:
    raise SystemExit(python_module("loraplane_api", list(args)))


commands = [api_command]
