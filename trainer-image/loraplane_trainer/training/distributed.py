"""Several GPUs (and nodes): one process per GPU started by torch's elastic launcher (what `torchrun` runs).

Data parallel with PyTorch's DistributedDataParallel: every rank holds the whole model and trains on a
share of each optimizer step's examples balanced by tokens (`balanced_shard`); DDP averages the LoRA
gradients over the ranks in the step's one synchronised backward, so every rank applies the same update.
Only rank 0 writes anything (progress.json, checkpoints, evaluation, the published adapter).

With `--strategy fsdp` (LORAPLANE_STRATEGY=fsdp in the workers' environment) the model is sharded with
FSDP2 (`torch.distributed.fsdp.fully_shard`) instead: each decoder layer is one unit, the model around
them the root; the frozen base weights and the LoRA weights, gradients and AdamW state are split over
the ranks and gathered one layer at a time. Everything that reads the weights then takes every rank:
the validation loss and the post-training evaluation run on all ranks (same inputs, same answers; rank 0
writes), and checkpoints gather the LoRA weights and optimizer state to full tensors on every rank
(`lora_state`, `optimizer_state`, torch.distributed.checkpoint's full state dicts), which rank 0 writes
in the same files as a one-process run (the optimizer state keyed by parameter name).

Without WORLD_SIZE in the environment (or WORLD_SIZE=1) `context()` is the single-process `SINGLE` and
every helper here is a no-op, so the one-process path does exactly what it did before.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

# Rank 0 evaluates the base model (greedy generation) while the others wait: the default 30 minutes is short.
WAIT = timedelta(hours=4)


STRATEGY_ENV = "LORAPLANE_STRATEGY"
FSDP = "fsdp"


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    sharded: bool = False  # FSDP2 rather than DDP

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Context()


def context() -> Context:
    """The process's place in a torchrun launch, from the environment torchrun sets."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Context(rank=int(os.environ["RANK"]), world_size=world,
                   local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                   sharded=os.environ.get(STRATEGY_ENV, "").lower() == FSDP)


def init(ctx: Context) -> str | None:
    """Join the process group (nccl on CUDA, gloo on CPU); returns the device this rank uses, or None."""
    if not ctx.enabled:
        return None
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(ctx.local_rank)
        backend, device = "nccl", f"cuda:{ctx.local_rank}"
    else:
        backend, device = "gloo", "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=WAIT)
    return device


def shutdown(ctx: Context) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        import torch.distributed as dist

        dist.barrier()


def share(ctx: Context, obj: Any) -> Any:
    """Rank 0's `obj` on every rank (anything picklable)."""
    if not ctx.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_scalars(ctx: Context, *values: float) -> list[float]:
    """Each value summed over the ranks."""
    if not ctx.enabled:
        return list(values)
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return t.tolist()


def broadcast_params(ctx: Context, params: list) -> None:
    """Rank 0's initial LoRA weights everywhere (peft initialises them at random on each rank)."""
    if not ctx.enabled:
        return
    import torch.distributed as dist

    for p in params:
        dist.broadcast(p.data, src=0)


def balanced_shard(ctx: Context, indices: list[int], lengths: list[int]) -> list[int]:
    """This rank's share of one step's example indices, balanced by tokens (longest first to the lightest rank).

    Deterministic, so every rank computes the same assignment without talking to the others.
    """
    if not ctx.enabled:
        return indices
    loads = [0] * ctx.world_size
    shares: list[list[int]] = [[] for _ in range(ctx.world_size)]
    for i, n in sorted(zip(indices, lengths, strict=True), key=lambda t: (-t[1], t[0])):
        rank = min(range(ctx.world_size), key=lambda r: (loads[r], len(shares[r]), r))
        loads[rank] += n
        shares[rank].append(i)
    return sorted(shares[ctx.rank])


def gradient_sync(ctx: Context, ddp, last: bool):
    """Context for one micro-batch's forward and backward: DDP (FSDP) reduces only in the step's last one."""
    import contextlib

    if ctx.sharded:
        ddp.set_requires_gradient_sync(last)
        return contextlib.nullcontext()
    return contextlib.nullcontext() if last or not ctx.enabled else ddp.no_sync()


def wrap(ctx: Context, model):
    """The module to run forward on: DistributedDataParallel around the model (only the trainable LoRA
    parameters are reduced), or under FSDP the sharded transformers model inside peft's wrapper.

    `init_sync=False`: the frozen base weights are identical on every rank (loaded from the same files);
    the LoRA weights, which peft initialises at random per rank, are broadcast by `broadcast_params`.
    """
    if not ctx.enabled:
        return model
    if ctx.sharded:
        return shard(model)
    import torch
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [ctx.local_rank] if torch.cuda.is_available() else None
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False, init_sync=False)


