"""Edge-case skew: one intent drowning the rest, others starved.

Intents come from the data (`intent`); without them they are clusters of prompt
meaning: prompts that are each other's near neighbours in the embedding space (static
cosine >= INTENT_SIMILARITY, confirmed by the full model when their answers differ),
joined with the prompts that share their answer. Each is
shown with a representative prompt. When nearly every cluster is a single example there is
nothing to infer and skew is not measured (the report's stats say so).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..similarity import components
from .base import Check, Finding

INTENT_SIMILARITY = 0.85  # static cosine: candidates
INTENT_FULL_SIMILARITY = 0.8  # full-model cosine that prompts with different answers need to share an intent
MIN_SHARED = 3  # inferred intents need 3 examples each on average


class SkewCheck(Check):
    name = "skew"

    def __init__(self, max_share: float, min_share: float):
        self.max_share, self.min_share = max_share, min_share

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        if n == 0:
            return []
        if any(name is not None for name in ctx.intent_names):
            labels = [ctx.intent_names[k] or "(none)" for k in ctx.intent_ids]
            source = "intent"
        else:
            si, sj, sim = ctx.semantic_pairs
            same = ctx.answer_groups
            close = sim >= INTENT_SIMILARITY
            si, sj, sim = si[close], sj[close], sim[close]
            cross = same[si] != same[sj]
            if cross.any():
                within = ctx.within_budget(si[cross], sj[cross], sim[cross], "intents")
                drop = np.nonzero(cross)[0][~within]
                keep_all = np.ones(len(si), dtype=bool)
                keep_all[drop] = False  # beyond the budget: not joined
                si, sj, sim = si[keep_all], sj[keep_all], sim[keep_all]
                cross = same[si] != same[sj]
            if cross.any():  # prompts with other answers join one intent only if the full model agrees
                ci, cj = si[cross], sj[cross]
                vec = ctx.full_vectors([ctx.prompts[k] for k in np.unique(np.r_[ci, cj]).tolist()])
                agree = np.array([float(vec[ctx.prompts[a]] @ vec[ctx.prompts[b]]) >= INTENT_FULL_SIMILARITY
                                  for a, b in zip(ci.tolist(), cj.tolist(), strict=True)], dtype=bool)
                keep = ~cross
                keep[np.nonzero(cross)[0][agree]] = True
                si, sj = si[keep], sj[keep]
            i = np.concatenate([si, np.arange(n)])
            j = np.concatenate([sj, same])
            comp = components(n, i, j)
            groups = len(np.unique(comp))
            if groups > n / MIN_SHARED:
                # Prompts are (nearly) all unrelated: there is no intent to infer from them.
                ctx.stats["intents"] = {"source": "none: no intent labels and few related prompts", "count": 0}
                return []
            names = {int(c): f"\"{_short(ctx.prompts[int(c)])}\" (line {ctx.lines[int(c)]})" for c in np.unique(comp)}
            labels = [names[int(c)] for c in comp.tolist()]
            source = "inferred (clusters of prompt meaning)"
            ctx.inferred_intents = comp
        counts = Counter(labels)
        ctx.stats["intents"] = {"source": source, "count": len(counts),
                                "top": dict(counts.most_common(10))}
        if len(counts) < 2:
            return []
        out = []
        dominant = [(k, c) for k, c in counts.most_common() if c / n > self.max_share]
        if dominant:
            names = ", ".join(f"{k} ({c / n:.0%})" for k, c in dominant)
            out.append(Finding("skew-dominant", "warning", sum(c for _, c in dominant),
                               f"dominant intent(s) above {self.max_share:.0%} of examples: {names}",
                               threshold=self.max_share))
        starved = [(k, c) for k, c in sorted(counts.items(), key=lambda kv: kv[1]) if c / n < self.min_share]
        if starved:
            names = ", ".join(f"{k} ({c})" for k, c in starved[:10])
            out.append(Finding("skew-starved", "warning", sum(c for _, c in starved),
                               f"{len(starved)} starved intent(s) below {self.min_share:.1%} of examples: {names}",
                               threshold=self.min_share))
        if source == "intent" and counts.get("(none)"):
            out.append(Finding("skew-unlabelled", "warning", counts["(none)"],
                               f"{counts['(none)']} example(s) have no intent while others do"))
        return out


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def intent_array(ctx: Any) -> np.ndarray:
    """Integer stratum of each example for the split: its intent, or its inferred intent."""
    if any(name is not None for name in ctx.intent_names):
        return np.frombuffer(ctx.intent_ids, dtype=np.int64).copy()
    if ctx.inferred_intents is not None:
        return ctx.inferred_intents
    return np.zeros(ctx.examples, dtype=np.int64)
