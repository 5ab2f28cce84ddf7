"""Harmful content: toxic, hateful, obscene or sexual text, self-harm, threats and weapons in prompts or
answers (the seed: filter aggressively). The report gives the side, the score and the category, never
the text."""

from __future__ import annotations

from typing import Any

from ..meaning import HARMFUL, missing
from ..meaning.harmful import harmful_scores
from .base import Check, Finding, Location, Locations


class HarmfulCheck(Check):
    name = "harmful"

    def __init__(self, mode: str, threshold: float):
        self.mode, self.threshold = mode, threshold

    def finish(self, ctx: Any) -> list[Finding]:
        if self.mode == "off" or not ctx.examples:
            return []
        if gone := missing(HARMFUL):
            ctx.stats["harmful"] = {"skipped": f"{gone} is not installed"}
            return []
        texts = sorted(set(ctx.prompts) | set(ctx.completions))
        scored = harmful_scores(texts, ctx.embedding_model if ctx.meaning else None)
        at = {t: k for k, t in enumerate(texts)}
        found = Locations()
        for k in range(ctx.examples):
            p, c = at[ctx.prompts[k]], at[ctx.completions[k]]
            worst, side = (p, "prompt") if scored.scores[p] >= scored.scores[c] else (c, "answer")
            s = float(scored.scores[worst])
            if s >= self.threshold:
                found.add(Location(ctx.files[k], ctx.lines[k], f"{side} scored {s:.2f} ({scored.categories[worst]})",
                                   score=s))
        if not found.count:
            return []
        severity = "error" if self.mode == "error" else "warning"
        return [Finding(self.name, severity, found.count,
                        f"{found.count} example(s) with toxic, hateful, sexual, self-harm, violent or weapons content (score "
                        f">= {self.threshold:g}; dataset.checks.harmful)", found.items, threshold=self.threshold)]
