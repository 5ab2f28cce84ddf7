"""Peak memory per GPU of LoRA training, from the model's shape and the job's settings.

The model counts the bytes the trainer really holds (see docs/training.md, "The plan"):

- frozen base weights: in the compute precision (bf16/fp16, fp32 when training in fp32), on a
  CPU as on a GPU; 4-bit NF4 with double quantisation for QLoRA (0.5 byte + 0.016 byte of
  scales per weight; embeddings and the output head stay unquantised and
  `prepare_model_for_kbit_training` makes them fp32);
- LoRA weights, their gradients and AdamW's two moments: fp32, 16 bytes per LoRA parameter;
- activations saved for backward, per token and layer: the norms' inputs and outputs in the
  weights' precision, plus each norm's fp32 copy of its input when those are lower; o_proj's
  and down_proj's inputs (for QLoRA's fp32 hidden states, every projection's input cast to the
  compute precision, twice for an adapted one: the base layer and lora_A each keep their own);
  the dropout mask and output of each adapted projection; q and k before and after the rotary
  embedding, v and attention's output; the MLP's gate, its activation and up; with gradient
  checkpointing only each layer's input plus one layer recomputed;
- the output head's logits on the target tokens (bf16 out, fp32 copy, fp32 gradient, softmax);
- FSDP shards weights and LoRA state across the ranks and gathers one layer (two with
  prefetch) at a time;
- on a GPU a fixed runtime overhead (CUDA context, cuBLAS workspace) and allocator slack.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .shape import ModelShape

NF4_BYTES = 0.5 + 0.016  # 4-bit weight + double-quantised absmax per 64-weight block
CUDA_OVERHEAD_BYTES = int(1.0 * 1024**3)
ALLOCATOR_SLACK = 1.10  # the caching allocator's fragmentation on activations


class Strategy(StrEnum):
    SINGLE = "single GPU"
    DDP = "DDP"
    FSDP = "FSDP"
    QLORA = "QLoRA"
    QLORA_FSDP = "QLoRA + FSDP"

    @property
    def quantized(self) -> bool:
        return self in (Strategy.QLORA, Strategy.QLORA_FSDP)

    @property
    def sharded(self) -> bool:
        return self in (Strategy.FSDP, Strategy.QLORA_FSDP)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (per process on CPU) at the peak of a training step."""

    weights: int
    lora: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    weight_copies: int = 0  # QLoRA: the projection being dequantised


    @property
    def total(self) -> int:
        return (self.weights + self.lora + self.gradients + self.optimizer + self.activations + self.logits + self.overhead
                + self.weight_copies)


def adapted_linears(shape: ModelShape, target_modules: list[str]) -> dict[str, tuple[int, int]]:
    """The projections of one layer LoRA adapts: all of them for all-linear, else those named."""
    linears = shape.layer_linears()
    if target_modules == ["all-linear"]:
        return linears
    return {n: d for n, d in linears.items() if n in target_modules}


def lora_params(shape: ModelShape, r: int, target_modules: list[str]) -> int:
    per_layer = 0
    for name, (d_in, d_out) in adapted_linears(shape, target_modules).items():
        per_layer += r * (d_in + d_out) * (shape.experts if name not in ("q_proj", "k_proj", "v_proj", "o_proj") else 1)
    return shape.layers * per_layer


