"""Block-by-block attention over packed rows equals SDPA over the whole row with its mask.

On hand-made layouts in fp32 with grouped key/value heads (9 query heads on 3, as SmolLM2):
outputs and the gradients of query, key and value match transformers' own SDPA path, with a shared
prefix or without, one row or several, examples of unequal length (padded blocks) and a padded tail.
"""

from __future__ import annotations

import pytest
import torch
from loraplane_trainer.training import segment_attention
from loraplane_trainer.training.chat import IGNORE, TokenizedExample
from loraplane_trainer.training.packing import collate_packed
from loraplane_trainer.training.segment_attention import MAX_SCORE_CELLS, layout
from loraplane_trainer.training.shared_prefix import PREFIX_SEGMENT
from loraplane_trainer.training.shared_prefix import collate as collate_shared_prefix
from transformers.integrations.sdpa_attention import sdpa_attention_forward

HEADS, KV_HEADS, DIM = 9, 3, 16


class _Attention:  # what the attention functions read of a transformers attention module
    is_causal = True
    num_key_value_groups = HEADS // KV_HEADS
    training = True


def ex(n: int, first: int = 1) -> TokenizedExample:
    ids = list(range(first, first + n))
    return TokenizedExample(ids, [IGNORE] * 2 + ids[2:])


def dense_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T]: causal and within a segment (plain packed rows)."""
    width = segments.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    return (causal & (segments[:, :, None] == segments[:, None, :])).unsqueeze(1)


def segments_of(rows: list[list[TokenizedExample]]) -> torch.Tensor:
    """[B, T] segment ids of packed rows, made here from the examples' lengths: one per example, then the tail."""
    width = max(sum(len(e) for e in row) for row in rows)
    out = []
    for row in rows:
        ids = [s for s, e in enumerate(row) for _ in range(len(e))]
        out.append(ids + [len(row)] * (width - len(ids)))
    return torch.tensor(out)


def not_tail(rows: list[list[TokenizedExample]], width: int, prefix: int = 0) -> torch.Tensor:
    """[B, T]: the rows' real tokens (the padded tail's outputs are nobody's concern)."""
    out = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, row in enumerate(rows):
        out[r, : prefix + sum(len(e) - prefix for e in row)] = True
    return out


def assert_same_both_ways(mask: torch.Tensor, lay, real: torch.Tensor):
    """transformers' SDPA with the dense mask and the blocks give the same outputs at every real token and the
    same query, key and value gradients."""
    torch.manual_seed(0)
    rows, width = real.shape
    q = torch.randn(rows, HEADS, width, DIM, requires_grad=True)
    k = torch.randn(rows, KV_HEADS, width, DIM, requires_grad=True)
    v = torch.randn(rows, KV_HEADS, width, DIM, requires_grad=True)
    grad = torch.randn(rows, width, HEADS, DIM)
    (o1, *g1), (o2, *g2) = (
        (o.detach(), *torch.autograd.grad(o, (q, k, v), grad))
        for o in (sdpa_attention_forward(_Attention(), q, k, v, mask, scaling=DIM**-0.5)[0],
                  segment_attention.segment_attention(_Attention(), q, k, v, None, scaling=DIM**-0.5, segments=lay)[0]))
    assert torch.allclose(o1[real], o2[real], atol=1e-5), (o1[real] - o2[real]).abs().max()
    for a, b in zip(g1, g2, strict=True):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def row(*lengths: int) -> list[TokenizedExample]:
    return [ex(n, 10 * i) for i, n in enumerate(lengths)]


# Blocks pay off where examples are short against their row (else the dense row is kept: below).
ONE_ROW = [row(7, 3, 5, 6, 4, 7, 5)]
TWO_ROWS = [row(6, 7, 5, 4, 6, 7), row(4, 5, 3, 6, 7, 5)]  # the second row ends in a padded tail


@pytest.mark.parametrize("rows", [ONE_ROW, TWO_ROWS], ids=["one row", "two rows, padded tail"])
def test_packed_rows_attend_as_with_the_dense_mask(rows):
    batch = collate_packed(rows, pad_id=0)
    assert batch.segments is not None
    assert_same_both_ways(dense_mask(segments_of(rows)), batch.segments, not_tail(rows, batch.input_ids.shape[1]))


@pytest.mark.parametrize("rows", [[row(11, 9, 12, 8, 10, 9)], [row(10, 9, 11, 8), row(9, 11, 12)]],
                         ids=["one row", "two rows, padded tail"])
def test_rows_with_a_shared_prefix_attend_as_with_their_mask(rows):
    prefix = 5
    batch = collate_shared_prefix(rows, prefix, pad_id=0)
    assert batch.segments is not None and batch.segments.prefix == prefix
    # the collated 4D mask is the reference: every example sees the prefix and itself
    assert_same_both_ways(batch.attention_mask, batch.segments, not_tail(rows, batch.input_ids.shape[1], prefix))


def test_the_prefix_block_sees_only_itself_and_examples_see_the_prefix():
    segments = torch.tensor([[PREFIX_SEGMENT] * 3 + [1] * 4 + [2] * 2 + [3] * 4 + [4] * 3])
    lay = layout(segments, 3)
    assert (lay.blocks, lay.width, lay.prefix) == (5, 4, 3)
    hidden = lay.hidden
    assert hidden[0, :3, :3].all()  # the prefix's own queries: no prefix columns, only its own block
    assert not hidden[1, :, :3].any()  # an example's tokens see the whole prefix
    assert not hidden[2, :2, :3].any() and hidden[2, 2:, :3].all()  # padding slots of a short block: not
    assert (hidden[2, 2:, 3:] == ~torch.eye(4, dtype=torch.bool)[2:]).all()  # a padding slot sees itself only


def test_a_long_example_among_short_ones_keeps_the_dense_row():
    # one 60-token example pads every block to 60: 21 x 60 x 60 cells > the row's 160 x 160, under the cap
    segments = torch.tensor([[0] * 60 + sum(([s] * 5 for s in range(1, 21)), [])])
    assert MAX_SCORE_CELLS > 21 * 60 * 60  # so the dense rule alone refuses it
    assert layout(segments, 0) is None
    even = torch.tensor([sum(([s] * 8 for s in range(20)), [])])
    assert layout(even, 0) is not None


def test_layouts_past_the_score_cap_keep_the_dense_row():
    blocks = 64
    length = int((MAX_SCORE_CELLS / blocks) ** 0.5) + 1
    segments = torch.arange(blocks).repeat_interleave(length)[None]
    assert layout(segments, 0) is None
    assert layout(segments[:, : (blocks // 2) * length], 0) is not None
