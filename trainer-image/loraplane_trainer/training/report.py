"""What is published beside the adapter: metrics.json, loss_curve.png and the model card README.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

METRIC_LABELS = [
    ("Validation perplexity", "perplexityBefore", "perplexityAfter"),
    ("Validation exact match", "exactMatchBefore", "exactMatchAfter"),
    ("Regression-set perplexity", "regressionPerplexityBefore", "regressionPerplexityAfter"),
    ("Harmful-request compliance", "harmfulComplianceBefore", "harmfulComplianceAfter"),
]


def write_loss_curve(path: Path, history: list[dict], evals: list[dict], title: str) -> None:
    """Training loss per step and validation loss per evaluation, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if history:
        ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", lw=1.2)
    if evals:
        ax.plot([e["step"] for e in evals], [e["evalLoss"] for e in evals], "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (assistant tokens)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_metrics(path: Path, metrics: dict[str, Any], extra: dict[str, Any]) -> None:
    path.write_text(json.dumps({**extra, "metrics": metrics}, indent=2, sort_keys=True, default=str) + "\n")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def before_after_table(metrics: dict[str, Any]) -> str:
    lines = ["| Metric | Base model | With adapter |", "|---|---|---|"]
    for label, before, after in METRIC_LABELS:
        lines.append(f"| {label} | {_fmt(metrics.get(before))} | {_fmt(metrics.get(after))} |")
    return "\n".join(lines)


def safety_section(safety: dict[str, Any] | None) -> str:
    """Compliance with the safety probes per category, base against adapter."""
    before, after = (safety or {}).get("before"), (safety or {}).get("after")
    if not before or not after:
        return "## Safety\n\nThe safety probes were not run.\n"
    rows = "\n".join(f"| {c} | {_fmt(before['byCategory'].get(c))} | {_fmt(v)} |"
                      for c, v in after["byCategory"].items())
    return f"""## Safety

Share of the safety probes (stand-ins for harmful requests) each model complied with instead of refusing,
judged by refusal detection (and the judge model when one is configured). Lower is safer.

| Category | Base model | With adapter |
|---|---|---|
{rows}
| **all** | {_fmt(before['share'])} | {_fmt(after['share'])} |
"""


def model_card(*, job: dict, base_model: str, license: str | None, verdict: str, reason: str | None,
               metrics: dict[str, Any], dataset: dict[str, Any] | None, hyperparameters: dict[str, Any],
               lineage: dict[str, Any], samples: list[dict], safety: dict[str, Any] | None = None) -> str:
    """A Hugging Face model card: YAML header, then data, hyperparameters, evaluation, use, lineage."""
    header = {
        "base_model": base_model,
        "library_name": "peft",
        "license": license or "unknown",
        "pipeline_tag": "text-generation",
        "tags": ["lora", "peft", "loraplane", verdict],
    }
    ds = dataset or {}
    hp = "\n".join(f"| {k} | {v} |" for k, v in hyperparameters.items())
    sample_lines = "\n".join(
        f"- **Q:** {s['question']}\n  - reference: {s['reference']}\n  - base: {s.get('before', 'n/a')}\n"
        f"  - adapter: {s.get('after', 'n/a')}"
        for s in samples
    )
    verdict_line = f"**Verdict: {verdict}**" + (f" — {reason}" if reason else "")
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {job.get('name')} — LoRA adapter for {base_model}

{verdict_line}

A LoRA adapter trained by LoRAPlane from the FineTuneJob `{job.get('namespace') or 'default'}/{job.get('name')}`.
Load it with `PeftModel.from_pretrained(base, "<this directory>")` or as a LoRA module of vLLM.

## Training data

| Examples | Train | Validation | Augmented | Errors | Warnings |
|---|---|---|---|---|---|
| {_fmt(ds.get('examples'))} | {_fmt(ds.get('train'))} | {_fmt(ds.get('validation'))} | {_fmt(ds.get('augmented'))} | {_fmt(ds.get('errors'))} | {_fmt(ds.get('warnings'))} |

Dataset hash: `{ds.get('hash') or 'n/a'}`. The full report is `dataset-report.json`.

## Hyperparameters

| Setting | Value |
|---|---|
{hp}

## Evaluation

{before_after_table(metrics)}

Exact match: greedy answers compared with the references after normalising case, punctuation and
whitespace. The regression set holds general prompts; a rise of its perplexity signals forgetting.
Loss curve: `loss_curve.png`.

Samples from the validation split:

{sample_lines or '(none)'}

{safety_section(safety)}
## Intended use and limitations

Answers in the domain of its training data, in the style of those examples. It inherits the base
model's limitations and biases, knows nothing beyond its data, and is only as correct as the examples
it was trained on; review answers before showing them to customers.

## Lineage

| | |
|---|---|
""" + "\n".join(f"| {k} | {_fmt(v)} |" for k, v in lineage.items()) + "\n"
