"""Near-duplicate search over MinHash signatures: LSH banding in numpy, never O(n^2).

Signatures live in one growing uint32 matrix (NUM_PERM values per text), so memory
grows with the number of examples, not with their size. Candidate pairs come from
equal band keys (16 bands of 4 rows: pairs above ~0.5 Jaccard almost always meet);
each candidate is then verified on its full signature.
"""

from __future__ import annotations

import numpy as np

from .text import NUM_PERM, signatures

BANDS, ROWS = 16, 4
CHUNK = 65536
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x27D4EB2F165667C5], dtype=np.uint64)


class SignatureMatrix:
    """A growable n x NUM_PERM matrix of MinHash signatures. Texts added with `add` are signed in batches
    (numpy over PENDING texts at once), when full or when the rows are read."""

    PENDING = 4096

    def __init__(self, capacity: int = 1024):
        self._data = np.empty((max(capacity, 1), NUM_PERM), dtype=np.uint32)
        self.n = 0
        self._pending: list[str] = []

    def _grow(self, n: int) -> None:
        while self.n + n > len(self._data):
            self._data = np.concatenate([self._data, np.empty_like(self._data)])

    def add(self, normalised: str) -> None:
        """Queue a normalised text; its signature is the next row."""
        self._pending.append(normalised)
        if len(self._pending) >= self.PENDING:
            self._flush()

    def extend(self, normalised: list[str]) -> None:
        for text in normalised:
            self.add(text)

    def _flush(self) -> None:
        if self._pending:
            sigs = signatures(self._pending)
            self._grow(len(sigs))
            self._data[self.n : self.n + len(sigs)] = sigs
            self.n += len(sigs)
            self._pending = []

    @property
    def rows(self) -> np.ndarray:
        self._flush()
        return self._data[: self.n]

    def similarity(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Estimated Jaccard similarity of the pairs (i[k], j[k])."""
        out = np.empty(len(i), dtype=np.float32)
        rows = self.rows
        for start in range(0, len(i), CHUNK):  # in chunks: a gathered pair matrix is 256 bytes per pair
            a, b = i[start : start + CHUNK], j[start : start + CHUNK]
            out[start : start + CHUNK] = (rows[a] == rows[b]).mean(axis=1)
        return out


def band_keys(sigs: np.ndarray) -> np.ndarray:
    """n x BANDS uint64 keys, one per band of ROWS signature values."""
    keys = np.zeros((len(sigs), BANDS), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for r in range(ROWS):
            keys = keys * np.uint64(31) + sigs[:, r::ROWS][:, :BANDS].astype(np.uint64) * _MIX[r]
    return keys


def candidate_pairs(sigs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique pairs (i < j) that share at least one band key."""
    n = len(sigs)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keys = band_keys(sigs)
    found = []
    for b in range(BANDS):
        order = np.argsort(keys[:, b], kind="stable")
        sorted_keys = keys[order, b]
        same = sorted_keys[1:] == sorted_keys[:-1]
        if not same.any():
            continue
        # Pair every member of a run of equal keys with the run's first member and with its predecessor:
        # linear in the run length, and enough to connect every group.
        starts = np.maximum.accumulate(np.where(np.r_[True, ~same], np.arange(n), 0))
        idx = np.nonzero(same)[0] + 1
        for other in (order[starts[idx]], order[idx - 1]):
            a, c = np.minimum(other, order[idx]), np.maximum(other, order[idx])
            found.append(a.astype(np.int64) * n + c)
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    codes = np.unique(np.concatenate(found))
    codes = codes[codes // n != codes % n]
    return codes // n, codes % n


def similar_pairs(matrix: SignatureMatrix, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs whose estimated Jaccard similarity is at least `threshold`, with that similarity."""
    i, j = candidate_pairs(matrix.rows)
    sim = matrix.similarity(i, j)
    keep = sim >= threshold
    return i[keep], j[keep], sim[keep]


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component id (the smallest member index) of each of n items given edges (i, j)."""
    parent = np.arange(n)

    def find(x: int) -> int:
        root = x
        while parent[root] != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(x) for x in range(n)], dtype=np.int64)
