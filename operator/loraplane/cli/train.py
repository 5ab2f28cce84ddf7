"""`loraplane train <finetunejob.yaml>`: run a FineTuneJob's training on this machine.

The same program as the training pod (`python -m loraplane_trainer run`), run as
a child process. Local defaults: output under ./loraplane-out, cluster-only
fields (Kueue queue, GPUs, schedule) ignored with a note.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import click

from ..api.finetunejob import FineTuneJob
from ..storage import RunLayout
from ..storage.layout import EVALUATION_ROWS
from ..storage.uris import is_local, local_path
from .job_file import read_finetunejob
from .processes import python_module

DEFAULT_OUTPUT = "file://./loraplane-out"


def _absolute_output(uri: str) -> str:
    if is_local(uri):
        return "file://" + str(Path(local_path(uri)).expanduser().resolve())
    return uri


def _notes(job: FineTuneJob) -> list[str]:
    r = job.spec.resources
    notes = []
    if r.queue:
        notes.append(f"resources.queue {r.queue!r} (Kueue) is ignored locally")
    if r.gpus or r.gpu_type:
        notes.append(f"resources.gpus {r.gpus} / gpuType {r.gpu_type or '-'} are ignored: training uses this "
                     "machine's GPU if it has one, else the CPU")
    if job.spec.schedule:
        notes.append(f"schedule {job.spec.schedule!r} is ignored: one run now")
    if job.spec.output.credentials_secret_ref:
        notes.append("output.credentialsSecretRef is ignored: storage credentials come from AWS_* in the environment")
    return notes


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@click.command("train")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--output", default=DEFAULT_OUTPUT, show_default=True,
              help="Where runs and adapters are written (any fsspec URI); replaces spec.output.uri.")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (quick runs).")
@click.option("--epochs", type=int, default=None, help="Override training.epochs.")
@click.option("--run-id", default=None, help="Run id; pass the id of an interrupted run to resume it.")
@click.option("--python", "python", default=None, help="Python interpreter of the trainer environment.")
@click.option("--dataset-only", is_flag=True,
              help="Check and split the dataset, keep the split in the run and stop; `train` again with its "
                   "--run-id trains on that split without checking it again.")
def train_command(job_file: Path, output: str, max_steps: int | None, epochs: int | None, run_id: str | None,
                  python: str | None, dataset_only: bool) -> None:
    """Train a FineTuneJob locally: dataset checks, LoRA training, evaluation, publishing."""
    data, job = read_finetunejob(job_file)

    output = _absolute_output(output)
    if output != job.spec.output.uri:
        click.echo(f"output: {output}  (spec.output.uri {job.spec.output.uri} is replaced locally; --output changes it)")
    for note in _notes(job):
        click.echo(f"note: {note}")
    data["spec"].setdefault("output", {})["uri"] = output
    data.setdefault("metadata", {}).setdefault("namespace", job.metadata.namespace or "default")
    run_id = run_id or f"{job.metadata.uid or 'local'}-{job.metadata.generation or 1}-{time.strftime('%Y%m%d-%H%M%S')}"
    # Relative dataset paths are relative to the working directory, else to the YAML file.
    uri = job.spec.dataset.uri
    base_dir = Path.cwd() if not uri or not is_local(uri) or Path(local_path(uri)).exists() else job_file.parent
    click.echo(f"run: {run_id}  ({'train on its split' if dataset_only else 'resume it'} with --run-id {run_id})")

    with tempfile.TemporaryDirectory(prefix="loraplane-train-") as tmp:
        spec_file = Path(tmp) / "finetunejob.json"
        spec_file.write_text(json.dumps(data, default=str))
        args = ["run", "--job", str(spec_file), "--run-id", run_id, "--base-dir", str(base_dir.resolve())]
        if max_steps is not None:
            args += ["--max-steps", str(max_steps)]
        if epochs is not None:
            args += ["--epochs", str(epochs)]
        if dataset_only:
            args += ["--dataset-only"]
        code = python_module("loraplane_trainer", args, python=python)
    _summary(output, job.metadata.name, run_id)
    sys.exit(code)


def _summary(output: str, name: str, run_id: str) -> None:
    result = RunLayout(output, name, run_id).read_result()
    if result is None:
        return
    metrics = result.get("metrics") or {}
    click.echo("")
    click.echo(f"{'':<24}{'base model':>12}{'adapter':>12}")
    for label, before, after in EVALUATION_ROWS:
        click.echo(f"{label:<24}{_fmt(metrics.get(before)):>12}{_fmt(metrics.get(after)):>12}")
    click.echo(f"\nadapter {result['version']} ({result['verdict']}): {result['uri']}")
    if result.get("reason"):
        click.echo(f"reason: {result['reason']}")
    click.echo("model card README.md, loss_curve.png, metrics.json and manifest.json are beside it")


commands = [train_command]
