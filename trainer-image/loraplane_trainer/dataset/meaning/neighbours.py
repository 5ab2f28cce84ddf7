"""Nearest neighbours among unit vectors: exact cosine top-k by chunked matrix products (bf16 on CPU is
several times faster than fp32 and precise enough to pick candidates; every decision is re-scored)."""

from __future__ import annotations

import numpy as np

CHUNK = 2048


def neighbour_pairs(vectors: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) where j is among i's k nearest (or i among j's) with cosine >= threshold."""
    import torch

    n = len(vectors)
    if n < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0, np.float32)
    k = min(k, n - 1)
    full = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)).to(torch.bfloat16)
    found_i, found_j, found_s = [], [], []
    with torch.inference_mode():
        for start in range(0, n, CHUNK):
            block = full[start : start + CHUNK]
            sims = (block @ full.T).float()
            rows = torch.arange(len(block))
            sims[rows, rows + start] = -2.0  # not its own neighbour
            top = torch.topk(sims, k, dim=1)
            keep = top.values >= threshold
            i = (rows.unsqueeze(1).expand_as(keep) + start)[keep]
            found_i.append(i.numpy())
            found_j.append(top.indices[keep].numpy())
            found_s.append(top.values[keep].numpy())
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    a, b = np.minimum(i, j), np.maximum(i, j)
    codes, first = np.unique(a.astype(np.int64) * n + b, return_index=True)
    return codes // n, codes % n, s[first]
