"""Training throughput: LoRAPlane's trainer against a plain transformers Trainer with padded batches.

Same model (SmolLM2-135M-Instruct), same LoRA (r=8, all-linear), same variable-length
chat data (examples/data/support.jsonl), same examples per optimizer step, same
completion-only labels. Figures: effective tokens/s (non-padding tokens trained per
second of training), peak RSS of each run's process, and the ratio. Each variant runs
in its own process so peak RSS is its own.

    python bench/train_throughput.py [--steps 6] [--examples-per-step 16]
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

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "support.jsonl"


def records() -> list[dict]:
    out = []
    for line in DATA.read_text().splitlines():
        r = json.loads(line)
        if "messages" not in r:
            r = {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
        out.append(r)
    return out


def load(precision_dtype=None):
    import torch
    from loraplane.api.finetunejob import LoraSpec
    from loraplane_trainer.smollm2 import ensure_smollm2
    from loraplane_trainer.training.chat import tokenize_all
    from loraplane_trainer.training.lora import lora_config
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = ensure_smollm2(Path(os.environ.get("LORAPLANE_CACHE", ROOT / ".cache")) / "models" / "SmolLM2-135M-Instruct")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(model, lora_config(LoraSpec(r=8, alpha=32, dropout=0.0), model.config.model_type))
    return model, tok, tokenize_all(tok, records(), 1024)


def run_ours(steps: int, per_step: int, precision: str) -> dict:
    from loraplane.api.finetunejob import TrainingSpec
    from loraplane_trainer.training.checkpoints import CheckpointStore
    from loraplane_trainer.training.cost import GpuClock
    from loraplane_trainer.training.loop import train
    from loraplane_trainer.training.precision import choose
    from loraplane_trainer.training.progress import ProgressWriter

    model, tok, examples = load()
    spec = TrainingSpec(learning_rate=2e-4, batch_size=per_step // 2, gradient_accumulation=2, max_steps=steps,
                        packing=True, precision=precision, early_stopping=None,
                        checkpoint_interval_steps=1_000_000, eval_steps=1_000_000)
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, examples, examples[:4], spec, choose(precision),
                       store=CheckpointStore(f"file://{tmp}/ckpt"), progress=ProgressWriter(f"file://{tmp}/p.json", "b"),
                       clock=GpuClock(), pad_id=tok.pad_token_id)
    return {"tokens_per_second": result.tokens_per_second}


def run_baseline(steps: int, per_step: int) -> dict:
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
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=per_step // 2,
                                 gradient_accumulation_steps=2, max_steps=steps, learning_rate=2e-4,
                                 logging_steps=1000, save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
                                 dataloader_num_workers=0, disable_tqdm=True, seed=42)
        trainer = CountingTrainer(model=model, args=args, train_dataset=data, data_collator=collator,
                                  callbacks=[Count()])
        t0 = time.monotonic()
        trainer.train()
        seconds = time.monotonic() - t0
    return {"tokens_per_second": real["tokens"] / seconds}


def child(variant: str, steps: int, per_step: int) -> None:
    import torch

    torch.manual_seed(0)
    if variant == "baseline":
        out = run_baseline(steps, per_step)
    else:
        out = run_ours(steps, per_step, variant.split("-", 1)[1])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--examples-per-step", type=int, default=16)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.steps, a.examples_per_step)
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRANSFORMERS_VERBOSITY": "error"}
    results = {}
    for variant in ("baseline", "ours-fp32", "ours-auto"):
        proc = subprocess.run([sys.executable, __file__, "--child", variant, "--steps", str(a.steps),
                               "--examples-per-step", str(a.examples_per_step)],
                              env=env, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            sys.exit(f"{variant} failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[len("RESULT "):])
    base = results["baseline"]
    print(f"train_throughput: SmolLM2-135M-Instruct, LoRA r=8 all-linear, {a.steps} steps of "
          f"{a.examples_per_step} examples from {DATA.relative_to(ROOT)}, {os.cpu_count()} CPUs")
    print(f"{'variant':<34}{'tokens/s':>10}{'peak RSS MiB':>14}{'vs baseline':>13}")
    labels = {"baseline": "transformers Trainer, padded, fp32", "ours-fp32": "loraplane, packed, fp32",
              "ours-auto": "loraplane, packed, precision auto"}
    for variant, r in results.items():
        print(f"{labels[variant]:<34}{r['tokens_per_second']:>10.0f}{r['peak_rss_mib']:>14.0f}"
              f"{r['tokens_per_second'] / base['tokens_per_second']:>12.2f}x")
    ratio = results["ours-auto"]["tokens_per_second"] / base["tokens_per_second"]
    print(f"ratio (loraplane / baseline tokens/s): {ratio:.2f}x (target >= 2x); peak RSS "
          f"{results['ours-auto']['peak_rss_mib']:.0f} vs {base['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
