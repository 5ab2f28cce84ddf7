"""A FineTuneJob's plan: peak memory per GPU, the GPUs and strategy it fits, time and cost.

Time comes from a throughput model with stated assumptions (`ASSUMPTIONS`): the FLOPs a
LoRA step needs per token (forward, backward through the frozen weights to the inputs,
attention over the example, the output head on target tokens; recompute with gradient
checkpointing) at an assumed model-FLOPs utilisation of the GPU's dense bf16 peak, times a
scaling efficiency over several GPUs and nodes. Cost is GPU-hours x price per GPU-hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..api.finetunejob import FineTuneJobSpec, ParallelStrategy
from .gpus import GIB, GPUS, GpuType, find_gpu
from .memory import MemoryEstimate, Strategy, estimate_memory, lora_params
from .shape import ModelShape

BYTES_PER_TOKEN = 4.0  # JSONL bytes per token of text (English; keys and chat template roughly cancel)
TARGET_FRACTION = 0.5  # share of a packed row's tokens that are answer tokens, when not measured
MFU = {False: 0.40, True: 0.25}  # assumed utilisation of dense bf16 peak: LoRA / QLoRA (dequantisation)
SCALING_IN_NODE = 0.90  # per-GPU efficiency of data parallel / FSDP within a node
SCALING_ACROSS_NODES = 0.80  # ... across nodes (gradient or shard traffic over the network)
GPUS_PER_NODE = 8  # when the plan has to propose nodes
HEADROOM = 0.95  # a plan fits when it needs at most this share of the GPU's memory
ASSUMPTIONS = (
    f"~{BYTES_PER_TOKEN:g} dataset bytes per token",
    f"MFU {MFU[False]:.0%} (LoRA) / {MFU[True]:.0%} (QLoRA) of dense bf16 peak",
    f"scaling {SCALING_IN_NODE:.0%} per GPU within a node, {SCALING_ACROSS_NODES:.0%} across nodes",
    f"fits at <= {HEADROOM:.0%} of GPU memory",
)


@dataclass(frozen=True)
class DatasetSize:
    """How much a run trains on, as far as it is known before the dataset is prepared."""

    train_tokens: int  # tokens of one epoch of the training split, augmentation included
    examples: int | None = None  # training examples per epoch (augmented included), when counted
    longest_example: int | None = None  # tokens of the longest example, when measured
    source: str = ""

    @classmethod
    def of_bytes(cls, nbytes: int, *, validation_split: float, variations_per_example: int = 0,
                 lines: int | None = None, longest_line_bytes: int | None = None, source: str = "") -> DatasetSize:
        """Estimate from a JSONL file's size (and, when read, its line count and longest line)."""
        keep = (1 - validation_split) * (1 + variations_per_example)
        return cls(
            train_tokens=int(nbytes / BYTES_PER_TOKEN * keep),
            examples=int(lines * keep) if lines else None,
            longest_example=math.ceil(longest_line_bytes / BYTES_PER_TOKEN) if longest_line_bytes else None,
            source=source,
        )


@dataclass(frozen=True)
class GpuFit:
    """One way to run the job on one GPU type: strategy, GPUs, memory per GPU, whether it fits."""

    gpu: GpuType
    strategy: Strategy
    gpus: int
    nodes: int
    memory: MemoryEstimate
    fits: bool
    seconds: float | None = None
    price_per_hour: float | None = None

    @property
    def gpu_hours(self) -> float | None:
        return None if self.seconds is None else self.seconds * self.gpus / 3600

    @property
    def cost(self) -> float | None:
        hours = self.gpu_hours
        return None if hours is None or self.price_per_hour is None else hours * self.price_per_hour