def activation_bytes_per_token(shape: ModelShape, *, hidden_bytes: int, compute_bytes: int,
                               target_modules: list[str], dropout: bool, checkpointing: bool) -> float:
    """Bytes of saved activations per token for the whole stack of layers."""
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    linears = shape.layer_linears()
    adapted = adapted_linears(shape, target_modules)
    inputs_all = sum(d_in for d_in, _ in linears.values())
    inputs_adapted = sum(d_in for d_in, _ in adapted.values())
    norms = 4 * h * hidden_bytes  # input and output of the two RMSNorms
    if hidden_bytes < 4:  # each RMSNorm computes in fp32 and keeps that copy of its input for backward
        norms += 2 * h * 4
    if hidden_bytes == compute_bytes:  # autocast casts nothing: projections share their input tensors
        casts = (q + i) * compute_bytes  # o_proj's and down_proj's inputs (q/k/v/gate/up keep the norms' outputs)
        drop = inputs_adapted * (compute_bytes + 1) if dropout else 0  # dropout output + mask, for lora_A
    else:  # fp32 hidden states under autocast (QLoRA): every projection keeps its own low-precision copy, lora_A too
        casts = (inputs_all + inputs_adapted) * compute_bytes
        drop = inputs_adapted * (hidden_bytes + 1) if dropout else 0
    # q and k before and after the rotary embedding, v, and SDPA's output (counted with autograd's
    # saved-tensor hooks on a Llama layer: 3q + 3kv wide).
    attention = (3 * q + 3 * kv) * compute_bytes
    mlp = (3 if shape.gated_mlp else 1) * i * compute_bytes  # gate, act(gate), up (the product is down's input)
    # lora_A's outputs are only r wide: left out.
    layer = norms + casts + drop + attention + mlp
    if checkpointing:  # each layer's input is kept; one layer at a time is recomputed in backward
        return shape.layers * h * hidden_bytes + layer
    return shape.layers * layer + 2 * h * hidden_bytes  # + the final norm


def _weight_copies(shape: ModelShape, strategy: Strategy, compute_bytes: int) -> int:
    """Low-precision weight copies alive at the peak: for QLoRA the one projection being dequantised."""
    if strategy.quantized:
        return max(a * b for a, b in shape.layer_linears().values()) * compute_bytes
    return 0


def estimate_memory(shape: ModelShape, *, strategy: Strategy, world: int, r: int, target_modules: list[str],
                    dropout: float, tokens_per_micro_batch: int, target_tokens_per_micro_batch: int,
                    precision: str = "bf16", on_gpu: bool = True, checkpointing: bool = False) -> MemoryEstimate:
    """Peak bytes per GPU (or per CPU process when on_gpu is False) of one rank.

    precision is the compute precision (bf16, fp16 or fp32); the frozen weights are stored in it.
    """
    compute_bytes = 4 if precision == "fp32" else 2
    weight_bytes = compute_bytes
    shard = world if strategy.sharded else 1
    if strategy.quantized:
        # QLoRA: NF4 projections; embeddings, head and norms fp32 (prepare_model_for_kbit_training);
        # it also turns gradient checkpointing on.
        weights = shape.linear_params * NF4_BYTES + (shape.params - shape.linear_params) * 4
        hidden_bytes = 4
        checkpointing = True
    else:
        weights = shape.params * weight_bytes
        hidden_bytes = weight_bytes
    n_lora = lora_params(shape, r, target_modules)
    per_token = activation_bytes_per_token(shape, hidden_bytes=hidden_bytes, compute_bytes=compute_bytes,
                                           target_modules=target_modules, dropout=dropout > 0,
                                           checkpointing=checkpointing)
    activations = per_token * tokens_per_micro_batch
    logits = target_tokens_per_micro_batch * shape.vocab * (compute_bytes + 4 + 4 + 4)
    gathered = 0
    if shard > 1:  # two layers' full weights in flight (the current one and the prefetched next)
        per_layer = weights / shape.layers
        gathered = 2 * per_layer
    slack = ALLOCATOR_SLACK if on_gpu else 1.0
    return MemoryEstimate(
        weights=int(weights / shard + gathered),
        lora=int(n_lora * 4 / shard),
        gradients=int(n_lora * 4 / shard),
        optimizer=int(n_lora * 8 / shard),
        activations=int(activations * slack),
        logits=int(logits * slack),
        overhead=CUDA_OVERHEAD_BYTES if on_gpu else 0,
        weight_copies=_weight_copies(shape, strategy, compute_bytes),
    )
