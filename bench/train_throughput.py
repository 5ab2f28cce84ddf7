"""Training throughput: the product's own training path against a plain transformers Trainer with padded batches.

"product": the demo profile (examples/demo/finetunejob.yaml: LoRA r=8 all-linear, dropout 0,
its batchSize x gradientAccumulation and augmentation, packing with the chat template's shared prefix held
once per row, precision auto, packed examples attending block by block on a CPU: segment_attention) run
through the trainer's entrypoint,
`python -m loraplane_trainer run`, as `make demo` and `loraplane train` run it, for --steps optimizer
steps; its evaluation is cut to a few examples and no safety probes, which leaves the training
itself as it is (tokens/s counts the training steps only). "baseline": transformers' Trainer, fp32,
the same model, LoRA and batches per step, right-padded batches, completion-only labels,
under the system's malloc as users run it; then the same under tcmalloc (which the product's
entrypoint preloads), so that what the allocator alone gives is visible; and the product once more with
LORAPLANE_ATTENTION=sdpa (SDPA over whole rows with the packing mask, as before the block attention).
Figures: effective tokens/s (non-padding tokens trained per second of training), the process's
peak RSS, and the ratio. Each variant runs in its own process so peak RSS is its own.

    python bench/train_throughput.py [--steps 12] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from loraplane.api.finetunejob import FineTuneJob
from loraplane_trainer.training.allocator import tcmalloc_library
from loraplane_trainer.training.segment_attention import ATTENTION_ENV

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "support.jsonl"
DEMO_JOB = ROOT / "examples" / "demo" / "finetunejob.yaml"
TRAINING = FineTuneJob.model_validate(yaml.safe_load(DEMO_JOB.read_text())).spec.training  # its defaults included
BATCH_SIZE, ACCUMULATION = TRAINING.batch_size, TRAINING.gradient_accumulation
EXAMPLES_PER_STEP = BATCH_SIZE * ACCUMULATION


def records() -> list[dict]:
    out = []
    for line in DATA.read_text().splitlines():
        r = json.loads(line)
        if "messages" not in r:
            r = {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
        out.append(r)
    return out


def load():
    import torch
    from loraplane.api.finetunejob import LoraSpec
    from loraplane_trainer.smollm2 import ensure_smollm2
    from loraplane_trainer.training.chat import tokenize_all
    from loraplane_trainer.training.lora import lora_config
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_smollm2()  # the copy the trainer uses (its model cache)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    lora = LoraSpec.model_validate(yaml.safe_load(DEMO_JOB.read_text())["spec"]["lora"])  # the demo's own LoRA
    model = get_peft_model(model, lora_config(lora, model.config.model_type))
    return model, tok, tokenize_all(tok, records(), 1024)


def run_product(steps: int) -> dict:
    """The demo profile through the trainer's entrypoint, in a child process whose peak RSS is measured."""
    job = yaml.safe_load(DEMO_JOB.read_text())
    job["spec"]["evaluation"].update({"maxExamples": 4, "safety": {"enabled": False}})
    with tempfile.TemporaryDirectory() as tmp:
        job_file = Path(tmp) / "finetunejob.json"
        job_file.write_text(json.dumps(job))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "loraplane_trainer", "run", "--job", str(job_file),
                               "--run-id", "bench", "--max-steps", str(steps), "--output", f"file://{tmp}/out",
                               "--base-dir", str(DEMO_JOB.parent)], capture_output=True, text=True)
        wall = time.monotonic() - t0
        if proc.returncode not in (0, 43):  # 43: published as rejected by a gate, still trained
            sys.exit(f"the trainer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        result = json.loads(next(Path(tmp, "out").glob("*/runs/bench/result.json")).read_text())
        metrics = json.loads((Path(result["uri"].removeprefix("file://")) / "metrics.json").read_text())
    return {"tokens_per_second": metrics["tokensPerSecond"], "run_seconds": wall,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run_baseline(steps: int) -> dict:
    """transformers.Trainer, fp32, padded batches (the usual recipe), completion-only labels."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainerCallback, TrainingArguments

    model, tok, examples = load()
    data = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e)} for e in examples]
    collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    real = {"tokens": 0}

    class Count(TrainerCallback):
        pass

    class CountingTrainer(Trainer):
        def training_step(self, model, inputs, *args, **kwargs):
            real["tokens"] += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=BATCH_SIZE,
                                 gradient_accumulation_steps=ACCUMULATION, max_steps=steps, learning_rate=2e-4,
                                 logging_steps=1000, save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                                 dataloader_num_workers=0, disable_tqdm=True, seed=42)
        trainer = CountingTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                                  callbacks=[Count()])
        t0 = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - t0
    return {"tokens_per_second": real["tokens"] / seconds}


def child(variant: str, steps: int) -> None:
    import torch

    torch.manual_seed(0)
    if variant.startswith("baseline"):
        out = run_baseline(steps)
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        out = run_product(steps)
    print("RESULT " + json.dumps(out), flush=True)


LABELS = {"baseline": "transformers Trainer, padded, fp32",
          "baseline-tcmalloc": "  the same under tcmalloc",
          "product": "loraplane demo profile, entrypoint",
          "product-sdpa": "  the same, SDPA over whole rows"}
TARGETS = "targets: >= 700 tokens/s, >= 3x the baseline, peak RSS <= 2048 MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of each variant (OMP_NUM_THREADS)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.steps)
        return
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("", "operator", "trainer-image")),
           "TRANSFORMERS_VERBOSITY": "error", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(a.threads)}
    results = {}
    for variant in LABELS:
        # The product's entrypoint preloads tcmalloc itself (allocator.py); the baseline runs as users run
        # it, under the system's malloc, and once more under tcmalloc to show what the allocator alone gives.
        tcmalloc = tcmalloc_library() if variant == "baseline-tcmalloc" else None
        if variant == "baseline-tcmalloc" and tcmalloc is None:
            continue
        child_env = {**env, "LD_PRELOAD": tcmalloc} if tcmalloc else env
        if variant == "product-sdpa":  # the attention the product used before segment_attention
            child_env = {**env, ATTENTION_ENV: "sdpa"}
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(a.steps)],
                              env=child_env, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[len("RESULT "):])
    base, ours = results["baseline"], results["product"]
    print(f"train_throughput: SmolLM2-135M-Instruct, LoRA r=8 all-linear, {a.steps} steps of {EXAMPLES_PER_STEP} "
          f"examples from {DATA.relative_to(ROOT)}, {a.threads} threads")
    print(f"{'variant':<38}{'tokens/s':>10}{'peak RSS MiB':>14}{'vs baseline':>13}")
    for variant, r in results.items():
        print(f"{LABELS[variant]:<38}{r['tokens_per_second']:>10.0f}{r['peak_rss_mib']:>14.0f}"
              f"{r['tokens_per_second'] / base['tokens_per_second']:>12.2f}x")
    if "product-sdpa" in results:
        print(f"block attention: {ours['tokens_per_second'] / results['product-sdpa']['tokens_per_second']:.2f}x "
              "the same run with SDPA over whole rows")
    print(f"ratio (product / baseline tokens/s): {ours['tokens_per_second'] / base['tokens_per_second']:.2f}x; "
          f"product peak RSS {ours['peak_rss_mib']:.0f} MiB (whole run {ours['run_seconds']:.0f} s); {TARGETS}")


if __name__ == "__main__":
    main()
