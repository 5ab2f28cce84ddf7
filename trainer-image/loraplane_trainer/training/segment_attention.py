"""Attention over a packed row's examples one by one: each example's own block, plus the shared prefix.

A packed row is block-diagonal: every example attends to itself (and to the row's shared prefix,
shared_prefix.py), never to its neighbours. SDPA over the whole row with a mask computes every
T x T score and throws most away; on a CPU its flash kernel's backward also costs about five times
its forward at the demo's ~350-token rows (4.5 ms a layer against 1.8 ms here, fwd + bwd, bf16,
2 threads). This attention regroups the row's tokens into one block per example (padded to the
longest), prepends the prefix's keys and values to every block, and runs two batched matmuls and
a softmax over [blocks, L, prefix + L] scores: exactly the scores the mask keeps, plus the blocks'
padding. The regrouping is a gather both ways (forward and backward), never a scatter-add.

It is registered with transformers' AttentionInterface under SEGMENT_ATTENTION and takes the
block layout from a `segments` keyword of the model's forward (Batch.model_inputs); without one
(generation, unpacked batches) it is transformers' own SDPA. The trainer switches a model to it
on a CPU only (`use`): on a GPU, SDPA's fused kernels stand (not measured against this there).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

SEGMENT_ATTENTION = "loraplane_segments"
ATTENTION_ENV = "LORAPLANE_ATTENTION"  # "sdpa": keep SDPA on a CPU too (the bench's same-run comparison)

# A layout is used only where its scores are no more than the dense row's, and at most this many score
# cells a head: the probabilities of every layer are kept for backward (blocks x L x (prefix + L) x heads x
# layers x 2 bytes; at this cap about 280 MB for SmolLM2's 9 heads and 30 layers). The demo's 8-example
# rows take about 40,000. Past it, SDPA's kernels keep memory linear in the row.
MAX_SCORE_CELLS = 1 << 19


@dataclass
class SegmentLayout:
    """Where a micro-batch's tokens sit in per-example blocks of `width` slots, `prefix` shared tokens ahead.

    `slots[j]`: the flat token index ([B * T]) held by block slot j ([blocks * width]); a padding slot
    holds any token and is never seen by a real one. `order[i]`: the slot of token i. `hidden`:
    [blocks, width, prefix + width], True where a query slot may not attend: causal within its block,
    the prefix visible to examples' tokens only, and a padding slot sees only itself (so a padding
    row's softmax is finite and its gradient reaches no real key). `rows`: the row of each block
    when a micro-batch has several rows (None for one).
    """

    slots: torch.Tensor
    order: torch.Tensor
    hidden: torch.Tensor
    rows: torch.Tensor | None
    prefix: int
    blocks: int
    width: int
    _bias: dict = field(default_factory=dict, repr=False, compare=False)  # (dtype, kv heads, group) -> bias

    @property
    def score_cells(self) -> int:
        return self.blocks * self.width * (self.prefix + self.width)

    def to(self, device) -> SegmentLayout:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SegmentLayout(move(self.slots), move(self.order), move(self.hidden), move(self.rows), self.prefix,
                             self.blocks, self.width)

    def bias(self, dtype: torch.dtype, kv_heads: int, group: int) -> torch.Tensor:
        """The additive mask as baddbmm takes it, [blocks * kv_heads, group * width, prefix + width];
        made once per micro-batch and shared by every layer."""
        key = (dtype, kv_heads, group)
        if key not in self._bias:
            n, length, keys = self.blocks, self.width, self.prefix + self.width
            zero = torch.zeros((n, 1, 1, length, keys), dtype=dtype, device=self.hidden.device)
            bias = zero.masked_fill(self.hidden[:, None, None], float("-inf"))
            self._bias[key] = bias.expand(n, kv_heads, group, length, keys).reshape(n * kv_heads, group * length, keys)
        return self._bias[key]


def layout(segments: torch.Tensor, prefix: int) -> SegmentLayout | None:
    """The block layout of [B, T] segment ids (consecutive runs; with `prefix`, each row's first run is the
    shared prefix); None where blocks would cost more than the dense row (one long example among short
    ones pads every block to its length) or more than MAX_SCORE_CELLS."""
    rows, width = segments.shape
    ids = (segments + torch.arange(rows)[:, None] * (int(segments.max()) + 1)).reshape(-1)
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    blocks, longest = len(counts), int(counts.max())
    cells = blocks * longest * (prefix + longest)
    if cells > min(rows * width * width, MAX_SCORE_CELLS):
        return None
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(longest)
    real = slot[None, :] < counts[:, None]  # [blocks, longest]
    slots = torch.where(real, starts[:, None] + slot[None, :], 0).reshape(-1)
    block = torch.repeat_interleave(torch.arange(blocks), counts)
    order = block * longest + torch.arange(rows * width) - starts[block]
    causal = torch.ones(longest, longest, dtype=torch.bool).tril()
    own = torch.where(real[:, :, None], causal, torch.eye(longest, dtype=torch.bool))
    is_prefix = (starts % width == 0) & (prefix > 0)
    sees_prefix = (real & ~is_prefix[:, None])[:, :, None].expand(blocks, longest, prefix)
    hidden = ~torch.cat([sees_prefix, own], dim=2)
    return SegmentLayout(slots, order, hidden, starts // width if rows > 1 else None, prefix, blocks, longest)


class _Regroup(torch.autograd.Function):
    """x.index_select(0, there), whose backward is grad.index_select(0, back): a gather both ways, where
    autograd's own backward of an index would scatter-add. Tokens to blocks: there = slots, back = order;
    blocks to tokens: the other way round (a padding slot then takes some token's gradient, which its
    softmax row, seeing only itself, keeps away from every real key)."""

    @staticmethod
    def forward(ctx, x, there: torch.Tensor, back: torch.Tensor):
        ctx.back = back
        return x.index_select(0, there)

    @staticmethod
    def backward(ctx, grad):
        return grad.index_select(0, ctx.back), None, None


def segment_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, segments=None,
                      **kwargs):
    """transformers' attention signature: query [B, H, T, D], key and value [B, KV, T, D] -> ([B, T, H, D], None)."""
    if segments is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    lay: SegmentLayout = segments
    rows, heads, width, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads  # query heads per key/value head (GQA), consecutive as in repeat_kv
    n, length, prefix = lay.blocks, lay.width, lay.prefix
    scaling = dim**-0.5 if scaling is None else scaling

    def blocks(x):  # [B, h, T, D] -> [blocks, h, width, D]
        h = x.shape[1]
        flat = x.transpose(1, 2).reshape(rows * width, h, dim)
        return _Regroup.apply(flat, lay.slots, lay.order).view(n, length, h, dim).transpose(1, 2)

    q = blocks(query).reshape(n * kv_heads, group * length, dim)
    k, v = blocks(key), blocks(value)
    if prefix:
        kp, vp = key[:, :, :prefix], value[:, :, :prefix]
        if lay.rows is None:
            kp, vp = kp.expand(n, -1, -1, -1), vp.expand(n, -1, -1, -1)
        else:
            kp, vp = kp[lay.rows], vp[lay.rows]
        k, v = torch.cat([kp, k], dim=2), torch.cat([vp, v], dim=2)
    k = k.reshape(n * kv_heads, prefix + length, dim)
    v = v.reshape(n * kv_heads, prefix + length, dim)
    scores = torch.baddbmm(lay.bias(q.dtype, kv_heads, group), q, k.transpose(1, 2), alpha=scaling)
    # In the compute precision, as SDPA's kernels hand their probabilities to the value product; fp16 would
    # lose the softmax's sum, so it takes fp32 there.
    if scores.dtype == torch.float16:
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(scores.dtype)
    else:
        probs = torch.softmax(scores, dim=-1)
    if dropout and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    out = torch.bmm(probs, v).view(n, heads, length, dim).transpose(1, 2).reshape(n * length, heads, dim)
    return _Regroup.apply(out, lay.order, lay.slots).view(rows, width, heads, dim), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(SEGMENT_ATTENTION, segment_attention)
    # Masks are made as for SDPA, for the calls that take that path (generation, unpacked batches).
    AttentionMaskInterface.register(SEGMENT_ATTENTION, sdpa_mask)


def implementation(model) -> str | None:
    """The attention implementation a model (inside DDP's `.module`, or peft's wrapper) runs."""
    config = getattr(getattr(model, "module", model), "config", None)
    return getattr(config, "_attn_implementation", None)


def use(model) -> bool:
    """Switch a model that uses SDPA to this attention; False where its attention is another or fixed, or
    where LORAPLANE_ATTENTION=sdpa asks to keep SDPA."""
    if implementation(model) != "sdpa" or os.environ.get(ATTENTION_ENV) == "sdpa":
        return False
    _register()
    model.set_attn_implementation(SEGMENT_ATTENTION)
    return active(model)


def active(model) -> bool:
    return implementation(model) == SEGMENT_ATTENTION
