"""Paraphrase groups: differently worded prompts with one answer (the seed's prompt variations).

Information, not a problem: their sizes go into the report's stats. A group holding more
than `maxParaphraseGroupShare` of the set (unset by default) is an error: one question
drowning the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Check, Finding, Location, Locations

SHOWN = 10


class ParaphraseCheck(Check):
    name = "paraphrase-groups"

    def __init__(self, max_share: float | None):
        self.max_share = max_share

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        if n == 0:
            return []
        groups = ctx.answer_groups
        prompts = np.frombuffer(ctx.prompt_hash, dtype=np.int64)
        roots, sizes = np.unique(groups, return_counts=True)
        multi = [(int(r), int(s)) for r, s in zip(roots.tolist(), sizes.tolist(), strict=True) if s > 1]
        # A group is of paraphrases when its prompts differ (copies are duplicates, not variations).
        listed = []
        for root, size in sorted(multi, key=lambda rs: (-rs[1], rs[0])):
            members = np.nonzero(groups == root)[0] if len(listed) < SHOWN or self.max_share else None
            if members is not None and len(np.unique(prompts[members])) < 2:
                continue
            listed.append((root, size))
        ctx.stats["paraphraseGroups"] = {
            "count": len(listed),
            "examples": sum(s for _, s in listed),
            "largest": [{"line": ctx.lines[r], "size": s, "share": round(s / n, 4),
                         "prompt": ctx.prompts[r][:80]} for r, s in listed[:SHOWN]],
        }
        if self.max_share is None:
            return []
        over = [(r, s) for r, s in listed if s / n > self.max_share]
        if not over:
            return []
        found = Locations()
        for r, s in over:
            found.add(Location(ctx.files[r], ctx.lines[r], f"group of {s} prompts ({s / n:.1%}) answered like line "
                               f"{ctx.lines[r]}"))
        return [Finding(self.name, "error", sum(s for _, s in over),
                        f"{len(over)} paraphrase group(s) above {self.max_share:.0%} of the set "
                        "(dataset.checks.maxParaphraseGroupShare)", found.items, threshold=self.max_share)]
