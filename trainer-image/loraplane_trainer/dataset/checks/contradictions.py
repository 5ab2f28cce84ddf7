"""Contradictions: the same or a near-same prompt with materially different answers
(dissimilar text, or other numbers: "$9/month" vs "$12/month")."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Check, Finding, Location, Locations
from .duplicates import same_answer


class ContradictionCheck(Check):
    name = "contradictions"

    def __init__(self, max_contradictions: int):
        self.max_contradictions = max_contradictions

    def finish(self, ctx: Any) -> list[Finding]:
        i, j, _ = ctx.prompt_pairs
        differ = ~same_answer(ctx, i, j)
        i, j = i[differ], j[differ]
        if not len(i):
            return []
        groups = ctx.prompt_groups
        found = Locations()
        seen: set[int] = set()
        for a, b in sorted(zip(i.tolist(), j.tolist(), strict=True)):
            g = int(groups[a])
            if g in seen:
                continue
            seen.add(g)
            found.add(Location(ctx.files[b], ctx.lines[b], f"answers line {ctx.lines[a]} differently"))
        n = len(seen)
        severity = "error" if n > self.max_contradictions else "warning"
        pairs = int(np.count_nonzero(differ))
        return [Finding(self.name, severity, n,
                        f"{n} prompt(s) have materially different answers ({pairs} conflicting pair(s); "
                        f"allowed {self.max_contradictions})", found.items, threshold=self.max_contradictions)]
