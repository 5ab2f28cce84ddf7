"""LoRA dropout with bulk-drawn masks (the CPU trainer's): nn.Dropout's distribution, gradient and modes."""

from __future__ import annotations

import pytest
import torch
from loraplane_trainer.training.dropout import LaneMaskDropout, use_lane_mask_dropout
from torch import nn


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5])
def test_drops_a_fraction_p_and_keeps_the_expectation(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # not a multiple of four lanes
    y = LaneMaskDropout(p).train()(x)
    dropped = float((y == 0).float().mean())
    assert dropped == pytest.approx(p, abs=0.003)
    assert float(y.mean()) == pytest.approx(1.0, abs=0.01)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)))


def test_masks_are_independent_across_elements_and_calls():
    torch.manual_seed(1)
    drop = LaneMaskDropout(0.5).train()
    a = drop(torch.ones(200_000)) != 0
    b = drop(torch.ones(200_000)) != 0
    # Independent halves agree on about half of the elements; neighbouring lanes of one word too.
    assert float((a == b).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert float((a[0::4] == a[1::4]).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert float((a[2::4] == a[3::4]).float().mean()) == pytest.approx(0.5, abs=0.01)


def test_the_gradient_flows_only_through_kept_elements_scaled():
    torch.manual_seed(2)
    x = torch.randn(64, 96, requires_grad=True)
    y = LaneMaskDropout(0.2).train()(x)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.8))
    assert bool((x.grad[~kept] == 0).all())


def test_eval_mode_and_zero_p_are_the_identity_and_bad_p_is_refused():
    x = torch.randn(8, 8)
    assert LaneMaskDropout(0.3).eval()(x) is x
    assert LaneMaskDropout(0.0).train()(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        LaneMaskDropout(1.0)


def test_seeded_runs_draw_the_same_masks():
    torch.manual_seed(3)
    a = LaneMaskDropout(0.1).train()(torch.ones(1000))
    torch.manual_seed(3)
    b = LaneMaskDropout(0.1).train()(torch.ones(1000))
    assert torch.equal(a, b)


def test_peft_lora_dropout_layers_are_swapped_and_identities_left():
    from peft import LoraConfig, get_peft_model

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(8, 8)
            self.v_proj = nn.Linear(8, 8)

        def forward(self, x):
            return self.v_proj(self.q_proj(x))

    model = get_peft_model(Tiny(), LoraConfig(r=2, lora_alpha=4, lora_dropout=0.1, target_modules=["q_proj", "v_proj"]))
    assert use_lane_mask_dropout(model) == 2
    assert sum(isinstance(m, LaneMaskDropout) for m in model.modules()) == 2
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert model(torch.randn(3, 8)).shape == (3, 8)
    undropped = get_peft_model(Tiny(), LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["q_proj"]))
    assert use_lane_mask_dropout(undropped) == 0
