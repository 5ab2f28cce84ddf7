"""A `MetricsSource` that adds the human win rate attached to each variant's adapter (human-evaluation.json)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from ..evaluation.attached import read_attached
from .analysis import VariantFigures
from .sources import MetricsSource


def human_figures(figures: VariantFigures, variant: str, found) -> VariantFigures:
    """The figures with the human win rate when the attached evaluation judged this variant with enough ratings."""
    if found is None:
        return replace(figures, human_note=f"no human evaluation attached to {variant}'s adapter")
    if found.candidate != variant:
        return replace(figures, human_note=f"the attached evaluation judged {found.candidate}, not {variant}")
    if not found.enough_ratings:
        return replace(figures, human_note=f"session {found.session} has too few ratings yet ({found.raters} raters)")
    return replace(figures, human_win_rate=found.win_rate)


class HumanEvaluatedSource:
    def __init__(self, inner: MetricsSource, adapter_uris: Mapping[str, str]):
        self.inner, self.adapter_uris = inner, dict(adapter_uris)

    async def baseline(self, model: str) -> dict[str, Any] | None:
        return await self.inner.baseline(model)

    async def figures(self, model: str, variants: Sequence[str], since: datetime, now: datetime,
                      baseline: Mapping[str, Any] | None) -> dict[str, VariantFigures]:
        figures = await self.inner.figures(model, variants, since, now, baseline)
        out = {}
        for v, f in figures.items():
            uri = self.adapter_uris.get(v)
            found = await asyncio.to_thread(read_attached, uri) if uri else None
            out[v] = human_figures(f, v, found)
        return out
