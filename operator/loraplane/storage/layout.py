"""Where a FineTuneJob's runs and adapter versions live in object storage.

    <output>/<job>/runs/<run-id>/    progress.json, dataset-report.json, checkpoints/<step>/
    <output>/<job>/<version>/        adapter files, metrics.json, README.md, ..., manifest.json (last)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .manifest import MANIFEST_FILE
from .progress import PROGRESS_FILE
from .uris import filesystem, join

VERSION_RE = re.compile(r"^v([0-9]+)$")


def job_prefix(output_uri: str, job_name: str) -> str:
    return join(output_uri, job_name)


def run_id(uid: str, generation: int, attempt_suffix: str | None = None) -> str:
    """Run id of one generation of a job; a scheduled retrain of the same generation adds a suffix."""
    rid = f"{uid}-{generation}"
    return f"{rid}-{attempt_suffix}" if attempt_suffix else rid


def version_number(version: str) -> int | None:
    m = VERSION_RE.match(version)
    return int(m.group(1)) if m else None


# How `loraplane train` and the demo show a result.json's metrics: (label, before key, after key).
EVALUATION_ROWS = [
    ("validation perplexity", "perplexityBefore", "perplexityAfter"),
    ("validation exact match", "exactMatchBefore", "exactMatchAfter"),
    ("regression perplexity", "regressionPerplexityBefore", "regressionPerplexityAfter"),
    ("harmful-request compliance", "harmfulComplianceBefore", "harmfulComplianceAfter"),
]


@dataclass(frozen=True)
class RunLayout:
    """Paths of one training run."""

    output_uri: str
    job_name: str
    run: str

    @property
    def prefix(self) -> str:
        return join(self.output_uri, self.job_name, "runs", self.run)

    @property
    def progress(self) -> str:
        return join(self.prefix, PROGRESS_FILE)

    @property
    def dataset_report(self) -> str:
        return join(self.prefix, "dataset-report.json")

    @property
    def kept_split(self) -> str:
        """The run's checked split (train.jsonl, validation.jsonl, split.json), taken again when the run restarts."""
        return join(self.prefix, "dataset")

    @property
    def checkpoints(self) -> str:
        return join(self.prefix, "checkpoints")

    @property
    def result(self) -> str:
        """result.json: written by the trainer when the run ends (version published or failure)."""
        return join(self.prefix, "result.json")

    def read_result(self) -> dict[str, Any] | None:
        """The run's result.json, or None while the run has not ended."""
        fs, path = filesystem(self.result)
        if not fs.exists(path):
            return None
        with fs.open(path, "rb") as f:
            return json.loads(f.read())


@dataclass(frozen=True)
class VersionLayout:
    """Paths of one published adapter version."""

    output_uri: str
    job_name: str
    version: str

    @property
    def prefix(self) -> str:
        return join(self.output_uri, self.job_name, self.version)

    @property
    def manifest(self) -> str:
        return join(self.prefix, MANIFEST_FILE)
