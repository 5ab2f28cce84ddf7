"""Memory, time and cost of a FineTuneJob before any GPU time: pure functions, no torch.

    shape = model_shape(spec.base_model)                 # from config.json, no weights
    plan = make_plan(spec, shape, DatasetSize.of_bytes(...))
    plan.fits, plan.job.peak_bytes, plan.by_gpu, plan.cost

See docs/training.md ("The plan") for the model and its measured error.
"""

from .gpus import GPUS, GpuType, find_gpu
from .memory import MemoryEstimate, Strategy, estimate_memory
from .plan import DatasetSize, GpuFit, Plan, make_plan
from .shape import ModelShape, ShapeUnknown, model_shape, shape_from_config

__all__ = [
    "GPUS", "DatasetSize", "GpuFit", "GpuType", "MemoryEstimate", "ModelShape", "Plan", "ShapeUnknown",
    "Strategy", "estimate_memory", "find_gpu", "make_plan", "model_shape", "shape_from_config",
]
