"""The dataset report: JSON for machines, a rich table for people, a compact summary for status.dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks.base import MAX_LOCATIONS, Finding

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
MAX_STATUS_PROBLEMS = 8
MAX_STATUS_LINES = 10
SHOWN_LOCATIONS = 5


@dataclass
class DatasetReport:
    """Everything the checks found about a dataset, its split and its augmentation."""

    dataset: str
    hash: str | None = None
    examples: int = 0
    malformed: int = 0
    train: int | None = None
    validation: int | None = None
    validation_file: str | None = None
    augmented: dict[str, int] = field(default_factory=dict)
    augmentation_rejected: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def has_errors(self) -> bool:
        return bool(self.errors)

    def finding(self, check: str) -> Finding | None:
        """The finding of a check, if it found anything."""
        return next((f for f in self.findings if f.check == check), None)

    def sorted_findings(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: (SEVERITY_ORDER[f.severity], -f.count))

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (dataset-report.json)."""
        return {
            "dataset": self.dataset,
            "validationFile": self.validation_file,
            "hash": self.hash,
            "examples": self.examples,
            "malformed": self.malformed,
            "train": self.train,
            "validation": self.validation,
            "augmented": {"total": sum(self.augmented.values()), "byMethod": self.augmented,
                          "rejected": self.augmentation_rejected},
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "passed": not self.has_errors,
            "checks": [f.to_dict() for f in self.sorted_findings()],
            "split": self.split,
            "stats": self.stats,
            "paraphraseGroups": self.stats.get("paraphraseGroups", {"count": 0, "examples": 0, "largest": []}),
        }

    def status_summary(self) -> dict[str, Any]:
        """A few KB shaped like FineTuneJob status.dataset (camelCase)."""
        problems = []
        for f in [f for f in self.sorted_findings() if f.severity != "info"][:MAX_STATUS_PROBLEMS]:
            lines = sorted(set(f.lines))[:MAX_STATUS_LINES]
            problems.append({"check": f.check, "severity": "error" if f.severity == "error" else "warning",
                             "count": f.count, "message": f.message[:512], "lines": lines})
        out: dict[str, Any] = {
            "examples": self.examples,
            "train": self.train,
            "validation": self.validation,
            "augmented": sum(self.augmented.values()),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "hash": f"sha256:{self.hash}" if self.hash else None,
            "topProblems": problems,
        }
        return {k: v for k, v in out.items() if v is not None}

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return path

    def render(self, console: Any = None) -> None:
        """Print the human view: a summary line and a table of findings."""
        from rich.console import Console
        from rich.markup import escape as rich_escape
        from rich.table import Table

        console = console or Console()
        verdict = "[bold red]FAILED[/]" if self.has_errors else "[bold green]passed[/]"
        parts = [f"{self.examples} examples"]
        if self.malformed:
            parts.append(f"{self.malformed} malformed")
        if self.train is not None:
            parts.append(f"train {self.train} / validation {self.validation}")
        if self.augmented:
            parts.append("augmented " + ", ".join(f"{k} +{v}" for k, v in self.augmented.items()))
        console.print(f"Dataset [bold]{self.dataset}[/]: {verdict} — " + ", ".join(parts))
        if self.hash:
            console.print(f"  sha256 {self.hash}", style="dim")
        tokens = self.stats.get("tokens")
        if tokens:
            console.print(f"  tokens: longest {tokens['longest']}, mean {tokens['mean']} ({tokens['how']})",
                          style="dim")
        groups = self.stats.get("paraphraseGroups")
        if groups and groups.get("count"):
            top = groups["largest"][0]
            console.print(f"  paraphrase groups: {groups['count']} (prompts sharing one answer; largest "
                          f"{top['size']} at line {top['line']}, {top['share']:.1%} of the set)", style="dim")
        if not self.findings:
            console.print("  no problems found")
            return
        # Every column folds instead of cutting: the evidence must be readable in 80 columns.
        table = Table(show_lines=True, expand=False)
        table.add_column("check", overflow="fold")
        table.add_column("severity", overflow="fold")
        table.add_column("count", justify="right", overflow="fold")
        table.add_column("finding and where", overflow="fold", ratio=1)
        for f in self.sorted_findings():
            style = {"error": "red", "warning": "yellow"}.get(f.severity, "")
            body = "\n".join([rich_escape(f.message), *(rich_escape(x) for x in self._where(f))])
            table.add_row(f.check, f"[{style}]{f.severity}[/]" if style else f.severity, str(f.count), body)
        console.print(table)

    def _where(self, f: Finding, shown: int = SHOWN_LOCATIONS) -> list[str]:
        """One line per location with its own reason: "line 3: ..." in the dataset, "file:line: ..." elsewhere."""
        out = []
        for loc in f.locations[:shown]:
            where = f"line {loc.line}" if loc.file == self.dataset else f"{loc.file}:{loc.line}"
            out.append(f"  {where}: {loc.detail}" if loc.detail else f"  {where}")
        if f.count > len(out) and out:
            out.append(f"  ... and {f.count - len(out)} more (--json lists {min(f.count, MAX_LOCATIONS)})")
        return out
