"""Packing and the completion-only loss, on hand-made tensors."""

from __future__ import annotations

import torch
from loraplane_trainer.training.chat import IGNORE, TokenizedExample
from loraplane_trainer.training.packing import (
    causal_lm_loss_sum,
    collate_packed,
    collate_padded,
    epoch_steps,
    pack_rows,
    step_batches,
)
from loraplane_trainer.training.shared_prefix import MIN_SHARED_PREFIX, shared_prefix_length
from loraplane_trainer.training.shared_prefix import collate as collate_shared_prefix


def ex(ids, n_prompt):
    return TokenizedExample(list(ids), [IGNORE] * n_prompt + list(ids[n_prompt:]))


def test_packed_rows_restart_positions_and_mask_prompts_and_boundaries():
    a, b = ex([1, 2, 3, 4], 2), ex([5, 6, 7], 1)
    batch = collate_packed([[a, b]], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    # prompt tokens masked; the first token of every example too (never predicted from the neighbour)
    assert batch.labels.tolist() == [[IGNORE, IGNORE, 3, 4, IGNORE, 6, 7]]
    assert batch.attention_mask is None
    assert batch.real_tokens == 7 and batch.target_tokens == 4


def test_packed_rows_of_unequal_length_are_filled_with_unlabelled_tail():
    batch = collate_packed([[ex([1, 2, 3], 1)], [ex([4, 5], 1)]], pad_id=9)
    assert batch.input_ids.tolist() == [[1, 2, 3], [4, 5, 9]]
    assert batch.labels.tolist() == [[IGNORE, 2, 3], [IGNORE, 5, IGNORE]]
    # the tail continues the last example's positions, so it adds no extra packed sequence
    assert batch.position_ids.tolist() == [[0, 1, 2], [0, 1, 2]]
    assert batch.real_tokens == 5


def test_padded_batch_has_attention_mask_and_no_labels_on_padding():
    batch = collate_padded([ex([1, 2, 3], 1), ex([4, 5], 0)], pad_id=0)
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch.labels.tolist() == [[IGNORE, 2, 3], [4, 5, IGNORE]]
    assert batch.position_ids is None


def test_pack_rows_first_fit_decreasing_respects_the_budget():
    lengths = {0: 6, 1: 5, 2: 4, 3: 3, 4: 2, 5: 12}
    rows = pack_rows(lengths, row_tokens=10)
    assert sorted(i for row in rows for i in row) == sorted(lengths)
    for row in rows:
        assert sum(lengths[i] for i in row) <= 10 or len(row) == 1
    assert [5] in rows  # longer than a row: alone
    assert len(rows) == 3  # 12 | 6+4 | 5+3+2


def test_epoch_steps_are_a_deterministic_permutation_per_epoch():
    a = epoch_steps(10, 4, seed=1, epoch=0)
    assert a == epoch_steps(10, 4, seed=1, epoch=0)
    assert [len(s) for s in a] == [4, 4, 2]
    assert sorted(i for s in a for i in s) == list(range(10))
    assert a != epoch_steps(10, 4, seed=1, epoch=1)


def test_step_batches_packing_uses_fewer_tokens_than_padding():
    examples = [ex(list(range(1, n + 1)), 1) for n in (3, 20, 4, 18, 5, 2)]
    packed = step_batches(examples, list(range(6)), packing=True, batch_size=2, row_tokens=26, pad_id=0)
    padded = step_batches(examples, list(range(6)), packing=False, batch_size=2, row_tokens=26, pad_id=0)
    cells = lambda bs: sum(b.input_ids.numel() for b in bs)  # noqa: E731
    assert sum(b.target_tokens for b in packed) == sum(e.target_tokens for e in examples)
    assert sum(b.target_tokens for b in padded) == sum(e.target_tokens for e in examples)
    assert cells(packed) == sum(len(e) for e in examples) == 52  # two rows of 26: no padding at all
    assert cells(padded) > cells(packed)
    assert sum(b.real_tokens for b in packed) == sum(len(e) for e in examples)


class Echo(torch.nn.Module):
    """A 'model' whose logits at position t put all mass on the token given as the next label:
    the loss is then ~0 on predicted positions, and log(V) wherever it is uniform."""

    def __init__(self, vocab=8):
        super().__init__()
        self.vocab = vocab
        self.calls = []
        self.head = torch.nn.Identity()  # the output head: hidden states here are already logits
        self.head_outputs = []
        self.head.register_forward_hook(lambda _m, _args, out: self.head_outputs.append(tuple(out.shape)))

    def get_output_embeddings(self):
        return self.head

    def forward(self, input_ids, use_cache=False, logits_to_keep=None, **kw):
        self.calls.append((input_ids.clone(), logits_to_keep.clone(), kw))
        b, t = input_ids.shape
        hidden = torch.zeros(b, t, self.vocab)
        return type("Out", (), {"logits": self.head(hidden[:, logits_to_keep])})()


def test_loss_sum_counts_only_labelled_targets_and_keeps_only_their_logits():
    batch = collate_packed([[ex([1, 2, 3, 4], 2), ex([5, 6, 7], 1)]], pad_id=0)
    model = Echo(vocab=8)
    loss = causal_lm_loss_sum(model, batch)
    # uniform logits: each labelled target costs log(8); 4 targets are labelled
    assert torch.isclose(loss, torch.tensor(4 * torch.log(torch.tensor(8.0)).item()))
    _, keep, kw = model.calls[0]
    # positions t whose NEXT token is labelled: 1->3, 2->4, 4->6, 5->7
    assert keep.tolist() == [1, 2, 4, 5]
    assert "position_ids" in kw and "attention_mask" not in kw


def test_the_output_head_runs_only_on_each_rows_own_targets():
    # Two rows whose targets sit in different columns: logits_to_keep alone would take every row at
    # the union of their columns (2 rows x 5 columns); the head sees only the 5 real targets.
    batch = collate_packed([[ex([1, 2, 3, 4], 2), ex([5, 6, 7], 1)], [ex([1, 2, 3, 4, 5, 6, 7], 6)]], pad_id=0)
    model = Echo(vocab=8)
    loss = causal_lm_loss_sum(model, batch)
    assert batch.target_tokens == 5
    assert model.head_outputs == [(5, 8)]
    assert torch.isclose(loss, torch.tensor(5 * torch.log(torch.tensor(8.0)).item()))
    assert not model.head._forward_pre_hooks  # the head is left as it was


def test_shared_prefix_ends_before_any_trained_token_and_needs_company():
    same = list(range(20))
    a = TokenizedExample(same + [50, 51], [IGNORE] * 20 + [50, 51])
    b = TokenizedExample(same + [60, 61], [IGNORE] * 12 + same[12:] + [60, 61])  # trains from token 12
    assert shared_prefix_length([a, b]) == 11  # b's first label is still predicted from b's own token
    assert shared_prefix_length([a]) == 0  # nothing to share with
    short = TokenizedExample([1] * 5 + [7, 8], [IGNORE] * 5 + [7, 8])
    assert shared_prefix_length([short, short]) == 0  # shorter than MIN_SHARED_PREFIX


def test_shared_prefix_rows_hold_the_prefix_once_and_mask_examples_from_each_other():
    head = list(range(100, 100 + MIN_SHARED_PREFIX))
    a = TokenizedExample(head + [1, 2, 3], [IGNORE] * (len(head) + 1) + [2, 3])
    b = TokenizedExample(head + [4, 5], [IGNORE] * (len(head) + 1) + [5])
    p = len(head)
    [batch] = step_batches([a, b], [0, 1], packing=True, batch_size=2, row_tokens=64, pad_id=0, share_prefix=True)
    assert batch.input_ids.tolist() == [head + [1, 2, 3, 4, 5]]
    assert batch.position_ids.tolist() == [list(range(p)) + [p, p + 1, p + 2, p, p + 1]]
    assert batch.labels.tolist() == [[IGNORE] * (p + 1) + [2, 3, IGNORE, 5]]
    assert batch.real_tokens == len(a) + len(b) and batch.target_tokens == 3
    mask = batch.attention_mask[0, 0]
    a_at, b_at = p, p + 3
    assert mask[b_at + 1, :p].all() and mask[a_at + 2, :p].all()  # both see the prefix
    assert not mask[b_at:, a_at:b_at].any()  # b never sees a
    assert not mask[:p, p:].any()  # the prefix sees no example
    assert mask[a_at + 2, a_at : a_at + 3].all() and not mask[a_at, a_at + 1]  # causal within an example


def test_shared_prefix_tail_padding_attends_to_itself():
    head = list(range(100, 100 + MIN_SHARED_PREFIX))
    rows = [[TokenizedExample(head + [1, 2, 3], [IGNORE] * (len(head) + 1) + [2, 3])],
            [TokenizedExample(head + [4], [IGNORE] * (len(head) + 1))]]
    batch = collate_shared_prefix(rows, len(head), pad_id=9)
    assert batch.input_ids[1].tolist()[-2:] == [9, 9]
    assert batch.attention_mask.any(dim=-1).all()  # no query row without a key: no NaN in attention