def _is_layer(module) -> bool:
    return type(module).__name__.endswith("DecoderLayer")


def shard(model):
    """FSDP2 over a peft model: each decoder layer a unit, the transformers model (embeddings, norm, head) the
    root, which is returned. peft's wrappers call the transformers model's `forward` directly, past FSDP's
    hooks, so forward (training, evaluation, generation) goes through the returned root."""
    from torch.distributed.fsdp import fully_shard

    base = model.get_base_model()
    layers = [m for m in base.modules() if _is_layer(m)]
    if not layers:
        raise RuntimeError(f"FSDP: no decoder layers found in {type(base).__name__}")
    for layer in layers:
        fully_shard(layer)
    fully_shard(base)
    return base


def forward_module(ctx: Context, model):
    """What evaluation runs forward on: the sharded root under FSDP, the model itself otherwise (and before
    training, when the model is not yet peft's nor sharded)."""
    if ctx.sharded and ctx.enabled and hasattr(model, "get_base_model"):
        return model.get_base_model()
    return model


def _model_key(peft_key: str, adapter: str = "default") -> str:
    """peft's checkpoint key (`...q_proj.lora_A.weight`) as the module's parameter name (`...lora_A.default.weight`)."""
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"):
        peft_key = peft_key.replace(f".{part}.", f".{part}.{adapter}.")
    return peft_key


def full_lora_parameters(model) -> dict:
    """The trainable (LoRA) parameters by module name, sharded ones gathered: a collective under FSDP (every
    rank calls it; the parameters come in the same order on every rank)."""
    from torch.distributed.tensor import DTensor

    full = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            t = p.detach()
            full[name] = (t.full_tensor() if isinstance(t, DTensor) else t).cpu().clone()
    return full


def lora_state(ctx: Context, model) -> dict:
    """The LoRA weights as peft saves them, full tensors on the CPU (under FSDP: every rank must call it)."""
    from peft import get_peft_model_state_dict

    if not (ctx.sharded and ctx.enabled):
        return {k: v.detach().clone().cpu() for k, v in get_peft_model_state_dict(model).items()}
    return get_peft_model_state_dict(model, state_dict=full_lora_parameters(model))


def load_lora(ctx: Context, model, state: dict) -> None:
    """Set the LoRA weights from peft's keys (as saved by `lora_state`), sharding them under FSDP."""
    from peft import set_peft_model_state_dict

    if not (ctx.sharded and ctx.enabled):
        set_peft_model_state_dict(model, state)
        return
    import torch
    from torch.distributed.tensor import DTensor, distribute_tensor

    full = {_model_key(k): v for k, v in state.items()}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in full]
    if missing:
        raise KeyError(f"LoRA weights missing from the checkpoint: {', '.join(missing[:3])}")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in full:
                t = full[name].to(device=p.device, dtype=p.dtype)
                p.copy_(distribute_tensor(t, p.device_mesh, p.placements) if isinstance(p, DTensor) else t)


def optimizer_state(ctx: Context, model, optimizer) -> dict:
    """The optimizer's state dict; under FSDP its full form (parameter names as keys), gathered on every rank."""
    if not (ctx.sharded and ctx.enabled):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(ctx: Context, model, optimizer, state: dict) -> None:
    if not (ctx.sharded and ctx.enabled):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def _comm_device() -> str:
    import torch
    import torch.distributed as dist

    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"


def launch(nproc: int, argv: list[str], *, nnodes: int = 1, node_rank: int = 0, rdzv_endpoint: str | None = None,
           run_id: str | None = None) -> int:
    """Run `python -m loraplane_trainer <argv>` in `nproc` processes on this node, as `torchrun` does.

    One node: `torchrun --standalone`. Several: `torchrun --nnodes N --rdzv-backend c10d --rdzv-endpoint
    <node 0>:<port> --rdzv-id <run id>`, node 0 hosting the rendezvous store (`is_host`, so that nodes
    sharing a host name, as in tests, do not all try to host it). Uses torch's launcher API rather than the
    torchrun command because torchrun exits 1 whenever a worker fails, and the Job's podFailurePolicy
    needs the trainer's own exit codes (bad input 42, quality gate 43).
    """
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nnodes == 1:
        config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                              rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    else:
        config = LaunchConfig(min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc, run_id=run_id or "loraplane",
                              rdzv_backend="c10d", rdzv_endpoint=rdzv_endpoint or "",
                              rdzv_configs={"is_host": node_rank == 0, "join_timeout": 900}, max_restarts=0)
    try:
        elastic_launch(config, sys.executable)("-m", "loraplane_trainer", *argv)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    return 0
