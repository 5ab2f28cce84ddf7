"""The dataset checks on upload: the trainer's own checks, run in this process on the uploaded bytes.

An upload with errors is refused naming the check and the first lines at fault. The size check
(`minExamples`) is left to the job: at upload nobody knows yet whether a file is a training or a
(smaller) validation file; the training run refuses a too-small training set with DatasetInvalid.
"""

from __future__ import annotations

import io

from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset import SourceError, check
from loraplane_trainer.dataset.checks.base import Finding
from loraplane_trainer.dataset.sources import Reader

from .errors import InvalidRequest

DEFERRED_CHECKS = ("size",)
SHOWN_LINES = 5


def _where(finding: Finding) -> str:
    lines = sorted(set(finding.lines))
    if not lines:
        return ""
    shown = ", ".join(str(n) for n in lines[:SHOWN_LINES])
    more = f" (+{len(lines) - SHOWN_LINES} more)" if len(lines) > SHOWN_LINES else ""
    return f"line {shown}" if len(lines) == 1 else f"lines {shown}{more}"


def check_upload(filename: str, content: bytes, checks: DatasetChecks, max_tokens: int) -> str:
    """Run the dataset checks; raise InvalidRequest on errors, else return a one-line summary."""
    if not content.strip():
        raise InvalidRequest(f"{filename}: the file is empty", param="file", code="invalid_file")
    reader = Reader(filename, lambda: io.BytesIO(content), "jsonl", "auto", None)
    try:
        report = check(reader, checks, max_tokens=max_tokens)
    except SourceError as err:
        raise InvalidRequest(f"{filename}: {err}", param="file", code="invalid_file") from err
    errors = [f for f in report.errors if f.check not in DEFERRED_CHECKS]
    if errors:
        parts = []
        for f in errors:
            where = _where(f)
            parts.append(f"{where + ': ' if where else ''}{f.check}: {f.message}")
        raise InvalidRequest(f"{filename} failed the dataset checks: " + "; ".join(parts),
                             param="file", code="invalid_file")
    warnings = report.warnings
    summary = f"{report.examples} examples, {len(warnings)} warning(s)"
    if warnings:
        summary += ": " + "; ".join(f"{f.check}: {f.message}" for f in warnings[:3])
    return summary[:1024]
