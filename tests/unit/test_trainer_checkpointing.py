"""Gradient checkpointing (training.gradientCheckpointing): layers are recomputed in backward, gradients unchanged."""

from __future__ import annotations

import math
import random

import torch
from loraplane.api.finetunejob import LoraSpec, TrainingSpec
from loraplane_trainer.training.chat import IGNORE, TokenizedExample
from loraplane_trainer.training.checkpoints import CheckpointStore
from loraplane_trainer.training.cost import GpuClock
from loraplane_trainer.training.loop import train
from loraplane_trainer.training.lora import add_adapter, checkpoint_activations
from loraplane_trainer.training.packing import causal_lm_loss_sum, step_batches
from loraplane_trainer.training.precision import Precision
from loraplane_trainer.training.progress import ProgressWriter
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_model(*, checkpointing: bool, dropout: float = 0.0):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    model = add_adapter(LlamaForCausalLM(config), LoraSpec(r=4, dropout=dropout), seed=0)
    for name, p in model.named_parameters():  # a trained adapter: lora_B is no longer zero, so lora_A gets gradients
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    if checkpointing:
        checkpoint_activations(model)
    model.train()
    return model


def examples() -> list[TokenizedExample]:
    rng = random.Random(1)
    prefix = [rng.randrange(64) for _ in range(10)]  # a shared prompt prefix: the 4D-mask path of packing
    out = []
    for n in (5, 7, 9, 6):
        rest = [rng.randrange(64) for _ in range(n)]
        out.append(TokenizedExample(prefix + rest, [IGNORE] * (len(prefix) + 2) + rest[2:]))
    return out


def lora_gradients(model) -> tuple[dict[str, torch.Tensor], int]:
    """The LoRA gradients of one packed step, and how often the decoder layers ran forward (counted on their MLPs:
    transformers checkpoints a layer's `forward`, so hooks on the layer itself run once)."""
    calls = 0

    def count(*_):
        nonlocal calls
        calls += 1

    hooks = [layer.mlp.register_forward_pre_hook(count) for layer in model.get_base_model().model.layers]
    ex = examples()
    for batch in step_batches(ex, list(range(len(ex))), packing=True, batch_size=4, row_tokens=64, pad_id=0,
                              share_prefix=True):
        causal_lm_loss_sum(model, batch).backward()
    for h in hooks:
        h.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, calls


def test_checkpointing_recomputes_each_layer_and_keeps_the_gradients():
    plain, plain_calls = lora_gradients(tiny_model(checkpointing=False))
    checked, checked_calls = lora_gradients(tiny_model(checkpointing=True))
    assert plain_calls == 2  # two layers, one micro-batch
    assert checked_calls == 2 * plain_calls  # each layer's forward again in backward
    assert plain.keys() == checked.keys() and any("lora_A" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(checked[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)


def test_checkpointing_is_off_in_evaluation():
    model = tiny_model(checkpointing=True)
    model.eval()
    _, calls = lora_gradients(model)
    assert calls == 2  # transformers checkpoints only in training mode


def test_the_training_loop_checkpoints_under_bf16_autocast(tmp_path):
    """The loop under bf16 autocast (peft's LoRA input casts off, as on a CPU with AMX and on GPUs) recomputes the
    same tensors in backward as its forward saved: torch's checkpointing refuses a recompute that differs (with
    LoRA dropout, the dropout's input was bf16 in the forward and fp32 in a recompute that casts)."""
    model = tiny_model(checkpointing=True, dropout=0.1).to(torch.bfloat16)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # peft keeps the adapter fp32 over bf16 weights
    precision = Precision("cpu", "bf16", "test")
    spec = TrainingSpec(batch_size=4, epochs=1, max_tokens=64, gradient_checkpointing=True)
    out = f"file://{tmp_path}"
    result = train(model, examples(), examples()[:2], spec, precision, store=CheckpointStore(f"{out}/ckpt"),
                   progress=ProgressWriter(f"{out}/progress.json", "r1"), clock=GpuClock(), pad_id=0)
    assert result.steps == 1 and result.train_loss is not None and math.isfinite(result.train_loss)
