"""Edge-case skew: one intent drowning the rest, others starved.

Intents come from the data (`intent`); without them, examples that share an answer
(near-same completion) form one inferred intent, which is what a support set's
"intent" usually is. When answers are nearly all different there is nothing to infer
and skew is not measured (the report's stats say so): label the examples with `intent`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ..similarity import components, similar_pairs
from .base import Check, Finding

INFERRED_THRESHOLD = 0.7
MIN_SHARED = 3  # inferred intents need answers shared by 3 examples on average


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
            i, j, _ = similar_pairs(ctx.completion_sigs, INFERRED_THRESHOLD)
            comp = components(n, i, j)
            groups = len(np.unique(comp))
            if groups > n / MIN_SHARED:
                # Answers are (nearly) all different: there is no intent to infer from them.
                ctx.stats["intents"] = {"source": "none: no intent labels and few shared answers", "count": 0}
                return []
            labels = [f"answer of line {ctx.lines[int(c)]}" for c in comp.tolist()]
            source = "inferred (shared answers)"
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


def intent_array(ctx: Any) -> np.ndarray:
    """Integer stratum of each example for the split: its intent, or its inferred intent."""
    if any(name is not None for name in ctx.intent_names):
        return np.frombuffer(ctx.intent_ids, dtype=np.int64).copy()
    if ctx.inferred_intents is not None:
        return ctx.inferred_intents
    return np.zeros(ctx.examples, dtype=np.int64)
