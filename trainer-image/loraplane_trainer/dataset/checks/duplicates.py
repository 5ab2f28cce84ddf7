"""Exact and near duplicates: a near-same prompt with a near-same answer (and the same numbers).

Different wordings of a question that share a canonical answer are not duplicates:
only prompts that are surface copies of each other (casing, punctuation, typos,
greetings) are compared, through the prompt-similarity pairs of the analysis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..similarity import components
from .base import Check, Finding, Location, Locations

# Answers below this similarity, or stating other numbers, say different things (see contradictions).
SAME_ANSWER = 0.5


def same_answer(ctx: Any, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Which prompt pairs also share their answer."""
    sim = ctx.completion_sigs.similarity(i, j)
    nums = np.frombuffer(ctx.numbers_hash, dtype=np.int64)
    return (sim >= SAME_ANSWER) & (nums[i] == nums[j])


class DuplicateCheck(Check):
    name = "duplicates"

    def __init__(self, max_fraction: float):
        self.max_fraction = max_fraction

    def finish(self, ctx: Any) -> list[Finding]:
        i, j, _ = ctx.prompt_pairs
        dup = same_answer(ctx, i, j)
        i, j = i[dup], j[dup]
        if not len(i):
            return []
        comp = components(ctx.examples, i, j)
        extra = np.nonzero(comp != np.arange(ctx.examples))[0]
        raw = np.frombuffer(ctx.raw_hash, dtype=np.int64)
        found = Locations()
        exact = 0
        for k in extra.tolist():
            first = int(comp[k])
            is_exact = raw[k] == raw[first]
            exact += bool(is_exact)
            kind = "exact duplicate" if is_exact else "near duplicate"
            found.add(Location(ctx.files[k], ctx.lines[k], f"{kind} of line {ctx.lines[first]}"))
        n = found.count
        fraction = n / ctx.examples
        severity = "error" if fraction > self.max_fraction else "warning"
        return [Finding(self.name, severity, n,
                        f"{n} duplicate example(s) ({exact} exact, {n - exact} near; {fraction:.1%} of the set, "
                        f"limit {self.max_fraction:.0%})", found.items, threshold=self.max_fraction)]