@dataclass(frozen=True)
class Plan:
    shape: ModelShape
    lora_params: int
    tokens_per_micro_batch: int
    train_tokens: int | None  # over the whole run
    job: GpuFit | None  # the resources the job asks for; None when it names no known GPU or none at all
    by_gpu: tuple[GpuFit, ...]  # the smallest way to run it on each GPU of the table
    checkpointing: MemoryEstimate | None = None  # the job's strategy with gradient checkpointing
    notes: tuple[str, ...] = field(default_factory=tuple)
    nodes_needed: int | None = None  # nodes of resources.gpus GPUs of the asked type the job needs to fit
    gradient_checkpointing: bool = False  # training.gradientCheckpointing: every fit above counts with it

    @property
    def fits(self) -> bool | None:
        return None if self.job is None else self.job.fits

    def summary(self) -> str:
        """One line for status.message and events."""
        if self.job is None:
            return f"{self.shape.params / 1e9:.2f}B parameters; " + "; ".join(self.notes)
        j = self.job
        need = f"needs {j.memory.total / GIB:.1f} GiB per GPU ({j.strategy}, {j.gpus} x {j.gpu.label}" + \
            (f" on {j.nodes} nodes" if j.nodes > 1 else "") + \
            (", gradient checkpointing)" if self.gradient_checkpointing else ")")
        if j.fits:
            return need
        options = ", ".join(f"{f.gpus} x {f.gpu.key} {f.strategy}" for f in self.by_gpu if f.fits) or "none in the table"
        asked = f"; asks {j.nodes} node(s), needs {self.nodes_needed}" if self.nodes_needed else ""
        usable = j.gpu.memory_gib * HEADROOM
        hint = ""
        if self.checkpointing is not None and self.checkpointing.total < j.memory.total \
                and self.checkpointing.total / GIB <= usable:
            hint = f"; with training.gradientCheckpointing: true it needs {self.checkpointing.total / GIB:.1f} GiB"
        return f"{need}, has {usable:.1f} GiB usable{hint}{asked}; fits: {options}"


def flops_per_token(shape: ModelShape, context: int, *, target_fraction: float, checkpointing: bool) -> float:
    """Training FLOPs per token of LoRA: frozen projections need the input gradient only (2N back, not 4N)."""
    linear = 2 * shape.linear_params
    attention = 2 * shape.layers * shape.q_dim * context  # QK^T and AV, causal (half the square)
    head = 2 * shape.vocab * shape.hidden * target_fraction
    forward = linear + attention + head
    backward = linear + 2 * attention + head
    return forward + backward + (forward if checkpointing else 0)


def tokens_per_second(shape: ModelShape, gpu: GpuType, gpus: int, nodes: int, strategy: Strategy, context: int,
                      checkpointing: bool = False) -> float:
    flops = flops_per_token(shape, context, target_fraction=TARGET_FRACTION,
                            checkpointing=checkpointing or strategy.quantized)
    scaling = 1.0 if gpus == 1 else (SCALING_IN_NODE if nodes == 1 else SCALING_ACROSS_NODES)
    return gpus * scaling * MFU[strategy.quantized] * gpu.bf16_tflops * 1e12 / flops


def _run_tokens(spec: FineTuneJobSpec, data: DatasetSize | None, micro: int) -> int | None:
    t = spec.training
    if t.max_steps:
        per_example = (data.train_tokens / data.examples) if data and data.examples else None
        if per_example is None:
            return None
        return int(min(t.max_steps * t.batch_size * t.gradient_accumulation * per_example,
                       (data.train_tokens * t.epochs)))
    return None if data is None else data.train_tokens * t.epochs


def _fit(shape: ModelShape, spec: FineTuneJobSpec, gpu: GpuType, strategy: Strategy, gpus: int, nodes: int,
         micro: int, targets: int, tokens: int | None, context: int, price: float | None,
         checkpointing: bool = False) -> GpuFit:
    checkpointing = checkpointing or spec.training.gradient_checkpointing
    mem = estimate_memory(shape, strategy=strategy, world=gpus, r=spec.lora.r, target_modules=spec.lora.target_modules,
                          dropout=spec.lora.dropout, tokens_per_micro_batch=micro,
                          target_tokens_per_micro_batch=targets, precision=_precision(spec), on_gpu=True,
                          checkpointing=checkpointing)
    seconds = None
    if tokens is not None:
        seconds = tokens / tokens_per_second(shape, gpu, gpus, nodes, strategy, context, checkpointing)
    return GpuFit(gpu, strategy, gpus, nodes, mem, mem.total <= gpu.memory_bytes * HEADROOM, seconds, price)


def _precision(spec: FineTuneJobSpec) -> str:
    return "bf16" if spec.training.precision == "auto" else spec.training.precision


def job_strategy(spec: FineTuneJobSpec, world: int, *, replica_fits: bool = True) -> Strategy:
    """What the trainer runs for this spec on `world` GPUs: a replica per GPU (one GPU, DDP, QLoRA) unless
    resources.strategy asks for FSDP, or is Auto and a replica does not fit one GPU (`replica_fits`)."""
    choice = spec.resources.strategy
    shard = world > 1 and (choice is ParallelStrategy.FSDP or (choice is ParallelStrategy.AUTO and not replica_fits))
    if spec.lora.quantization == "4bit":
        return Strategy.QLORA_FSDP if shard else Strategy.QLORA
    if shard:
        return Strategy.FSDP
    return Strategy.DDP if world > 1 else Strategy.SINGLE


