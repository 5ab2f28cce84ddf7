"""Checkpoints in object storage: written file by file, `state.json` last, so a half-written one is never used.

    <run>/checkpoints/step-00000120/  adapter_model.safetensors optimizer.pt scheduler.pt rng.pt state.json
    <run>/checkpoints/best/           adapter_model.safetensors best.json   (the best-by-validation weights)
"""

from __future__ import annotations

import io
import json
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from loraplane.storage.uris import filesystem, join
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .logs import log

STATE_FILE = "state.json"
STEP_RE = re.compile(r"^step-([0-9]+)$")
KEEP = 2


def rng_state() -> dict[str, Any]:
    """Every RNG's state in types torch.load(weights_only=True) reads: tensors, numbers, tuples."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
             "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


class CheckpointStore:
    """Save and find checkpoints of one run under `<run>/checkpoints/`."""

    def __init__(self, uri: str):
        self.uri = uri
        self.fs, self.base = filesystem(uri)

    def _write_dir(self, name: str, files: dict[str, bytes], marker: str) -> None:
        """Upload files, the marker last; anything already there under that name is replaced."""
        target = f"{self.base}/{name}"
        if self.fs.exists(target):
            self.fs.rm(target, recursive=True)
        self.fs.makedirs(target, exist_ok=True)  # local filesystems need it; object stores ignore it
        with tempfile.TemporaryDirectory() as tmp:
            for fname, data in files.items():
                Path(tmp, fname).write_bytes(data)
            for fname in [f for f in files if f != marker] + [marker]:
                self.fs.put_file(str(Path(tmp, fname)), f"{target}/{fname}")

    def save(self, step: int, adapter: dict[str, torch.Tensor], optimizer: dict[str, Any], scheduler,
             state: dict[str, Any]) -> str:
        """`optimizer` is the optimizer's state dict (under FSDP its full form, gathered from the ranks)."""
        name = f"step-{step:08d}"
        files = {
            "adapter_model.safetensors": save_safetensors({k: v.detach().cpu().contiguous() for k, v in adapter.items()}),
            "optimizer.pt": _torch_bytes(optimizer),
            "scheduler.pt": _torch_bytes(scheduler.state_dict()),
            "rng.pt": _torch_bytes(rng_state()),
            STATE_FILE: json.dumps({**state, "step": step}, indent=1).encode(),
        }
        self._write_dir(name, files, STATE_FILE)
        self._prune(keep=KEEP)
        log.info("checkpoint saved: %s", join(self.uri, name))
        return name

    def save_best(self, adapter: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
        files = {
            "adapter_model.safetensors": save_safetensors({k: v.detach().cpu().contiguous() for k, v in adapter.items()}),
            "best.json": json.dumps(info).encode(),
        }
        self._write_dir("best", files, "best.json")

    def complete_steps(self) -> list[int]:
        """Steps of the checkpoints whose state.json exists (complete ones), ascending."""
        try:
            entries = self.fs.ls(self.base, detail=False)
        except FileNotFoundError:
            return []
        steps = []
        for entry in entries:
            m = STEP_RE.match(entry.rstrip("/").rsplit("/", 1)[-1])
            if m and self.fs.exists(f"{self.base}/{m.group(0)}/{STATE_FILE}"):
                steps.append(int(m.group(1)))
        return sorted(steps)

    def load_latest(self) -> dict[str, Any] | None:
        """The newest complete checkpoint as {state, adapter, optimizer, scheduler, rng}, or None."""
        steps = self.complete_steps()
        if not steps:
            return None
        d = f"{self.base}/step-{steps[-1]:08d}"

        def read(fname: str) -> bytes:
            with self.fs.open(f"{d}/{fname}", "rb") as f:
                return f.read()

        return {
            "state": json.loads(read(STATE_FILE)),
            "adapter": load_safetensors(read("adapter_model.safetensors")),
            # weights_only: a checkpoint is data from object storage, never code to run.
            "optimizer": torch.load(io.BytesIO(read("optimizer.pt")), weights_only=True),
            "scheduler": torch.load(io.BytesIO(read("scheduler.pt")), weights_only=True),
            "rng": torch.load(io.BytesIO(read("rng.pt")), weights_only=True),
        }

    def load_best(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        d = f"{self.base}/best"
        if not self.fs.exists(f"{d}/best.json"):
            return None
        with self.fs.open(f"{d}/best.json", "rb") as f:
            info = json.loads(f.read())
        with self.fs.open(f"{d}/adapter_model.safetensors", "rb") as f:
            return load_safetensors(f.read()), info

    def _prune(self, keep: int) -> None:
        """Drop all but the newest `keep` complete checkpoints, and incomplete ones older than them."""
        steps = self.complete_steps()
        if len(steps) <= keep:
            return
        oldest_kept = steps[-keep]
        for entry in self.fs.ls(self.base, detail=False):
            m = STEP_RE.match(entry.rstrip("/").rsplit("/", 1)[-1])
            if m and int(m.group(1)) < oldest_kept:
                self.fs.rm(f"{self.base}/{m.group(0)}", recursive=True)
