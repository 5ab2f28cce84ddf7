"""Checkpoints load as data only (torch.load weights_only): a pickled payload is refused, a real one resumes."""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import pytest
import torch
from loraplane_trainer.training.checkpoints import CheckpointStore, set_rng_state
from transformers import get_scheduler


def _saved(tmp_path):
    layer = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(layer.parameters(), lr=1e-3)
    scheduler = get_scheduler("cosine", optimizer, num_warmup_steps=1, num_training_steps=10)
    layer(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    store = CheckpointStore(f"file://{tmp_path}/ckpt")
    store.save(3, {"w": layer.weight.detach()}, optimizer.state_dict(), scheduler, {"history": []})
    return store


def test_a_real_checkpoint_loads_with_weights_only_and_restores_every_rng(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    store = _saved(tmp_path)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = store.load_latest()
    assert loaded["state"]["step"] == 3 and loaded["optimizer"]["state"]
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_a_checkpoint_carrying_code_is_refused(tmp_path):
    store = _saved(tmp_path)
    buf = io.BytesIO()
    torch.save({"state": {}, "param_groups": [], "x": _Payload()}, buf, pickle_module=pickle)
    step_dir = tmp_path / "ckpt" / "step-00000003"
    (step_dir / "optimizer.pt").write_bytes(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        store.load_latest()
