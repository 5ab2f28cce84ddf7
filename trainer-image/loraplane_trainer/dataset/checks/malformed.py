"""Malformed lines: bad JSON, wrong types, missing or empty fields, bad UTF-8, byte order marks."""

from __future__ import annotations

from typing import Any

from ..sources import Malformed
from .base import Check, Finding, Location, Locations


class MalformedCheck(Check):
    name = "malformed"

    def __init__(self, max_malformed: int):
        self.max_malformed = max_malformed
        self.found = Locations()

    def record(self, item: Malformed) -> None:
        self.found.add(Location(item.file, item.line, item.message))

    def finish(self, ctx: Any) -> list[Finding]:
        n = self.found.count
        if not n:
            return []
        first = self.found.items[0]
        severity = "error" if n > self.max_malformed else "warning"
        return [Finding(self.name, severity, n,
                        f"{n} malformed line(s), first {first.file}:{first.line}: {first.detail}",
                        self.found.items, threshold=self.max_malformed)]
