"""What a check produces: findings with a severity, a count and the file lines they concern."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..example import Example

Severity = Literal["error", "warning", "info"]
MAX_LOCATIONS = 50


@dataclass
class Location:
    """One place a finding concerns; `detail` never holds personal data in full."""

    file: str
    line: int
    detail: str = ""
    related_line: int | None = None  # the other example of a pair (a contradiction, a duplicate)
    similarity: float | None = None
    score: float | None = None  # how sure the check is (contradictions are sorted by it)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "line": self.line}
        if self.detail:
            out["detail"] = self.detail
        if self.related_line is not None:
            out["relatedLine"] = self.related_line
        if self.similarity is not None:
            out["similarity"] = round(self.similarity, 3)
        if self.score is not None:
            out["score"] = round(self.score, 3)
        return out


@dataclass
class Finding:
    """The result of one check that found something."""

    check: str
    severity: Severity
    count: int
    message: str
    locations: list[Location] = field(default_factory=list)
    threshold: Any = None

    @property
    def lines(self) -> list[int]:
        return [loc.line for loc in self.locations]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "check": self.check,
            "severity": self.severity,
            "count": self.count,
            "message": self.message,
            "locations": [loc.to_dict() for loc in self.locations[:MAX_LOCATIONS]],
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out


class Locations:
    """Collects up to MAX_LOCATIONS locations and counts the rest."""

    def __init__(self) -> None:
        self.items: list[Location] = []
        self.count = 0

    def add(self, ex: Example | Location, detail: str = "") -> None:
        self.count += 1
        if len(self.items) < MAX_LOCATIONS:
            loc = ex if isinstance(ex, Location) else Location(ex.file, ex.line, detail)
            self.items.append(loc)


class Check:
    """A check sees every example once, in file order, and keeps only compact state."""

    name = "check"

    def observe(self, index: int, ex: Example) -> None:  # pragma: no cover - default does nothing
        pass

    def finish(self, ctx: Any) -> list[Finding]:
        raise NotImplementedError


def warn_or_error(fail: bool) -> Severity:
    return "error" if fail else "warning"
