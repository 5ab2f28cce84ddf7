"""The training loop: packed steps, mixed precision, checkpoints and resume, evaluation and early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from loraplane.api.finetunejob import TrainingSpec
from transformers import get_scheduler

from . import allocator, shared_prefix
from .chat import TokenizedExample
from .checkpoints import CheckpointStore, set_rng_state
from .cost import GpuClock
from .distributed import (
    SINGLE,
    Context,
    balanced_shard,
    broadcast_params,
    gradient_sync,
    load_lora,
    load_optimizer_state,
    lora_state,
    optimizer_state,
    share,
    sum_scalars,
    wrap,
)
from .evaluation import mean_loss
from .logs import log, progress_bar
from .packing import causal_lm_loss_sum, epoch_steps, step_batches
from .precision import Precision
from .progress import ProgressWriter, eta
from .stop_signal import Preempted, StopSignal

# On a CPU under glibc's malloc, hand freed pages back every this many steps: a trim costs about
# 0.17 s (7 % of a demo step) and the pages it returns are faulted in again; between trims resident
# memory grows about 40 MiB a step. Under tcmalloc a trim does nothing (allocator.trim).
TRIM_EVERY_STEPS = 10


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    train_loss: float | None
    best_eval_loss: float | None
    stopped_early: bool
    tokens_per_second: float | None
    history: list[dict[str, Any]] = field(default_factory=list)  # {"step", "epoch", "loss"} per step
    evals: list[dict[str, Any]] = field(default_factory=list)  # {"step", "epoch", "evalLoss"} per evaluation
    resumed_from: int | None = None
    gpu_seconds: float = 0.0
    held_eval_loss: float | None = None  # validation loss of the weights the model holds on return, if measured


def plan(n_train: int, spec: TrainingSpec) -> tuple[int, int]:
    """(optimizer steps per epoch, total optimizer steps)."""
    per_step = spec.batch_size * spec.gradient_accumulation
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    total = spec.max_steps or steps_per_epoch * spec.epochs
    return steps_per_epoch, total


def train(model, train_examples: list[TokenizedExample], val_examples: list[TokenizedExample], spec: TrainingSpec,
          precision: Precision, *, store: CheckpointStore, progress: ProgressWriter, clock: GpuClock,
          pad_id: int, dist: Context = SINGLE) -> TrainResult:
    """Train the LoRA parameters of a peft model in place; on return it holds the best weights.

    Under several ranks (`dist`), each trains on its share of every step's examples and only rank 0
    writes checkpoints and computes the validation loss.
    """
    device = next(model.parameters()).device
    steps_per_epoch, total = plan(len(train_examples), spec)
    per_step = spec.batch_size * spec.gradient_accumulation
    params = [p for p in model.parameters() if p.requires_grad]
    broadcast_params(dist, params)
    ddp = wrap(dist, model)  # DDP or FSDP's root under several ranks, the model itself in one process
    params = [p for p in model.parameters() if p.requires_grad]  # FSDP replaced them with sharded ones
    optimizer = torch.optim.AdamW(params, lr=spec.learning_rate, weight_decay=spec.weight_decay)
    scheduler = get_scheduler(spec.scheduler, optimizer, num_warmup_steps=math.ceil(spec.warmup_ratio * total),
                              num_training_steps=total)
    scaler = torch.amp.GradScaler(device.type) if precision.name == "fp16" else None
    state: dict[str, Any] = {"step": 0, "history": [], "evals": [], "best_eval_loss": None, "bad_evals": 0,
                             "real_tokens": 0, "train_seconds": 0.0, "gpu_seconds": 0.0, "stopped_early": False}
    resumed_from = None
    checkpoint = store.load_latest()
    best_weights = None
    if checkpoint is not None:
        load_lora(dist, model, checkpoint["adapter"])
        load_optimizer_state(dist, model, optimizer, checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        set_rng_state(checkpoint["rng"])
        state.update(checkpoint["state"])
        resumed_from = state["step"]
        clock.already = state["gpu_seconds"]
        best = store.load_best()
        if best is not None:
            best_weights = best[0]
        log.info("resuming from checkpoint at step %d/%d (no finished step is redone)", resumed_from, total)
    else:
        log.info("training: %d examples, %d steps per epoch, %d steps, %d examples per step, packing %s, %s",
                 len(train_examples), steps_per_epoch, total, per_step, "on" if spec.packing else "off",
                 precision.name)

    def save_checkpoint() -> None:
        state["gpu_seconds"] = clock.gpu_seconds
        adapter, optim = lora_state(dist, model), optimizer_state(dist, model, optimizer)  # FSDP: all ranks gather
        if dist.is_main:
            store.save(state["step"], adapter, optim, scheduler, state)

    def evaluate() -> bool:
        """Validation loss; returns True when early stopping says stop."""
        loss = None
        if dist.is_main or dist.sharded:  # FSDP: every rank takes part in the forward passes
            loss = mean_loss(ddp if dist.sharded else model, val_examples, precision, row_tokens=spec.max_tokens, pad_id=pad_id)
        loss = share(dist, loss)
        step = state["step"]
        state["evals"].append({"step": step, "epoch": round(step / steps_per_epoch, 3), "evalLoss": loss})
        best = state["best_eval_loss"]
        min_delta = spec.early_stopping.min_delta if spec.early_stopping else 0.0
        if best is None or loss < best - min_delta:
            state["best_eval_loss"], state["bad_evals"] = loss, 0
            nonlocal best_weights
            best_weights = lora_state(dist, model)
            if dist.is_main:
                store.save_best(best_weights, {"step": step, "evalLoss": loss})
            log.info("step %d: validation loss %.4f (best)", step, loss)
        else:
            state["bad_evals"] += 1
            log.info("step %d: validation loss %.4f (best %.4f, %d without improvement)", step, loss, best,
                     state["bad_evals"])
        progress.update(force=True, eval_loss=loss)
        return bool(spec.early_stopping and state["bad_evals"] >= spec.early_stopping.patience)

    share_prefix = shared_prefix.supported(model)
    bar = progress_bar(total, initial=state["step"])
    model.train()
    started = time.monotonic()
    stop = state["step"] >= total or state["stopped_early"]
    sigterm = StopSignal.install()
    while not stop:
        epoch, in_epoch = divmod(state["step"], steps_per_epoch)
        steps = epoch_steps(len(train_examples), per_step, seed=spec.seed, epoch=epoch)
        indices = balanced_shard(dist, steps[in_epoch], [len(train_examples[i]) for i in steps[in_epoch]])
        t0 = time.monotonic()
        batches = step_batches(train_examples, indices, packing=spec.packing, batch_size=spec.batch_size,
                               row_tokens=spec.max_tokens, pad_id=pad_id, share_prefix=share_prefix)
        targets = sum(b.target_tokens for b in batches)
        step_tokens = 0
        if dist.enabled:  # each rank's loss is its share of the step's mean over all ranks' target tokens
            targets = int(sum_scalars(dist, targets)[0])
        # DDP reduces gradients in one backward per step (the last, synchronised); every other micro-batch
        # accumulates locally under no_sync. A rank without examples this step (fewer examples than ranks)
        # still joins that backward, with a zero-weighted pass over the step's first example.
        weight = dist.world_size / max(targets, 1)  # DDP averages over ranks: scale back to a sum
        work = [(b, weight) for b in batches] or [
            (step_batches(train_examples, steps[in_epoch][:1], packing=spec.packing, batch_size=1,
                          row_tokens=spec.max_tokens, pad_id=pad_id)[0], 0.0)]
        loss_sum = 0.0
        for n, (batch, w) in enumerate(work):
            batch = batch.to(device)
            # DDP's sync and peft's casts around forward and backward both
            with gradient_sync(dist, ddp, last=n == len(work) - 1), precision.lora_inputs_uncast(model):
                with precision.autocast():
                    loss = causal_lm_loss_sum(ddp, batch) * w
                (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += float(loss.detach()) / dist.world_size
            if w:
                state["real_tokens"] += batch.real_tokens
                step_tokens += batch.real_tokens
        if dist.enabled:
            loss_sum, all_tokens = sum_scalars(dist, loss_sum, step_tokens)
            state["real_tokens"] += int(all_tokens) - step_tokens
        if scaler:
            scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cpu" and state["step"] % TRIM_EVERY_STEPS == 0:
            allocator.trim()
        state["step"] += 1
        state["train_seconds"] += time.monotonic() - t0
        step = state["step"]
        state["history"].append({"step": step, "epoch": round(step / steps_per_epoch, 3), "loss": loss_sum})
        tps = state["real_tokens"] / max(state["train_seconds"], 1e-9)
        done_now = step - (resumed_from or 0)
        log.info("step %d/%d epoch %.2f loss %.4f lr %.2e tokens/s %.0f", step, total, step / steps_per_epoch,
                 loss_sum, scheduler.get_last_lr()[0], tps)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}")
        progress.update(epoch=round(step / steps_per_epoch, 3), step=step, total_steps=total, train_loss=loss_sum,
                        tokens_per_second=round(tps, 1), gpu_seconds=round(clock.gpu_seconds, 1),
                        eta=eta(done_now, total - (resumed_from or 0), time.monotonic() - started))

        epoch_end = step % steps_per_epoch == 0
        at_eval = (step % spec.eval_steps == 0) if spec.eval_steps else epoch_end
        if at_eval or step >= total:
            stop = evaluate()
            state["stopped_early"] = stop
            if stop:
                log.info("early stopping at step %d: no improvement for %d evaluations", step,
                         state["bad_evals"])
        stop = stop or step >= total
        preempted = sigterm.agreed(dist) and not stop
        if epoch_end or step % spec.checkpoint_interval_steps == 0 or stop or preempted:
            save_checkpoint()
        if preempted:
            sigterm.restore()
            raise Preempted(step)
    sigterm.restore()
    if bar is not None:
        bar.close()
    if best_weights is not None:
        load_lora(dist, model, best_weights)
    recent = [h["loss"] for h in state["history"][-steps_per_epoch:]]
    return TrainResult(
        steps=state["step"],
        total_steps=total,
        train_loss=sum(recent) / len(recent) if recent else None,
        best_eval_loss=state["best_eval_loss"],
        stopped_early=state["stopped_early"],
        tokens_per_second=state["real_tokens"] / state["train_seconds"] if state["train_seconds"] else None,
        history=state["history"],
        evals=state["evals"],
        resumed_from=resumed_from,
        gpu_seconds=clock.gpu_seconds,
        held_eval_loss=state["best_eval_loss"] if best_weights is not None else None,
    )
