"""Harmful content: toxic, hateful, obscene or sexual text, self-harm, threats and weapons in prompts or
answers (the seed: filter aggressively). The offline classifiers score every text; an optional
OpenAI-compatible moderation endpoint is asked about the texts they did not flag. The report gives the
side, the score and the category, never the text."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..meaning import HARMFUL, missing
from ..meaning.harmful import harmful_scores
from ..meaning.moderation import moderate
from .base import Check, Finding, Location, Locations


class HarmfulCheck(Check):
    name = "harmful"

    def __init__(self, mode: str, threshold: float, moderation: Any = None, key: str | None = None):
        self.mode, self.threshold = mode, threshold
        self.moderation, self.key = moderation, key

    def finish(self, ctx: Any) -> list[Finding]:
        if self.mode == "off" or not ctx.examples:
            return []
        gone = missing(HARMFUL)
        if gone and self.moderation is None:
            ctx.stats["harmful"] = {"skipped": f"{gone} is not installed"}
            return []
        texts = sorted(set(ctx.prompts) | set(ctx.completions))
        if gone:
            ctx.stats["harmful"] = {"offline": f"skipped: {gone} is not installed"}
            scores, categories = np.zeros(len(texts), dtype=np.float32), ["profanity"] * len(texts)
        else:
            scored = harmful_scores(texts, ctx.embedding_model if ctx.meaning else None)
            scores, categories = scored.scores.copy(), list(scored.categories)
        reasons = {k: f"scored {scores[k]:.2f} ({categories[k]})" for k in range(len(texts))}
        if self.moderation is not None:
            # Only what the offline classifiers did not flag, the likeliest first (a budget of maxTexts).
            todo = sorted((k for k in range(len(texts)) if scores[k] < self.threshold),
                          key=lambda k: (-float(scores[k]), k))[: self.moderation.max_texts]
            answer = moderate([texts[k] for k in todo], self.moderation, self.key)
            for n, (named, score) in answer.flagged.items():
                k = todo[n]
                scores[k] = max(self.threshold, min(1.0, score))
                reasons[k] = f"flagged by the moderation endpoint ({', '.join(named) or 'no category given'})"
            ctx.stats.setdefault("harmful", {})["moderation"] = {
                "sent": answer.sent, "requests": answer.requests, "retries": answer.retries,
                "flagged": len(answer.flagged)}
        at = {t: k for k, t in enumerate(texts)}
        found = Locations()
        for k in range(ctx.examples):
            p, c = at[ctx.prompts[k]], at[ctx.completions[k]]
            worst, side = (p, "prompt") if scores[p] >= scores[c] else (c, "answer")
            s = float(scores[worst])
            if s >= self.threshold:
                found.add(Location(ctx.files[k], ctx.lines[k], f"{side} {reasons[worst]}", score=s))
        if not found.count:
            return []
        severity = "error" if self.mode == "error" else "warning"
        return [Finding(self.name, severity, found.count,
                        f"{found.count} example(s) with toxic, hateful, sexual, self-harm, violent or weapons content (score "
                        f">= {self.threshold:g}; dataset.checks.harmful)", found.items, threshold=self.threshold)]
