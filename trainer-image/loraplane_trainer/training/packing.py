"""Batches without padding waste: packing of variable-length examples, and the padded alternative.

An optimizer step takes `batch_size * gradient_accumulation` examples, as unpacked
training would (so hyperparameters mean the same). With packing, those examples
are concatenated into rows of up to `row_tokens` tokens (first-fit decreasing);
position ids restart at 0 for every example, which makes the model's attention
block-diagonal (transformers derives the mask from position ids when no attention
mask is given), so packed examples never see each other. The first token of each
example carries no label, so no example is predicted from its neighbour.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import torch

from . import segment_attention, shared_prefix
from .batch import Batch
from .chat import IGNORE, TokenizedExample


def epoch_steps(n_examples: int, examples_per_step: int, *, seed: int, epoch: int) -> list[list[int]]:
    """Example indices of every optimizer step of an epoch: a seeded shuffle, cut into steps.

    Deterministic in (seed, epoch), so a resumed run finds the same data at the same step.
    """
    order = list(range(n_examples))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return [order[i : i + examples_per_step] for i in range(0, n_examples, examples_per_step)]


def pack_rows(lengths: dict[int, int], row_tokens: int) -> list[list[int]]:
    """Group example indices into rows of at most row_tokens tokens (first-fit decreasing).

    An example longer than row_tokens gets a row of its own.
    """
    rows: list[list[int]] = []
    free: list[int] = []
    for idx in sorted(lengths, key=lambda i: (-lengths[i], i)):
        size = lengths[idx]
        for r, space in enumerate(free):
            if size <= space:
                rows[r].append(idx)
                free[r] -= size
                break
        else:
            rows.append([idx])
            free.append(max(row_tokens - size, 0))
    return rows


def collate_packed(rows: list[list[TokenizedExample]], pad_id: int) -> Batch:
    """Rows of concatenated examples -> one [B, T] batch, position ids restarting per example.

    Rows shorter than the longest are filled at the end with pad tokens whose
    labels are IGNORE; causal attention keeps real tokens from seeing them.
    """
    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    segments = torch.zeros((len(rows), width), dtype=torch.long)
    real = 0
    for r, row in enumerate(rows):
        at = 0
        for s, example in enumerate(row):
            n = len(example)
            ids[r, at : at + n] = torch.tensor(example.input_ids)
            lab = torch.tensor(example.labels)
            lab[0] = IGNORE
            labels[r, at : at + n] = lab
            pos[r, at : at + n] = torch.arange(n)
            segments[r, at : at + n] = s
            at += n
            real += n
        # Padding continues the last example's positions: one packed sequence fewer to mask.
        if at < width:
            start = pos[r, at - 1] + 1 if at else 0
            pos[r, at:] = torch.arange(start, start + width - at)
            segments[r, at:] = len(row)  # for segment_attention, a block of its own
    return Batch(ids, labels, pos, None, real, segment_attention.layout(segments, 0))


def collate_rows(rows: list[list[TokenizedExample]], prefix: int, pad_id: int) -> Batch:
    """Packed rows, holding their examples' first `prefix` shared tokens once (shared_prefix) when it is not 0."""
    return shared_prefix.collate(rows, prefix, pad_id) if prefix else collate_packed(rows, pad_id)


def collate_padded(examples: list[TokenizedExample], pad_id: int) -> Batch:
    """Examples right-padded to the longest, with an attention mask (packing: false)."""
    width = max(len(e) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for r, example in enumerate(examples):
        n = len(example)
        ids[r, :n] = torch.tensor(example.input_ids)
        labels[r, :n] = torch.tensor(example.labels)
        mask[r, :n] = 1
    return Batch(ids, labels, None, mask, int(mask.sum()))


# Shortest packed row. Rows are otherwise no longer than the step's longest example needs: attention
# cost grows with the square of the row length (and CPU attention with a packed mask materialises it),
# and padding waste stays at the row tails only. Below about 512 tokens a row is overhead-bound instead:
# the demo's 8-example steps (shared prefix, 2 threads) took 1.37-1.50 s as two 220-token rows and
# 1.18-1.19 s as one 392-token row.
MIN_ROW_TOKENS = 512


def row_length(lengths: list[int], max_tokens: int) -> int:
    return min(max(MIN_ROW_TOKENS, max(lengths, default=0)), max(max_tokens, max(lengths, default=0)))


def step_batches(examples: list[TokenizedExample], indices: list[int], *, packing: bool, batch_size: int,
                 row_tokens: int, pad_id: int, share_prefix: bool = False) -> list[Batch]:
    """The micro-batches of one optimizer step.

    With packing, each micro-batch holds no more token cells than a padded batch of batch_size of the
    step's longest example would, so memory stays at what unpacked training needs while padding is gone.
    With `share_prefix`, a prompt prefix all the step's examples share is held once per row
    (shared_prefix), and rows are filled with the examples' remaining tokens.
    """
    if packing:
        full = {i: len(examples[i]) for i in indices}
        width = row_length(list(full.values()), row_tokens)
        prefix = shared_prefix.shared_prefix_length([examples[i] for i in indices]) if share_prefix else 0
        rows = pack_rows({i: n - prefix for i, n in full.items()}, width - prefix)
        per_batch = max(1, batch_size * max(full.values()) // width)
        return [collate_rows([[examples[i] for i in row] for row in rows[b : b + per_batch]], prefix, pad_id)
                for b in range(0, len(rows), per_batch)]
    # Unpacked: length-sorted within the step, so each micro-batch pads little.
    ordered = sorted(indices, key=lambda i: len(examples[i]))
    return [collate_padded([examples[i] for i in ordered[b : b + batch_size]], pad_id)
            for b in range(0, len(ordered), batch_size)]


@contextmanager
def head_at(model, positions: torch.Tensor):
    """The output head computes logits only at `positions` ([B, K] bools over the K kept columns).

    `logits_to_keep` selects columns shared by every row: with several packed rows nearly every
    column has a target in some row, and the head (49,152 logits per position for SmolLM2, in
    fp32 with their softmax and gradient) ran on 2.5x the target tokens. A pre-hook on the head
    hands it only the positions that predict a target, so its output is [targets, vocab].
    """
    head = _unwrapped(model).get_output_embeddings()
    handle = head.register_forward_pre_hook(lambda _module, args: (args[0][positions],) + tuple(args[1:]))
    try:
        yield
    finally:
        handle.remove()


def _unwrapped(model):
    """The transformers model inside DDP (`.module`) and peft (`get_base_model()`)."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def causal_lm_loss_sum(model, batch: Batch) -> torch.Tensor:
    """Summed next-token cross entropy over labelled tokens (the caller divides by the step's count).

    Only the positions that predict a labelled token go through the output head: the columns
    with any target (`logits_to_keep`), and of those only the targets' own rows (`head_at`).
    """
    targets = batch.labels[:, 1:]
    keep = (targets != IGNORE).any(dim=0).nonzero().squeeze(-1)
    if keep.numel() == 0:
        return torch.zeros((), requires_grad=True)
    kept = targets[:, keep]
    at = kept != IGNORE
    with head_at(model, at):
        out = model(**batch.model_inputs(segment_attention.active(model)), use_cache=False, logits_to_keep=keep)
    return torch.nn.functional.cross_entropy(out.logits.float(), kept[at], reduction="sum")
