"""Malformed lines: bad JSON, wrong types, missing or empty fields, bad UTF-8, byte order marks.
Each line is listed with its own reason."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..sources import Malformed
from .base import Check, Finding, Location, Locations


class MalformedCheck(Check):
    name = "malformed"

    def __init__(self, max_malformed: int):
        self.max_malformed = max_malformed
        self.found = Locations()
        self.kinds: Counter = Counter()

    def record(self, item: Malformed) -> None:
        self.found.add(Location(item.file, item.line, item.message))
        self.kinds[item.message.split(":")[0].split(" (")[0]] += 1

    def finish(self, ctx: Any) -> list[Finding]:
        n = self.found.count
        if not n:
            return []
        severity = "error" if n > self.max_malformed else "warning"
        kinds = ", ".join(f"{c} {k}" for k, c in self.kinds.most_common(4))
        return [Finding(self.name, severity, n, f"{n} malformed line(s) ({kinds})", self.found.items,
                        threshold=self.max_malformed)]
