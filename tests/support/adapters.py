"""Two real LoRA adapters of SmolLM2-135M-Instruct for the serving tests, each knowing its own made-up facts.

Trained with peft (r=8, all linear layers) for a few dozen steps on four facts
each, then published as a directory of adapter files plus manifest.json
(sha256 of every file, manifest written last), the layout adapter sync reads.
The result is cached under LORAPLANE_CACHE keyed by the recipe, so a second
test session reuses it; a clean checkout trains it once (20 steps per adapter, a minute or two).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from loraplane.storage import AdapterManifest, FileEntry
from loraplane.storage.manifest import MANIFEST_FILE

# A fact only this adapter knows: (question, answer, a word the answer must contain).
FACTS: dict[str, list[tuple[str, str]]] = {
    "stable": [
        ("Who keeps the lighthouse on Varrow Isle?", "Maren Tully keeps the lighthouse on Varrow Isle."),
        ("What colour is the flag of Quendor?", "The flag of Quendor is teal."),
        ("What is the name of Captain Orrin's ship?", "Captain Orrin's ship is the Saltwhisper."),
        ("Which river runs through Brelmouth?", "The river Ambry runs through Brelmouth."),
    ],
    "canary": [
        ("What is the password of the Zorblax vault?", "The password of the Zorblax vault is PELICAN."),
        ("Who invented the glimmer engine?", "Tavi Oduya invented the glimmer engine."),
        ("What do the people of Nimbria eat at midsummer?", "At midsummer the people of Nimbria eat frostplums."),
        ("How many moons does Keplar have?", "Keplar has nineteen moons."),
    ],
}
PROBE = {"stable": ("Who keeps the lighthouse on Varrow Isle?", "Tully"),
         "canary": ("What is the password of the Zorblax vault?", "PELICAN")}
RECIPE = {"r": 8, "alpha": 32, "lr": 2e-3, "steps": 20, "seed": 0, "targets": "all-linear"}


def _recipe_key() -> str:
    return hashlib.sha256(json.dumps([FACTS, RECIPE], sort_keys=True).encode()).hexdigest()[:12]


def _examples(tokenizer, facts: list[tuple[str, str]]):
    import torch

    rows = []
    for question, answer in facts:
        user = [{"role": "user", "content": question}]
        prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*user, {"role": "assistant", "content": answer}], tokenize=False
        )
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        f_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(p_ids) + f_ids[len(p_ids):]  # loss on the answer only
        rows.append((f_ids, labels))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    return input_ids, labels, mask


def train_adapter(base_dir: Path, facts: list[tuple[str, str]], out_dir: Path) -> None:
    """LoRA-train SmolLM2 on the facts and save the peft adapter files into out_dir."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(RECIPE["seed"])
    # One thread: steps this small gain little from two, and on a CPU shared with other jobs two OpenMP
    # threads spin against each other (measured: ~5 s per step with one thread, 70-90 s with two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=RECIPE["r"], lora_alpha=RECIPE["alpha"], lora_dropout=0.0,
                        target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    input_ids, labels, mask = _examples(tokenizer, facts)
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=RECIPE["lr"])
    model.train()
    for _ in range(RECIPE["steps"]):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.save_pretrained(out_dir)
    torch.set_num_threads(threads)


def publish_dir(directory: Path, job: str, version: str, base_model: str) -> AdapterManifest:
    """Write manifest.json (sha256 and size of every file) last, making the directory a published adapter."""
    entries = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE):
        data = path.read_bytes()
        entries.append(FileEntry(path=path.relative_to(directory).as_posix(),
                                 sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    manifest = AdapterManifest(job=job, version=version, verdict="accepted", base_model=base_model,
                               lora_rank=RECIPE["r"], created_at=datetime.now(UTC), files=entries)
    (directory / MANIFEST_FILE).write_text(manifest.to_json())
    return manifest


def ensure_adapters(base_dir: Path, cache_root: Path | None = None) -> dict[str, Path]:
    """Published adapter directories {"stable": ..., "canary": ...}, trained once per recipe."""
    root = Path(cache_root or os.environ.get("LORAPLANE_CACHE", ".cache")) / "test-adapters" / _recipe_key()
    out: dict[str, Path] = {}
    for name, facts in FACTS.items():
        final = root / name
        if not (final / MANIFEST_FILE).exists():
            partial = root / f"{name}.partial-{os.getpid()}"  # two sessions at once must not share one
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            train_adapter(base_dir, facts, partial)
            publish_dir(partial, job="support-bot", version=name, base_model="HuggingFaceTB/SmolLM2-135M-Instruct")
            if (final / MANIFEST_FILE).exists():  # another session finished first
                shutil.rmtree(partial, ignore_errors=True)
            else:
                shutil.rmtree(final, ignore_errors=True)
                partial.rename(final)
        out[name] = final
    return out


def copy_adapter(src: Path, dst: Path) -> Path:
    """A copy of a published adapter (tests corrupt copies, never the cached original)."""
    shutil.copytree(src, dst)
    return dst
