"""Harmful content: toxic, hateful, obscene or sexual text in prompts or answers (the seed: filter
aggressively). The report gives the side and the score, never the text."""

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
        score = dict(zip(texts, harmful_scores(texts).tolist(), strict=True))
        found = Locations()
        for k in range(ctx.examples):
            p, c = score[ctx.prompts[k]], score[ctx.completions[k]]
            if max(p, c) >= self.threshold:
                side = "prompt" if p >= c else "answer"
                found.add(Location(ctx.files[k], ctx.lines[k], f"{side} scored {max(p, c):.2f}", score=max(p, c)))
        if not found.count:
            return []
        severity = "error" if self.mode == "error" else "warning"
        return [Finding(self.name, severity, found.count,
                        f"{found.count} example(s) with toxic, hateful, obscene or sexual content (classifier score "
                        f">= {self.threshold:g}; dataset.checks.harmful)", found.items, threshold=self.threshold)]
