"""A model's size from its config.json alone: no weights, no torch.

Where a config comes from, first found wins: `baseModel.uri` (a directory, any fsspec URI)
or a directory given as `name`; the local Hugging Face cache; the shapes of well-known
models shipped in `known_models.json` (so an operator without Hub access can still plan
them); the Hub (config.json only, one small HTTP request; `HF_HUB_OFFLINE=1` skips it).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from ..storage.uris import filesystem, join

HUB = "https://huggingface.co"
# Chat/instruct variants have their base model's shape.
ALIASES = {
    "meta-llama/Llama-2-7b-chat-hf": "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-13b-chat-hf": "meta-llama/Llama-2-13b-hf",
    "meta-llama/Llama-2-70b-chat-hf": "meta-llama/Llama-2-70b-hf",
    "meta-llama/Meta-Llama-3-8B-Instruct": "meta-llama/Meta-Llama-3-8B",
    "meta-llama/Llama-3.1-8B": "meta-llama/Meta-Llama-3-8B",
    "meta-llama/Llama-3.1-8B-Instruct": "meta-llama/Meta-Llama-3-8B",
    "meta-llama/Meta-Llama-3-70B-Instruct": "meta-llama/Meta-Llama-3-70B",
    "meta-llama/Llama-3.1-70B": "meta-llama/Meta-Llama-3-70B",
    "meta-llama/Llama-3.1-70B-Instruct": "meta-llama/Meta-Llama-3-70B",
    "meta-llama/Llama-3.3-70B-Instruct": "meta-llama/Meta-Llama-3-70B",
    "mistralai/Mistral-7B-Instruct-v0.1": "mistralai/Mistral-7B-v0.1",
    "mistralai/Mistral-7B-Instruct-v0.2": "mistralai/Mistral-7B-v0.1",
}
# Architectures whose MLP has no gate (two matrices instead of three).
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
UNGATED = ("gpt2", "gpt_neox", "falcon", "phi", "gpt_bigcode", "opt")


class ShapeUnknown(Exception):
    """The model's config.json could not be found or read."""


@dataclass(frozen=True)
class ModelShape:
    """What the memory and time model needs of an architecture."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    gated_mlp: bool = True
    experts: int = 1
    source: str = ""  # where the config came from

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def layer_linears(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each projection of one decoder layer (llama names; experts counted in `experts`)."""
        h, i = self.hidden, self.intermediate
        linears = {"q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim),
                   "o_proj": (self.q_dim, h), "up_proj": (h, i), "down_proj": (i, h)}
        if self.gated_mlp:
            linears["gate_proj"] = (h, i)
        return linears

    @property
    def linear_params(self) -> int:
        """Parameters in the decoder layers' projections (what 4-bit quantises)."""
        linears = self.layer_linears()
        attn = sum(a * b for n, (a, b) in linears.items() if n in ATTENTION)
        mlp = sum(a * b for n, (a, b) in linears.items() if n not in ATTENTION)
        return self.layers * (attn + self.experts * mlp)

    @property
    def embedding_params(self) -> int:
        """Input embeddings plus the output head when it is not tied to them."""
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)

    @property
    def params(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        return self.linear_params + self.embedding_params + norms


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def shape_from_config(config: Mapping[str, Any], source: str = "") -> ModelShape:
    """A ModelShape from a config.json's fields (llama names, gpt2/falcon aliases, text_config of multimodal)."""
    if isinstance(config.get("text_config"), Mapping):
        config = {**config["text_config"], "tie_word_embeddings": config.get("tie_word_embeddings", True)}
    hidden = _first(config, "hidden_size", "n_embd", "d_model")
    layers = _first(config, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first(config, "num_attention_heads", "n_head")
    vocab = _first(config, "vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (hidden, layers, heads, vocab)):
        raise ShapeUnknown(f"{source or 'config'}: needs hidden_size, num_hidden_layers, num_attention_heads "
                           "and vocab_size")
    model_type = str(config.get("model_type") or "unknown")
    kv = _first(config, "num_key_value_heads", "num_kv_heads") or (1 if config.get("multi_query") else heads)
    head_dim = _first(config, "head_dim") or hidden // heads
    gated = model_type not in UNGATED
    intermediate = _first(config, "intermediate_size", "n_inner", "ffn_dim") or 4 * hidden
    return ModelShape(
        model_type=model_type, hidden=hidden, layers=layers, heads=heads, kv_heads=int(kv), head_dim=int(head_dim),
        intermediate=int(intermediate), vocab=vocab, tied_embeddings=bool(config.get("tie_word_embeddings", True)),
        gated_mlp=gated, experts=int(_first(config, "num_local_experts", "num_experts") or 1), source=source,
    )


@functools.cache
def known_configs() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath("known_models.json").read_text())


def _hub_cache_config(name: str, revision: str | None) -> Path | None:
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub")
    repo = home.expanduser() / f"models--{name.replace('/', '--')}"
    ref = repo / "refs" / (revision or "main")
    snapshot = ref.read_text().strip() if ref.is_file() else (revision or "")
    candidates = [repo / "snapshots" / snapshot / "config.json"] if snapshot else []
    candidates += sorted((repo / "snapshots").glob("*/config.json"))
    return next((c for c in candidates if c.is_file()), None)


def _read_uri_config(uri: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    target = join(uri, "config.json")
    if storage_options:
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(target, **storage_options)
    else:
        fs, path = filesystem(target)
    try:
        with fs.open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return None


@functools.lru_cache(maxsize=256)
def _hub_config(name: str, revision: str | None) -> dict[str, Any] | None:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return None
    headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}
    try:
        resp = httpx.get(f"{HUB}/{name}/resolve/{revision or 'main'}/config.json", headers=headers,
                         follow_redirects=True, timeout=5.0)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def model_shape(name: str | None = None, uri: str | None = None, revision: str | None = None, *,
                storage_options: Mapping[str, Any] | None = None) -> ModelShape:
    """The shape of `baseModel` (name or uri) from its config.json; ShapeUnknown when none is found."""
    if uri:
        if uri.endswith(".gguf"):
            raise ShapeUnknown(f"baseModel.uri {uri}: a GGUF file has no config.json (give a directory to plan)")
        config = _read_uri_config(uri, storage_options)
        if config is None:
            raise ShapeUnknown(f"baseModel.uri {uri}: no config.json there")
        return shape_from_config(config, f"{uri}/config.json")
    if not name:
        raise ShapeUnknown("baseModel has neither name nor uri")
    if Path(name).expanduser().is_dir():
        config = _read_uri_config(str(Path(name).expanduser()), None)
        if config is not None:
            return shape_from_config(config, f"{name}/config.json")
    cached = _hub_cache_config(name, revision)
    if cached is not None:
        return shape_from_config(json.loads(cached.read_text()), str(cached))
    known = known_configs().get(ALIASES.get(name, name))
    if known is not None:
        return shape_from_config(known, f"known shape of {ALIASES.get(name, name)}")
    config = _hub_config(name, revision)
    if config is None:
        raise ShapeUnknown(f"baseModel.name {name}: no config.json in the Hub cache, among the known models "
                           "or on the Hub (HF_HUB_OFFLINE, no network, or a gated model)")
    return shape_from_config(config, f"{HUB}/{name}")
