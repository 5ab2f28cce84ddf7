"""GPU-seconds of a run and what they cost."""

from __future__ import annotations

import time

import torch


class GpuClock:
    """Accumulated wall time times the GPUs in use (0 on CPU), carried across resumes."""

    def __init__(self, already: float = 0.0):
        self.already = already
        self.gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        self.started = time.monotonic()

    @property
    def wall_seconds(self) -> float:
        return time.monotonic() - self.started

    @property
    def gpu_seconds(self) -> float:
        return self.already + self.wall_seconds * self.gpus


def estimated_cost(gpu_seconds: float, price_per_gpu_hour: float | None) -> str | None:
    """The cost as a decimal string with two places (status.estimatedCost), or None without a price."""
    if price_per_gpu_hour is None:
        return None
    return f"{gpu_seconds / 3600 * price_per_gpu_hour:.2f}"
