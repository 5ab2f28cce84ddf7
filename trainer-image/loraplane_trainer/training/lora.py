"""LoRA configuration from the spec, with per-architecture default target modules."""

from __future__ import annotations

from loraplane.api.finetunejob import LoraSpec
from peft import LoraConfig, get_peft_model
from transformers import set_seed

# Non-reentrant checkpointing (PyTorch's recommended form): it needs no input that requires grad, and works
# under DDP and FSDP2, which the reentrant form does not reliably.
CHECKPOINTING_KWARGS = {"use_reentrant": False}

# The attention and MLP projections of common architectures: what `all-linear` means for them.
# Explicit names keep the adapter loadable by vLLM's LoRA loader, which knows modules by name.
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{arch: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for arch in ("llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text",
                    "olmo", "olmo2", "granite", "smollm3", "cohere")},
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "falcon": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "gpt_bigcode": ["c_attn", "c_proj", "c_fc"],
}


def target_modules(spec_targets: list[str], model_type: str) -> list[str] | str:
    """Resolve `all-linear` to the architecture's projections; other names are used as given."""
    if spec_targets == ["all-linear"]:
        return DEFAULT_TARGETS.get(model_type, "all-linear")
    return list(spec_targets)


def lora_config(spec: LoraSpec, model_type: str) -> LoraConfig:
    return LoraConfig(
        r=spec.r,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=target_modules(spec.target_modules, model_type),
        bias="none",
        task_type="CAUSAL_LM",
    )


def add_adapter(model, spec: LoraSpec, seed: int):
    """The model with a fresh LoRA adapter whose random initial weights follow the training seed.

    Without the seed every run of the same job started from other LoRA weights, and the demo's held-out
    exact match moved by a tenth between identical runs. `set_seed` also seeds Python's and NumPy's
    generators; under several ranks rank 0's initial weights are broadcast anyway.
    """
    set_seed(seed)
    return get_peft_model(model, lora_config(spec, model.config.model_type))


def checkpoint_activations(model) -> None:
    """Gradient checkpointing: each decoder layer keeps only its input and is recomputed in backward.

    What the plan counts with checkpointing (planning/memory.py): activations fall from every layer's
    saved tensors to one hidden state per layer, plus one layer's at a time.
    """
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5's name
    if enable is not None:
        enable(activation_checkpointing_kwargs=CHECKPOINTING_KWARGS)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING_KWARGS)
