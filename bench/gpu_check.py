"""GPU check: LoRA (bf16) and QLoRA (4-bit) training of a randomly initialised Llama-3-8B-shaped model
through the trainer's own loop (packing, autocast, head on target tokens, checkpoints), with no model hub.

Prints tokens/s, model FLOPs utilisation against the GPU's dense bf16 peak, and peak GPU memory against
the plan's prediction (loraplane.planning) for the same micro-batches. Run by bench/gpu_check.sh.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch
from loraplane.api.finetunejob import LoraSpec, TrainingSpec
from loraplane.planning import Strategy, estimate_memory, find_gpu, model_shape
from loraplane.planning.plan import flops_per_token
from loraplane_trainer.training.chat import IGNORE, TokenizedExample
from loraplane_trainer.training.checkpoints import CheckpointStore
from loraplane_trainer.training.cost import GpuClock
from loraplane_trainer.training.loop import train
from loraplane_trainer.training.lora import add_adapter
from loraplane_trainer.training.packing import step_batches
from loraplane_trainer.training.precision import choose
from loraplane_trainer.training.progress import ProgressWriter

MODEL = "meta-llama/Meta-Llama-3-8B"  # the shape only (planning/known_models.json): no download
SMOKE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # --smoke: a few steps on the CPU, to check the script


def examples(n: int, vocab: int, seed: int) -> list[TokenizedExample]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(256, 1024)
        ids = [rng.randrange(vocab) for _ in range(length)]
        answer = length // 2
        out.append(TokenizedExample(ids, [IGNORE] * (length - answer) + ids[length - answer:]))
    return out


def build(quantized: bool, workdir: str, model: str = MODEL, device: str = "cuda"):
    from transformers import AutoModelForCausalLM, LlamaConfig

    shape = model_shape(model)
    config = LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                         num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                         intermediate_size=shape.intermediate, vocab_size=shape.vocab,
                         tie_word_embeddings=shape.tied_embeddings,
                         max_position_embeddings=8192, rope_theta=500000.0)
    if not quantized:
        with torch.device(device):
            net = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
        return net, shape
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    with torch.device("cuda"):
        net = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    net.save_pretrained(workdir)  # from_pretrained is where transformers quantises
    del net
    torch.cuda.empty_cache()
    q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                           bnb_4bit_compute_dtype=torch.bfloat16)
    net = AutoModelForCausalLM.from_pretrained(workdir, quantization_config=q, device_map={"": 0})
    return prepare_model_for_kbit_training(net), shape


def run(quantized: bool, steps: int, batch: int, smoke: bool = False) -> None:
    cuda = not smoke
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as work:
        model, shape = build(quantized, work, SMOKE_MODEL if smoke else MODEL, "cuda" if cuda else "cpu")
        lora = LoraSpec()
        model = add_adapter(model, lora, seed=0)
        spec = TrainingSpec(batch_size=batch, gradient_accumulation=1, max_steps=steps, max_tokens=1024,
                            learning_rate=1e-4, checkpoint_interval_steps=10_000, early_stopping=None,
                            eval_steps=10_000)
        data = examples(steps * batch, shape.vocab, seed=0)
        val = examples(4, shape.vocab, seed=1)
        precision = choose("bf16", device="cuda" if cuda else "cpu")
        micro = max((b.input_ids.numel(), b.target_tokens) for b in
                    step_batches(data, list(range(batch)), packing=True, batch_size=batch, row_tokens=1024, pad_id=0))
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.monotonic()
        result = train(model, data, val, spec, precision, store=CheckpointStore(f"file://{work}/ckpt"),
                       progress=ProgressWriter(f"file://{work}/progress.json", "gpu-check"), clock=GpuClock(),
                       pad_id=0)
        wall = time.monotonic() - t0
    peak = torch.cuda.max_memory_allocated() if cuda else 1
    name = torch.cuda.get_device_name(0) if cuda else "cpu (smoke)"
    gpu = find_gpu(name.replace(" ", "-"))
    strategy = Strategy.QLORA if quantized else Strategy.SINGLE
    predicted = estimate_memory(shape, strategy=strategy, world=1, r=lora.r, target_modules=lora.target_modules,
                                dropout=lora.dropout, tokens_per_micro_batch=micro[0],
                                target_tokens_per_micro_batch=micro[1], precision="bf16", on_gpu=True)
    tps = result.tokens_per_second or 0.0
    flops = flops_per_token(shape, 640, target_fraction=0.5, checkpointing=quantized)
    mfu = tps * flops / (gpu.bf16_tflops * 1e12) if gpu else float("nan")
    print(f"{'QLoRA 4-bit' if quantized else 'LoRA bf16'} on {name}: {result.steps} steps in {wall:.0f} s, "
          f"{tps:,.0f} tokens/s, MFU {mfu:.1%} (of {gpu.bf16_tflops if gpu else '?'} TFLOP/s); "
          f"peak {peak / 2**30:.1f} GiB allocated vs plan {(predicted.total - predicted.overhead) / 2**30:.1f} GiB "
          f"(ratio {(predicted.total - predicted.overhead) / peak:.2f}; plan total with CUDA context "
          f"{predicted.total / 2**30:.1f} GiB)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--skip-qlora", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="2 steps of SmolLM2's shape on the CPU (checks the script)")
    args = ap.parse_args()
    if args.smoke:
        run(False, 2, 2, smoke=True)
        return
    run(False, args.steps, args.batch_size)
    if not args.skip_qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            print("QLoRA skipped: bitsandbytes is not installed (bring its wheel in bench/wheels/)")
            return
        run(True, max(10, args.steps // 8), args.batch_size)


if __name__ == "__main__":
    main()
