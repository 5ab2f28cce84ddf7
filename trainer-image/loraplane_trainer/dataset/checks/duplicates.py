"""Duplicates: the same prompt up to casing, accents, whitespace and punctuation, with the same answer.

Prompts worded differently — a greeting added, a typo, another phrasing — that share an
answer are prompt variations, the augmentation the seed recommends: they form paraphrase
groups (see paraphrases.py), never duplicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Check, Finding, Location, Locations

# Answers below this similarity, or stating other numbers, say different things (see contradictions).
SAME_ANSWER = 0.5


def same_answer(ctx: Any, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Which pairs share their answer in characters and numbers (cheap: MinHash)."""
    sim = ctx.completion_sigs.similarity(i, j)
    nums = np.frombuffer(ctx.numbers_hash, dtype=np.int64)
    return (sim >= SAME_ANSWER) & (nums[i] == nums[j])


class DuplicateCheck(Check):
    name = "duplicates"

    def __init__(self, max_fraction: float):
        self.max_fraction = max_fraction

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        if n < 2:
            return []
        key = np.frombuffer(ctx.strict_hash, dtype=np.int64)
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        owner = first[inverse]
        extra = np.nonzero(owner != np.arange(n))[0]
        if not len(extra):
            return []
        raw = np.frombuffer(ctx.raw_hash, dtype=np.int64)
        found = Locations()
        exact = 0
        for k in extra.tolist():
            o = int(owner[k])
            is_exact = raw[k] == raw[o]
            exact += bool(is_exact)
            kind = "exact duplicate" if is_exact else "duplicate (casing, spacing or punctuation)"
            found.add(Location(ctx.files[k], ctx.lines[k], f"{kind} of line {ctx.lines[o]}", related_line=ctx.lines[o]))
        count = found.count
        fraction = count / n
        severity = "error" if fraction > self.max_fraction else "warning"
        return [Finding(self.name, severity, count,
                        f"{count} duplicate example(s) ({exact} exact, {count - exact} up to casing, spacing or "
                        f"punctuation; {fraction:.1%} of the set, limit {self.max_fraction:.0%})", found.items,
                        threshold=self.max_fraction)]