def nodes_needed(shape: ModelShape, spec: FineTuneJobSpec, gpu: GpuType, micro: int, targets: int,
                 context: int, max_nodes: int = 64) -> int | None:
    """The fewest nodes of resources.gpus GPUs of this type on which the job fits (sharding when it must)."""
    per_node = max(1, spec.resources.gpus)
    nodes = 1
    while nodes <= max_nodes:
        world = per_node * nodes
        strategy = job_strategy(spec, world, replica_fits=False)
        if _fit(shape, spec, gpu, strategy, world, nodes, micro, targets, None, context, None).fits:
            return nodes
        nodes *= 2
    return None


def smallest_fit(shape: ModelShape, spec: FineTuneJobSpec, gpu: GpuType, micro: int, targets: int,
                 tokens: int | None, context: int, price: float | None) -> GpuFit:
    """The fewest GPUs of this type that hold the job: one GPU, QLoRA on one, then FSDP / QLoRA + FSDP on 2..256."""
    tries = [(Strategy.SINGLE, 1), (Strategy.QLORA, 1)]
    for n in (2, 4, 8, 16, 32, 64, 128, 256):
        tries += [(Strategy.FSDP, n), (Strategy.QLORA_FSDP, n)]
    last = None
    for strategy, n in tries:
        nodes = max(1, math.ceil(n / GPUS_PER_NODE))
        last = _fit(shape, spec, gpu, strategy, n, nodes, micro, targets, tokens, context, price)
        if last.fits:
            return last
    assert last is not None
    return last


def make_plan(spec: FineTuneJobSpec, shape: ModelShape, data: DatasetSize | None = None, *,
              gpus: tuple[GpuType, ...] = GPUS, prices: dict[str, float] | None = None,
              tokens_per_micro_batch: int | None = None, target_tokens: int | None = None) -> Plan:
    """The plan of a spec on a shape. The micro-batch is batchSize examples of the longest example when known,
    else of maxTokens (the worst case the trainer can meet)."""
    t, res = spec.training, spec.resources
    longest = min(data.longest_example, t.max_tokens) if data and data.longest_example else t.max_tokens
    micro = tokens_per_micro_batch or t.batch_size * longest
    targets = target_tokens if target_tokens is not None else int(micro * TARGET_FRACTION)
    context = longest if t.packing else longest  # attention spans one example either way
    tokens = _run_tokens(spec, data, micro)
    prices = prices or {}
    notes: list[str] = [f"model {shape.params / 1e9:.2f}B parameters ({shape.source})"]
    requested = find_gpu(res.gpu_type, gpus)
    nodes = res.nodes

    def price(gpu: GpuType) -> float:
        if requested is not None and gpu.key == requested.key and res.price_per_gpu_hour is not None:
            return res.price_per_gpu_hour
        return prices.get(gpu.key, gpu.price_per_hour)

    job = None
    checkpointed = None
    needed = None
    if res.gpus == 0:
        notes.append("resources.gpus is 0: a CPU run, not planned against GPUs")
    elif requested is None:
        notes.append(f"resources.gpuType {res.gpu_type!r} is not in the GPU table: not checked" if res.gpu_type
                     else "no resources.gpuType: the fit is not checked")
    else:
        world = res.gpus * nodes
        replica = _fit(shape, spec, requested, job_strategy(spec, 1), 1, 1, micro, targets, None, context, None)
        strategy = job_strategy(spec, world, replica_fits=replica.fits)
        job = _fit(shape, spec, requested, strategy, world, nodes, micro, targets, tokens, context, price(requested))
        needed = job.nodes if job.fits else nodes_needed(shape, spec, requested, micro, targets, context)
        if not strategy.quantized:
            checkpointed = _fit(shape, spec, requested, strategy, world, nodes, micro, targets, tokens, context,
                                price(requested), checkpointing=True).memory
    if tokens is None:
        notes.append("dataset size unknown: no time or cost")
    by_gpu = tuple(smallest_fit(shape, spec, g, micro, targets, tokens, context, price(g)) for g in gpus)
    return Plan(shape=shape, lora_params=lora_params(shape, spec.lora.r, spec.lora.target_modules),
                tokens_per_micro_batch=micro, train_tokens=tokens, job=job, by_gpu=by_gpu,
                checkpointing=checkpointed, notes=tuple(notes), nodes_needed=needed,
                gradient_checkpointing=t.gradient_checkpointing)
