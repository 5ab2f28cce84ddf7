"""The GPUs a plan is made for: memory, bf16 dense tensor throughput and a default hourly price.

Memory is what the device reports (GiB). TFLOP/s are the vendors' dense bf16 tensor-core
figures (no sparsity). Prices are per GPU-hour in USD: the RTX 3090 and H100 figures are
the ones our users quoted (community cloud); the others are typical on-demand list
prices and only a default — a job's `resources.pricePerGpuHour` wins for its own GPU,
and `loraplane plan --prices FILE` replaces the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class GpuType:
    key: str  # short name used in tables and --gpu
    label: str  # human name
    memory_gib: float
    bf16_tflops: float
    price_per_hour: float
    pattern: str  # regex on the nvidia.com/gpu.product label (case-insensitive)

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)


GPUS: tuple[GpuType, ...] = (
    GpuType("rtx3090", "RTX 3090 24GB", 24.0, 71.0, 0.22, r"3090"),
    GpuType("l4", "L4 24GB", 22.5, 121.0, 0.80, r"\bL4\b|-L4$"),
    GpuType("a100-40gb", "A100 40GB", 40.0, 312.0, 1.29, r"A100.*40"),
    GpuType("a100-80gb", "A100 80GB", 80.0, 312.0, 1.79, r"A100.*80"),
    GpuType("h100-pcie", "H100 PCIe 80GB", 79.6, 756.0, 2.86, r"H100.*PCIE"),
    GpuType("h100", "H100 SXM 80GB", 79.6, 989.0, 3.78, r"H100"),
    GpuType("h200", "H200 141GB", 140.4, 989.0, 4.50, r"H200"),
)


def find_gpu(name: str | None, gpus: tuple[GpuType, ...] = GPUS) -> GpuType | None:
    """The table entry for a key (`h100`) or a node label value (`NVIDIA-A100-SXM4-80GB`); None if unknown."""
    if not name:
        return None
    for gpu in gpus:
        if name.lower() == gpu.key:
            return gpu
    for gpu in gpus:
        if re.search(gpu.pattern, name, re.IGNORECASE):
            return gpu
    return None
