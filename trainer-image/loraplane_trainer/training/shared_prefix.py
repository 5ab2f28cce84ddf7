"""Packed rows that compute a prompt prefix every example shares once, not once per example.

A chat template puts the same tokens before every question: SmolLM2's default system prompt
and the turn markers are 24 of the demo's 58 tokens an example. A packed row then holds that
prefix once, followed by each example's remaining tokens; a 4D attention mask lets every
example see the prefix and itself, nothing else, and position ids continue from the prefix,
so each example is computed as if it stood alone. The prefix's keys and values are one
computation that every example's loss reaches, so its gradient is the sum the separate copies
would give: the same training, on a third fewer tokens for the demo. (With LoRA dropout, the
examples of a row share the prefix's dropout mask.)

The prefix never reaches a trained token: it ends at least one token before the first
labelled token of every example, so each example's first label is still predicted from its
own tokens.
"""

from __future__ import annotations

import torch

from . import segment_attention
from .batch import Batch
from .chat import IGNORE, TokenizedExample

# Shorter common prefixes are not worth the mask: the turn markers alone are three or four tokens.
MIN_SHARED_PREFIX = 8
# The attention implementations that take a custom boolean 4D mask as given (True: may attend).
MASKED_ATTENTION = frozenset({"sdpa", segment_attention.SEGMENT_ATTENTION})
PREFIX_SEGMENT = 0


def supported(model) -> bool:
    """Whether the model's attention (inside DDP's `.module`) honours a custom 4D mask; flash attention,
    for one, does not."""
    return segment_attention.implementation(model) in MASKED_ATTENTION


def _first_label(example: TokenizedExample) -> int:
    return next((i for i, t in enumerate(example.labels) if t != IGNORE), len(example))


def shared_prefix_length(examples: list[TokenizedExample]) -> int:
    """Leading tokens every example has, ending before any example's first labelled token's predecessor;
    0 when that is shorter than MIN_SHARED_PREFIX or there is nothing to share with."""
    if len(examples) < 2:
        return 0
    limit = min(_first_label(e) - 1 for e in examples)
    first = examples[0].input_ids
    n = 0
    while n < limit and all(e.input_ids[n] == first[n] for e in examples):
        n += 1
    return n if n >= MIN_SHARED_PREFIX else 0


def attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] booleans from [B, T] segment ids: causal, within a segment or into the prefix."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    same = segments[:, :, None] == segments[:, None, :]
    prefix = (segments == PREFIX_SEGMENT)[:, None, :]
    return (causal & (same | prefix)).unsqueeze(1)


def collate(rows: list[list[TokenizedExample]], prefix: int, pad_id: int) -> Batch:
    """Rows of `prefix` shared tokens then each example's rest -> one Batch with a 4D mask.

    `real_tokens` counts every example's whole length (prefix included): the tokens trained on,
    comparable with unshared packing and padding; the model computes fewer.
    """
    head = rows[0][0].input_ids[:prefix]
    width = prefix + max(sum(len(e) - prefix for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.zeros((len(rows), width), dtype=torch.long)
    real = 0
    for r, row in enumerate(rows):
        ids[r, :prefix] = torch.tensor(head)
        pos[r, :prefix] = torch.arange(prefix)
        at = prefix
        for s, example in enumerate(row, start=PREFIX_SEGMENT + 1):
            n = len(example) - prefix
            ids[r, at : at + n] = torch.tensor(example.input_ids[prefix:])
            lab = torch.tensor(example.labels[prefix:])
            lab[0] = IGNORE  # predicted from the previous example's last token in row order
            labels[r, at : at + n] = lab
            pos[r, at : at + n] = torch.arange(prefix, prefix + n)
            segments[r, at : at + n] = s
            at += n
            real += len(example)
        # The tail is one more segment: every query row must be able to attend to something.
        segments[r, at:] = len(row) + 1
        pos[r, at:] = torch.arange(prefix, prefix + width - at)
    return Batch(ids, labels, pos, attention_mask(segments), real, segment_attention.layout(segments, prefix))
