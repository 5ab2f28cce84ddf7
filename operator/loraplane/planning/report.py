"""A plan as status.plan and as the table `loraplane plan` prints."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from ..api.finetunejob import PlanMemory, PlanStatus
from .gpus import GIB
from .plan import ASSUMPTIONS, GpuFit, Plan


def _gib(n: float) -> float:
    return round(n / GIB, 2)


def _option(fit: GpuFit) -> str:
    return f"{fit.gpus} x {fit.gpu.key} {fit.strategy}" + ("" if fit.fits else " (does not fit)")


def plan_status(plan: Plan) -> dict[str, Any]:
    """status.plan, as the API writes it."""
    job = plan.job
    fields: dict[str, Any] = {
        "parameters": plan.shape.params,
        "loraParameters": plan.lora_params,
        "fitsOn": [_option(f) for f in plan.by_gpu if f.fits],
        "message": (plan.summary() + "; " + "; ".join(plan.notes + ASSUMPTIONS))[:1024],
    }
    if job is not None:
        m = job.memory
        fields.update(strategy=str(job.strategy), gpu=job.gpu.label, gpus=job.gpus, nodes=job.nodes, fits=job.fits,
                      nodes_needed=plan.nodes_needed)
        fields["memoryGib"] = PlanMemory(
            total=_gib(m.total), weights=_gib(m.weights), lora=_gib(m.lora + m.gradients + m.optimizer),
            activations=_gib(m.activations + m.logits),
            activations_checkpointed=_gib(plan.checkpointing.activations + plan.checkpointing.logits)
            if plan.checkpointing else None,
        ).to_wire()
        if job.seconds is not None:
            fields["predictedSeconds"] = round(job.seconds, 1)
            fields["predictedGpuHours"] = round(job.gpu_hours or 0.0, 3)
        if job.cost is not None:
            fields["predictedCost"] = f"{job.cost:.2f}"
    return PlanStatus.model_validate(fields).to_wire()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(plan: Plan) -> Table:
    """One row per GPU type: the smallest way to run the job there, its memory, time and cost."""
    table = Table(title=f"{plan.shape.params / 1e9:.2f}B parameters, {plan.lora_params / 1e6:.1f}M LoRA, "
                        f"{plan.tokens_per_micro_batch} tokens per micro-batch"
                        + (", gradient checkpointing" if plan.gradient_checkpointing else ""))
    for col, justify in (("GPU", "left"), ("strategy", "left"), ("GPUs", "right"), ("nodes", "right"),
                         ("weights GiB", "right"), ("LoRA+opt GiB", "right"), ("activations GiB", "right"),
                         ("peak/GPU GiB", "right"), ("of", "right"), ("fits", "center"), ("time", "right"),
                         ("GPU-h", "right"), ("cost $", "right")):
        table.add_column(col, justify=justify)
    rows = ([("job: " + plan.job.gpu.label, plan.job)] if plan.job else []) + [(f.gpu.label, f) for f in plan.by_gpu]
    for label, f in rows:
        m = f.memory
        table.add_row(label, str(f.strategy), str(f.gpus), str(f.nodes), f"{m.weights / GIB:.1f}",
                      f"{(m.lora + m.gradients + m.optimizer) / GIB:.2f}", f"{(m.activations + m.logits) / GIB:.1f}",
                      f"{m.total / GIB:.1f}", f"{f.gpu.memory_gib:g}", "yes" if f.fits else "[red]no[/red]",
                      _duration(f.seconds), "-" if f.gpu_hours is None else f"{f.gpu_hours:.2f}",
                      "-" if f.cost is None else f"{f.cost:.2f}")
    return table
