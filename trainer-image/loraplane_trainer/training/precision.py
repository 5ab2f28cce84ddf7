"""Device and precision: bf16 where the hardware runs it fast, fp32 otherwise; QLoRA only on CUDA."""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import QuantizationUnsupported

# CPU flags with fast bf16 matmuls (measured ~2x fp32 for LoRA training where present).
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    device: str  # "cuda" or "cpu"
    name: str  # bf16, fp16 or fp32
    why: str

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def weights_dtype(self) -> torch.dtype:
        """How the frozen base weights are stored: in the compute precision, on a CPU as on a GPU.

        fp32 weights under bf16 autocast cost a bf16 copy of every projection at every forward,
        kept for backward (half the model again in memory, and copy time); the LoRA weights,
        their gradients and the optimizer stay fp32 (peft keeps adapters fp32).
        """
        return self.autocast_dtype or torch.float32

    def autocast(self, model=None):
        """Mixed precision context: matmuls in the low precision, LoRA weights fp32.

        With `model`, peft's cast of each LoRA input to the adapter's fp32 is off inside it
        (`lora_inputs_uncast`): for a forward pass with no backward (evaluation).
        """
        if self.autocast_dtype is None:
            return torch.autocast(self.device, enabled=False)
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast(self.device, dtype=self.autocast_dtype))
        if model is not None:
            stack.enter_context(self.lora_inputs_uncast(model))
        return stack

    def lora_inputs_uncast(self, model):
        """peft's cast of each LoRA input to the adapter's fp32 off, under autocast (which casts it back for the
        matmul anyway: two copies for nothing). A training step holds it over its backward too: gradient
        checkpointing recomputes the forward there, and a recompute that casts saves other tensors than the
        forward did (torch refuses them)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        from peft.helpers import disable_input_dtype_casting

        return disable_input_dtype_casting(model)


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def choose(requested: str = "auto", *, device: str | None = None, flags: set[str] | None = None) -> Precision:
    """Pick the device and precision for `training.precision` (auto, bf16, fp16, fp32)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if requested != "auto":
        if requested == "fp16" and device == "cpu":
            return Precision(device, "bf16", "fp16 is not fast on CPU; bf16 instead")
        return Precision(device, requested, "training.precision")
    if device == "cuda":
        if torch.cuda.is_bf16_supported():
            return Precision(device, "bf16", "the GPU supports bf16")
        return Precision(device, "fp16", "the GPU lacks bf16")
    found = sorted((flags if flags is not None else cpu_flags()) & set(BF16_CPU_FLAGS))
    if found:
        return Precision(device, "bf16", f"the CPU has {', '.join(found)}")
    return Precision(device, "fp32", "the CPU has no fast bf16 (no AMX / AVX-512 bf16)")


def check_quantization(quantization: str, device: str) -> None:
    """4-bit QLoRA needs bitsandbytes on a CUDA GPU; refuse it elsewhere instead of silently ignoring it."""
    if quantization == "4bit" and device != "cuda":
        raise QuantizationUnsupported(
            "spec.lora.quantization: 4bit (QLoRA) needs a CUDA GPU with bitsandbytes; this pod has none. "
            "Set lora.quantization: none to train in full precision, or schedule onto a GPU."
        )


def cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """CPUs the container may use (cgroup v2 quota, rounded up), or None when unlimited."""
    try:
        quota, period = Path(path).read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def configure_threads() -> int:
    """Intra-op threads = CPUs this pod may really use (affinity and cgroup quota); OMP_NUM_THREADS wins.

    torch otherwise starts one thread per host core: in a pod limited to fewer CPUs its threads spin
    and wait on each other, and small steps (decoding above all) get many times slower.
    """
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cpu_quota()
    n = min(n, quota) if quota else n
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()
