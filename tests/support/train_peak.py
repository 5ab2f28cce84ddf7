"""Measure the trainer's peak memory on a few LoRA steps of a model, for checking the plan's memory model.

Run as a process (`python -m tests.support.train_peak --model DIR ...`): it loads the model as the
trainer does (weights in the compute precision, LoRA from the spec, bf16 autocast where the CPU has it), runs the
trainer's own packing, loss and optimizer steps, and prints JSON: the process's resident memory
before the model is loaded, its peak during training (VmHWM, reset after loading so the load's
transient copies do not count), and the largest micro-batch's tokens and target tokens. Run it under the
allocator the trainer runs under (tests/integration/test_plan_memory.py preloads tcmalloc).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="prompt/completion JSONL")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--checkpointing", action="store_true", help="training.gradientCheckpointing")
    args = ap.parse_args()

    import torch
    from loraplane.api.finetunejob import LoraSpec
    from loraplane_trainer.training.chat import tokenize_all
    from loraplane_trainer.training.lora import add_adapter, checkpoint_activations
    from loraplane_trainer.training.packing import causal_lm_loss_sum, step_batches
    from loraplane_trainer.training.precision import choose
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    records = [json.loads(line) for line in Path(args.data).read_text().splitlines() if line.strip()]
    records = [{"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
               for r in records]
    examples = tokenize_all(tokenizer, records, args.max_tokens)
    before = _status_kib("VmRSS")
    precision = choose("auto")
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=precision.weights_dtype)
    model = add_adapter(model, LoraSpec(dropout=args.dropout), seed=0)
    if args.checkpointing:
        checkpoint_activations(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    model.train()
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the load's transient copies do not count
    after_load = _status_kib("VmRSS")
    micro_tokens = micro_targets = 0
    per_step = args.batch_size
    for step in range(args.steps):
        indices = list(range(step * per_step, (step + 1) * per_step))
        for batch in step_batches(examples, indices, packing=True, batch_size=args.batch_size,
                                  row_tokens=args.max_tokens, pad_id=tokenizer.eos_token_id or 0):
            micro_tokens = max(micro_tokens, int(batch.input_ids.numel()))
            micro_targets = max(micro_targets, batch.target_tokens)
            with precision.lora_inputs_uncast(model):  # as the training loop holds it
                with precision.autocast():
                    loss = causal_lm_loss_sum(model, batch) / max(batch.target_tokens, 1)
                loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(json.dumps({"rss_before_model_kib": before, "rss_after_load_kib": after_load,
                      "peak_kib": _status_kib("VmHWM"), "precision": precision.name, "checkpointing": args.checkpointing,
                      "tokens_per_micro_batch": micro_tokens, "target_tokens_per_micro_batch": micro_targets}))


if __name__ == "__main__":
    main()
