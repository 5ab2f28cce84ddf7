"""The dataset report: JSON for machines, a rich table for people, a compact summary for status.dataset."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks.base import Finding

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
MAX_STATUS_PROBLEMS = 8
MAX_STATUS_LINES = 10


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
        }

    def status_summary(self) -> dict[str, Any]:
        """A few KB shaped like FineTuneJob status.dataset (camelCase)."""
        problems = []
        for f in self.sorted_findings()[:MAX_STATUS_PROBLEMS]:
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
        if not self.findings:
            console.print("  no problems found")
            return
        table = Table(show_lines=False)
        table.add_column("check")
        table.add_column("severity")
        table.add_column("count", justify="right")
        table.add_column("finding")
        table.add_column("where")
        for f in self.sorted_findings():
            style = {"error": "red", "warning": "yellow"}.get(f.severity, "")
            where = self._where(f)
            table.add_row(f.check, f"[{style}]{f.severity}[/]" if style else f.severity, str(f.count), f.message, where)
        console.print(table)

    def _where(self, f: Finding, shown: int = 6) -> str:
        """"lines 3, 9" in the dataset itself, "file:line" elsewhere (e.g. the validation file)."""
        parts = [str(loc.line) if loc.file == self.dataset else f"{loc.file}:{loc.line}" for loc in f.locations[:shown]]
        if not parts:
            return ""
        more = f" (+{f.count - shown})" if f.count > shown and len(f.locations) > shown else ""
        return ("line " if len(parts) == 1 else "lines ") + ", ".join(parts) + more
