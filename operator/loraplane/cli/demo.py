"""`loraplane demo`: dataset → LoRA adapter → canaried chatbot, on this machine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..demo import DemoError, DemoOptions, run_demo


@click.command("demo")
@click.option("--out", default="loraplane-out", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Local object store (file://) for runs, adapters and the demo's logs.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port of the router (the endpoint); 0 picks one that is free when the router starts.")
@click.option("--no-serve", is_flag=True, help="Exit after the canary decision instead of serving until Ctrl-C.")
@click.option("--epochs", type=int, default=None, help="Override training.epochs of the example.")
@click.option("--max-steps", type=int, default=None, help="Stop training after this many optimizer steps.")
@click.option("--questions", default=24, show_default=True, type=int, help="Customer questions per round.")
@click.option("--job", "job_file", default="examples/demo/finetunejob.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The FineTuneJob to train.")
@click.option("--chatbot", "chatbot_file", default="examples/demo/chatbotdeployment.yaml", show_default=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The ChatbotDeployment to serve.")
def demo_command(out, port, no_serve, epochs, max_steps, questions, job_file, chatbot_file) -> None:
    """Validate the example dataset, train a LoRA adapter on CPU, serve it on vLLM and canary it."""
    options = DemoOptions(job_file=job_file, chatbot_file=chatbot_file, out=out, port=port, serve=not no_serve,
                          epochs=epochs, max_steps=max_steps, questions=questions)
    try:
        run_demo(options)
    except DemoError as exc:
        click.secho(f"demo failed: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("\nstopped; every child process was shut down")
        sys.exit(130)


commands = [demo_command]
