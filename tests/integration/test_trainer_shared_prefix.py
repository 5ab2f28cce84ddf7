"""Rows that hold the chat template's shared prefix once train exactly as rows that repeat it.

On the real SmolLM2 with LoRA in fp32: the loss and every LoRA gradient of one step of the
support set are the same with and without the shared prefix, and the model computes fewer tokens.
"""

from __future__ import annotations

import json

import pytest
import torch
from loraplane_trainer.training import segment_attention
from loraplane_trainer.training.chat import tokenize_chat
from loraplane_trainer.training.packing import causal_lm_loss_sum, step_batches
from loraplane_trainer.training.shared_prefix import MIN_SHARED_PREFIX, shared_prefix_length, supported

STEP = 16
# fp32 sums of the same products in another order: a few parts in a million.
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def lora_model_and_examples(smollm2_dir, repo_root):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             init_lora_weights=False))  # random B: the LoRA path matters
    rows = [json.loads(line) for line in (repo_root / "examples/data/support.jsonl").read_text().splitlines()[:STEP]]
    examples = [tokenize_chat(tokenizer, [{"role": "user", "content": r["prompt"]},
                                          {"role": "assistant", "content": r["completion"]}], 1024) for r in rows]
    return model, examples, tokenizer.pad_token_id or 0


def _step(model, examples, pad_id, share: bool):
    model.zero_grad(set_to_none=True)
    batches = step_batches(examples, list(range(len(examples))), packing=True, batch_size=8, row_tokens=1024,
                           pad_id=pad_id, share_prefix=share)
    loss = sum(causal_lm_loss_sum(model, b) for b in batches)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads, sum(b.input_ids.numel() for b in batches), sum(b.real_tokens for b in batches)


def test_shared_prefix_gives_the_same_loss_and_gradients_on_fewer_tokens(lora_model_and_examples):
    model, examples, pad_id = lora_model_and_examples
    assert supported(model)
    prefix = shared_prefix_length(examples)
    assert prefix >= MIN_SHARED_PREFIX  # SmolLM2's default system prompt and the user turn's marker
    model.train()
    plain_loss, plain_grads, plain_cells, plain_real = _step(model, examples, pad_id, share=False)
    shared_loss, shared_grads, shared_cells, shared_real = _step(model, examples, pad_id, share=True)
    print(f"shared prefix {prefix} tokens: {shared_cells} token cells against {plain_cells}, "
          f"loss {shared_loss:.6f} against {plain_loss:.6f}")
    assert shared_real == plain_real == sum(len(e) for e in examples)
    assert shared_cells < plain_cells * 0.8
    assert shared_loss == pytest.approx(plain_loss, rel=RELATIVE_TOLERANCE)
    worst = max(float((shared_grads[n] - g).norm() / g.norm()) for n, g in plain_grads.items())
    assert worst < 1e-3, f"largest relative gradient difference {worst:.2e}"


@pytest.mark.parametrize("share", [True, False], ids=["shared prefix", "plain packing"])
def test_block_attention_gives_the_same_loss_and_gradients_as_sdpa(lora_model_and_examples, share):
    """segment_attention, which the trainer uses on a CPU, against transformers' SDPA over the same rows."""
    model, examples, pad_id = lora_model_and_examples
    model.train()
    try:
        dense_loss, dense_grads, _, _ = _step(model, examples, pad_id, share=share)
        assert segment_attention.use(model) and segment_attention.active(model)
        batches = step_batches(examples, list(range(len(examples))), packing=True, batch_size=8, row_tokens=1024,
                               pad_id=pad_id, share_prefix=share)
        assert all(b.segments is not None for b in batches)  # the step really runs block by block
        block_loss, block_grads, _, _ = _step(model, examples, pad_id, share=share)
    finally:
        model.set_attn_implementation("sdpa")
    assert block_loss == pytest.approx(dense_loss, rel=RELATIVE_TOLERANCE)
    worst = max(float((block_grads[n] - g).norm() / g.norm()) for n, g in dense_grads.items())
    assert worst < 1e-3, f"largest relative gradient difference {worst:.2e}"
