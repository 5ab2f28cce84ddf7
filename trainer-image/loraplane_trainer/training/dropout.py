"""LoRA dropout on a CPU without torch's one-element-at-a-time mask generator."""

from __future__ import annotations

import torch
from torch import nn

# Each mask element is a 16-bit lane of a random int64 word, of which the low 15 bits are uniform
# (`random_()` draws int64 words on [0, 2**63 - 1], so the top lane's sign bit is always clear).
LANE_BITS = 0x7FFF
LANES = LANE_BITS + 1  # the keep probability is exact to 1/32768


class LaneMaskDropout(nn.Module):
    """Inverted dropout whose mask is cut from random 64-bit words, four 16-bit lanes each.

    On a CPU, `nn.Dropout` draws its mask element by element (`bernoulli_` on MT19937). peft
    puts one on the input of every adapted projection, and on SmolLM2-135M with all-linear
    targets those draws took 28% of a training step (profiled). Random words are drawn in bulk,
    about ten times faster for the same number of mask elements; the mask's distribution is the
    same up to the drop probability's rounding to 1/32768.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.threshold = round(p * LANES)  # a lane (uniform on [0, LANES)) below it is dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_()
        lanes = words.view(torch.int16)[:n].view(x.shape).bitwise_and_(LANE_BITS)
        return torch.where(lanes >= self.threshold, x, 0.0).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_lane_mask_dropout(model: nn.Module) -> int:
    """Swap peft's LoRA `nn.Dropout` layers for `LaneMaskDropout`; returns how many were swapped.

    For CPU training only: CUDA's generator (Philox) already draws masks in bulk.
    """
    swapped = 0
    for module in model.modules():
        layers = getattr(module, "lora_dropout", None)
        if not isinstance(layers, nn.ModuleDict):
            continue
        for name, layer in list(layers.items()):
            if type(layer) is nn.Dropout and layer.p > 0:
                layers[name] = LaneMaskDropout(layer.p)
                swapped += 1
    return swapped
