"""Size: too few examples to learn from."""

from __future__ import annotations

from typing import Any

from .base import Check, Finding


class SizeCheck(Check):
    name = "size"

    def __init__(self, minimum: int, recommended: int):
        self.minimum, self.recommended = minimum, recommended

    def finish(self, ctx: Any) -> list[Finding]:
        n = ctx.examples
        if n < self.minimum:
            return [Finding(self.name, "error", n, f"{n} valid examples; at least {self.minimum} are required "
                            "(dataset.checks.minExamples)", threshold=self.minimum)]
        if n < self.recommended:
            return [Finding(self.name, "warning", n, f"{n} valid examples; {self.recommended} or more are "
                            "recommended (dataset.checks.recommendedExamples)", threshold=self.recommended)]
        return []
