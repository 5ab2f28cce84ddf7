"""Nearest neighbours among unit vectors: exact cosine top-k by chunked matrix products (bf16 on CPU is
several times faster than fp32 and precise enough to pick candidates; every decision is re-scored).
Equal vectors (the same normalised prompt) are searched once. Past EXACT distinct vectors the search is an
inverted file over k-means cells (approximate, but linear in practice rather than quadratic)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

CHUNK = 4096
EXACT = 20_000  # distinct vectors up to which the search is exact (quadratic: 3 s at this size on one core)
PROBES = 8  # cells each vector is compared in, past EXACT
_MIX = np.random.default_rng(0).integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


def _exact(full: torch.Tensor, kk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Top-kk of every row against all rows: (rows, indices, values) flattened, chunk by chunk."""
    import torch

    for start in range(0, len(full), CHUNK):
        top = torch.topk(full[start : start + CHUNK] @ full.T, kk, dim=1)
        values, indices = top.values.float().numpy(), top.indices.numpy()
        rows = np.arange(start, start + len(values))[:, None].repeat(kk, axis=1)
        yield rows.reshape(-1), indices.reshape(-1), values.reshape(-1)


def _cells(full: torch.Tensor, kk: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Approximate top-kk (an inverted-file search): spherical k-means cells (about 2 sqrt(n) of them, seeded);
    each vector is compared with the members of its PROBES nearest cells only, then the top-kk per vector is
    taken over what those cells gave. Near neighbours share a cell or a neighbouring one; past EXACT vectors the
    quadratic search costs more than the rest of the checks together."""
    import torch

    m = len(full)
    c = max(PROBES, int(2 * m**0.5))
    gen = torch.Generator().manual_seed(0)
    sample = full[torch.randperm(m, generator=gen)[: min(m, 50 * c)]]
    centroids = sample[:c].clone()
    for _ in range(6):  # Lloyd iterations on the sample, on the sphere
        assign = torch.argmax(sample @ centroids.T, dim=1)
        sums = torch.zeros(c, full.shape[1]).index_add_(0, assign, sample.float())
        empty = sums.norm(dim=1) == 0
        sums[empty] = centroids[empty].float()
        centroids = torch.nn.functional.normalize(sums, dim=1).to(full.dtype)
    member_of = np.empty(m, dtype=np.int64)
    probes = np.empty((m, PROBES), dtype=np.int64)
    for start in range(0, m, CHUNK):
        top = torch.topk(full[start : start + CHUNK] @ centroids.T, PROBES, dim=1).indices.numpy()
        probes[start : start + CHUNK] = top
        member_of[start : start + CHUNK] = top[:, 0]
    members = np.argsort(member_of, kind="stable")
    bounds = np.searchsorted(member_of[members], np.arange(c + 1))
    queries = np.argsort(probes.reshape(-1), kind="stable")
    qbounds = np.searchsorted(probes.reshape(-1)[queries], np.arange(c + 1))
    rows_all, idx_all, val_all = [], [], []
    for cell in range(c):
        cand = members[bounds[cell] : bounds[cell + 1]]
        q = queries[qbounds[cell] : qbounds[cell + 1]] // PROBES
        if not len(cand) or not len(q):
            continue
        n_top = min(kk, len(cand))
        top = torch.topk(full[torch.from_numpy(q)] @ full[torch.from_numpy(cand)].T, n_top, dim=1)
        rows_all.append(q.repeat(n_top))
        idx_all.append(cand[top.indices.numpy()].reshape(-1))
        val_all.append(top.values.float().numpy().reshape(-1))
    rows, idx, val = np.concatenate(rows_all), np.concatenate(idx_all), np.concatenate(val_all)
    order = np.lexsort((-val, rows))  # per vector, the most similar first; keep its first kk
    rows, idx, val = rows[order], idx[order], val[order]
    first = np.searchsorted(rows, rows)
    keep = np.arange(len(rows)) - first < kk
    yield rows[keep], idx[keep], val[keep]


def neighbour_pairs(vectors: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) where j is among i's k nearest (or i among j's) with cosine >= threshold."""
    import torch

    n = len(vectors)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    if n < 2:
        return empty
    # Equal rows by a hash of their bytes (np.unique over rows sorts them lexicographically: far slower).
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    keys = rows.view(np.uint32).astype(np.uint64) @ _MIX[: rows.shape[1]] if rows.shape[1] else np.zeros(n, np.uint64)
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    unique = rows[first]
    found_i, found_j, found_s = [], [], []
    m = len(unique)
    if m >= 2:
        kk = min(k + 1, m)
        full = torch.from_numpy(np.ascontiguousarray(unique, dtype=np.float32)).to(torch.bfloat16)
        with torch.inference_mode():
            search = _exact if m <= EXACT else _cells
            for rows, indices, values in search(full, kk):
                keep = (values >= threshold) & (indices != rows)
                found_i.append(rows[keep])
                found_j.append(indices[keep])
                found_s.append(values[keep])
    # Back from unique vectors to examples: each unique vector's first example stands for it, and the
    # examples sharing one vector are pairs of similarity 1 (chained, not all pairs: linear).
    ui = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    uj = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    us = np.concatenate(found_s) if found_s else np.zeros(0, np.float32)
    i, j, s = first[ui], first[uj], us
    rep = first[inverse]
    same = np.nonzero(rep != np.arange(n))[0]
    i = np.concatenate([i, rep[same]])
    j = np.concatenate([j, same])
    s = np.concatenate([s, np.ones(len(same), np.float32)])
    if not len(i):
        return empty
    a, b = np.minimum(i, j), np.maximum(i, j)
    codes, pos = np.unique(a.astype(np.int64) * n + b, return_index=True)
    return codes // n, codes % n, s[pos]
