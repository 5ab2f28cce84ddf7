"""The train/validation split: deterministic, stratified by intent, near-copies kept on one side.

Groups of near-copy prompts (see `Analysis.prompt_groups`) are the unit that is
assigned; with `keepParaphrasesTogether`, whole paraphrase groups (prompts sharing one
answer) are. Their order comes from a seeded hash of their content, not from file order,
so the same data and seed give the same split even when the file is reordered.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from .checks.skew import intent_array
from .similarity import components
from .text import stable_hash


def split_mask(analysis: Any, fraction: float, seed: int, *, paraphrases_together: bool = False) -> np.ndarray:
    """A boolean array: True where the example goes to validation."""
    n = analysis.examples
    groups = analysis.prompt_groups
    strata = intent_array(analysis)
    if paraphrases_together and n:
        # Near copies and paraphrase groups joined: one unit each, stratified across all (one intent is
        # usually one group, so strata by intent would keep every group in training).
        i = np.arange(n)
        groups = components(n, np.concatenate([i, i]), np.concatenate([groups, analysis.answer_groups]))
        strata = np.zeros(n, dtype=np.int64)
    prompt_hash = np.frombuffer(analysis.prompt_hash, dtype=np.int64)
    roots, sizes = np.unique(groups, return_counts=True)
    by_stratum: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for root, size in zip(roots.tolist(), sizes.tolist(), strict=True):
        key = stable_hash(f"{seed}:{prompt_hash[root]}")
        by_stratum[int(strata[root])].append((key, root, size))
    chosen: set[int] = set()
    for members in by_stratum.values():
        if len(members) < 2:
            continue  # a single group cannot be split without leaking it: it trains
        members.sort()
        total = sum(size for _, _, size in members)
        target = round(total * fraction)
        taken = 0
        for _, root, size in members:
            if taken >= target:
                break
            if taken + size <= target or (taken == 0 and size < total):
                chosen.add(root)
                taken += size
    mask = np.isin(groups, np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    return mask if n else np.zeros(0, dtype=bool)
