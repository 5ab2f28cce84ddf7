"""The training loop returns the weights it names: their validation loss is the one it measured.

The adapter's evaluation takes that loss instead of computing it again (pipeline._evaluate_adapter),
so it must be the loss of the weights the model holds on return — the best evaluation's, restored
when a later epoch did worse.
"""

from __future__ import annotations

import pytest
from loraplane.api.finetunejob import LoraSpec, TrainingSpec
from loraplane_trainer.training.chat import tokenize_chat
from loraplane_trainer.training.checkpoints import CheckpointStore
from loraplane_trainer.training.cost import GpuClock
from loraplane_trainer.training.evaluation import mean_loss
from loraplane_trainer.training.loop import train
from loraplane_trainer.training.lora import add_adapter
from loraplane_trainer.training.precision import choose
from loraplane_trainer.training.progress import ProgressWriter

from tests.support.trainer_facts import FACTS

pytestmark = pytest.mark.integration


def test_the_loss_it_returns_is_the_loss_of_the_weights_it_holds(smollm2_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    precision = choose("auto")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=precision.weights_dtype)
    model = add_adapter(model, LoraSpec(r=8, alpha=32, dropout=0.0), seed=0)
    chats = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for a, qs in FACTS for q in qs]
    # Validation asks the same questions with another fact's answer: the more the model learns its own
    # answers, the worse it does there after the first epoch, so the loop restores an earlier epoch's
    # weights (or stops early on them) before it returns.
    swapped = [[{"role": "user", "content": q}, {"role": "assistant", "content": FACTS[(n + 1) % len(FACTS)][0]}]
               for n, (_, qs) in enumerate(FACTS) for q in qs]
    train_examples = [tokenize_chat(tokenizer, c, 256) for c in chats]
    val_examples = [tokenize_chat(tokenizer, c, 256) for c in swapped[::3]]
    spec = TrainingSpec(learning_rate=2e-3, batch_size=8, epochs=4, scheduler="constant", warmup_ratio=0.0,
                        max_tokens=256, checkpoint_interval_steps=1000)
    out = f"file://{tmp_path}"
    result = train(model, train_examples, val_examples, spec, precision, store=CheckpointStore(f"{out}/ckpt"),
                   progress=ProgressWriter(f"{out}/progress.json", "r1"), clock=GpuClock(),
                   pad_id=tokenizer.pad_token_id)
    losses = [e["evalLoss"] for e in result.evals]
    assert len(losses) >= 2 and losses[-1] > min(losses), losses  # the restore is exercised
    assert result.held_eval_loss == min(losses)
    # Packed as the loop packs them (rows of maxTokens): other rows round otherwise in bf16 (0.15 % here).
    measured = mean_loss(model, val_examples, precision, row_tokens=spec.max_tokens, pad_id=tokenizer.pad_token_id)
    assert measured == pytest.approx(result.held_eval_loss, rel=1e-3), (measured, losses)
