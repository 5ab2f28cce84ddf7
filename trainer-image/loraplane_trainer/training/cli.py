"""`python -m loraplane_trainer run --job <finetunejob.json|yaml> --run-id <id>`: the training pod's command."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
import yaml
from loraplane.api.finetunejob import FineTuneJob, ParallelStrategy
from loraplane.storage import run_id as make_run_id
from pydantic import ValidationError

from . import allocator, distributed
from .errors import BadInput
from .logs import log, setup_logging


def load_job(path: Path, *, output: str | None = None, max_steps: int | None = None,
             epochs: int | None = None) -> FineTuneJob:
    """The FineTuneJob in a JSON or YAML file, with command-line overrides; BadInput naming the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"{path}: cannot read the FineTuneJob: {exc}") from exc
    if not isinstance(data, dict) or "spec" not in data:
        raise BadInput(f"{path}: not a FineTuneJob object (no spec)")
    spec = data["spec"]
    if output:
        spec.setdefault("output", {})["uri"] = output
    training = spec.setdefault("training", {})
    if max_steps is not None:
        training["maxSteps"] = max_steps
    if epochs is not None:
        training["epochs"] = epochs
    data.pop("status", None)  # written by the operator; the run does not need it
    try:
        job = FineTuneJob.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{path}: {where}: {first['msg']} ({exc.error_count()} problem(s))") from exc
    if not job.metadata.name:
        raise BadInput(f"{path}: metadata.name is required")
    return job


@click.command("run")
@click.option("--job", "job_path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The FineTuneJob object (JSON or YAML), as the operator mounts it.")
@click.option("--run-id", default=None, help="Run id (<uid>-<generation>); reuse one to resume that run.")
@click.option("--output", default=None, help="Override spec.output.uri.")
@click.option("--max-steps", type=int, default=None, help="Override training.maxSteps (quick runs).")
@click.option("--epochs", type=int, default=None, help="Override training.epochs.")
@click.option("--base-dir", default=None, type=click.Path(file_okay=False),
              help="Directory that relative dataset paths are resolved against.")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes (GPUs) to train with, as `torchrun --standalone --nproc-per-node`.")
@click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Nodes (pods) of the run, each starting --nproc-per-node processes, as torchrun --nnodes.")
@click.option("--node-rank", type=click.IntRange(min=0), default=None,
              help="This node's index (default: $JOB_COMPLETION_INDEX, which indexed Jobs and JobSets set); "
                   "node 0 hosts the rendezvous.")
@click.option("--rdzv-endpoint", default=None,
              help="host:port of the c10d rendezvous on node 0 (needed with --nnodes > 1).")
@click.option("--strategy", type=click.Choice(["ddp", "fsdp"]), default=None,
              help="Several processes: a model replica each (ddp) or the model sharded over them (fsdp, FSDP2). "
                   "Default: spec.resources.strategy; Auto is ddp unless the operator's plan passes fsdp.")
@click.option("--dataset-only", is_flag=True,
              help="Check and split the dataset, keep the split in the run and stop (one process); the same "
                   "command without it, under the same --run-id, trains on that split.")
def run_command(job_path: Path, run_id: str | None, output: str | None, max_steps: int | None,
                epochs: int | None, base_dir: str | None, nproc_per_node: int, nnodes: int, node_rank: int | None,
                rdzv_endpoint: str | None, strategy: str | None, dataset_only: bool) -> None:
    """Validate the data, train a LoRA adapter, evaluate it and publish it."""
    allocator.run_under_tcmalloc("loraplane_trainer")  # before any thread starts; returns where it does not
    setup_logging()
    log.info("malloc: %s", allocator.current())
    if nnodes > 1 and not rdzv_endpoint:
        raise click.UsageError("--nnodes > 1 needs --rdzv-endpoint (host:port of node 0)")
    if node_rank is None:
        node_rank = int(os.environ.get("JOB_COMPLETION_INDEX", "0") or 0)
    if (nproc_per_node > 1 or nnodes > 1) and "WORLD_SIZE" not in os.environ and not dataset_only:
        argv = ["run", "--job", str(job_path)]
        for flag, value in (("--run-id", run_id), ("--output", output), ("--max-steps", max_steps),
                            ("--epochs", epochs), ("--base-dir", base_dir)):
            if value is not None:
                argv += [flag, str(value)]
        # The workers load the job themselves; a launcher without --run-id gives them all the same one.
        if run_id is None:
            try:
                job = load_job(job_path, output=output, max_steps=max_steps, epochs=epochs)
            except BadInput as exc:
                log.error("%s: %s", exc.reason, exc)
                sys.exit(exc.exit_code)
            argv += ["--run-id", make_run_id(job.metadata.uid or "local", job.metadata.generation or 1)]
        if strategy is None:
            try:
                chosen = load_job(job_path).spec.resources.strategy
            except BadInput:
                chosen = None  # the workers report it, with the trainer's exit code
            strategy = distributed.FSDP if chosen is ParallelStrategy.FSDP else "ddp"
        os.environ[distributed.STRATEGY_ENV] = strategy  # the workers inherit it
        log.info("starting %d training processes (node %d of %d, %s)", nproc_per_node, node_rank, nnodes, strategy)
        run = argv[argv.index("--run-id") + 1]
        sys.exit(distributed.launch(nproc_per_node, argv, nnodes=nnodes, node_rank=node_rank,
                                    rdzv_endpoint=rdzv_endpoint, run_id=run))
    try:
        job = load_job(job_path, output=output, max_steps=max_steps, epochs=epochs)
    except BadInput as exc:
        log.error("%s: %s", exc.reason, exc)
        sys.exit(exc.exit_code)
    from .pipeline import run_job  # torch and transformers load here, after the cheap checks

    run_id = run_id or make_run_id(job.metadata.uid or "local", job.metadata.generation or 1)
    dist = distributed.context()
    if dist.enabled:
        distributed.init(dist)
        for handler in logging.getLogger().handlers:  # which rank said what, in the one pod log
            handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {dist.rank}] %(message)s",
                                                   "%Y-%m-%dT%H:%M:%S"))
        log.info("rank %d of %d joined (%s), %s", dist.rank, dist.world_size,
                 "nccl" if torch_cuda() else "gloo", "FSDP" if dist.sharded else "DDP")
    try:
        code = run_job(job, run_id, base_dir=base_dir, dataset_only=dataset_only)
    finally:
        distributed.shutdown(dist)
    sys.exit(code)


def torch_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


commands = [run_command]
