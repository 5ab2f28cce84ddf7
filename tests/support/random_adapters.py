"""Many tiny LoRA adapters of SmolLM2-135M-Instruct with random weights, each with its own greedy answer.

Real peft adapters (r=8 on q/v/o, `init_lora_weights=False`, B scaled up so each
one moves the greedy output far from the base model's), published with a
manifest like the trainer's. Made once per recipe (adapter i is the same whatever the count), cached under
LORAPLANE_CACHE; about a second each.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from tests.support.adapters import publish_dir

RECIPE = {"r": 8, "alpha": 16, "targets": ["q_proj", "v_proj", "o_proj"], "b_scale": 30.0, "seed0": 1000}


def _key() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def ensure_random_adapters(base_dir: Path, count: int, cache_root: Path | None = None) -> list[Path]:
    """The first `count` published adapter directories (random weights, seed RECIPE["seed0"] + i), made once."""
    root = Path(cache_root or os.environ.get("LORAPLANE_CACHE", ".cache")) / "random-adapters" / _key()
    paths = [root / f"a{i:03d}" for i in range(count)]
    if all((p / "manifest.json").exists() for p in paths):
        return paths
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=RECIPE["r"], lora_alpha=RECIPE["alpha"], target_modules=RECIPE["targets"],
                        lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    params = [(n, p) for n, p in model.named_parameters() if "lora_" in n]
    for i, final in enumerate(paths):
        if (final / "manifest.json").exists():
            continue
        gen = torch.Generator().manual_seed(RECIPE["seed0"] + i)
        with torch.no_grad():
            for name, p in params:
                scale = RECIPE["b_scale"] / p.shape[1] if "lora_B" in name else 1.0 / p.shape[1] ** 0.5
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
        partial = root / f".{final.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        model.save_pretrained(partial)
        publish_dir(partial, job="many", version=final.name, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
        shutil.rmtree(final, ignore_errors=True)
        partial.rename(final)
    torch.set_num_threads(threads)
    return paths
