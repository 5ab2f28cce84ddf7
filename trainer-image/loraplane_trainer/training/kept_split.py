"""A run's checked split, kept beside its checkpoints (`RunLayout.kept_split`) and taken again by the same run.

A retried pod (an eviction, a lost node) resumes from its checkpoint: it must train on the examples
that checkpoint was trained on, not on a new split, and synthetic augmentation must not be bought
twice. It also skips the checks, which load their own models (half a minute on the demo's 522
examples on a CPU, far more on large sets). `loraplane_trainer run --dataset-only` keeps a run's
split before its training starts (the demo shows that report, then trains the same run).

A split is taken again only for the spec it was made for (`fingerprint`): the dataset, the
augmentation, the longest example and the base model (whose tokenizer counts the tokens).
`split.json` is written last: a split without it was cut off and is made again. The report is the
run's own `dataset-report.json`, written before the split is kept.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplane.api.finetunejob import FineTuneJobSpec
from loraplane.storage import RunLayout
from loraplane.storage.uris import filesystem

from .chat import read_chat_jsonl

TRAIN, VALIDATION, MARKER = "train.jsonl", "validation.jsonl", "split.json"


def fingerprint(spec: FineTuneJobSpec) -> str:
    """sha256 of the spec fields that decide the split and its examples."""
    parts = {
        "dataset": spec.dataset.model_dump(mode="json", by_alias=True, exclude_none=True),
        "augmentation": spec.augmentation.model_dump(mode="json", by_alias=True, exclude_none=True)
        if spec.augmentation else None,
        "maxTokens": spec.training.max_tokens,
        "baseModel": spec.base_model.model_dump(mode="json", by_alias=True, exclude_none=True,
                                                exclude={"allowed_licenses"}),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class KeptSplit:
    """A split taken from the run's directory: its examples, the report file and its status summary."""

    train: list[dict]
    validation: list[dict]
    report: bytes
    summary: dict[str, Any]
    uri: str


def keep(layout: RunLayout, spec: FineTuneJobSpec, train_path: Path, validation_path: Path,
         summary: dict[str, Any]) -> str:
    """Upload a checked split to the run's `kept_split`, the marker last; returns that directory's URI."""
    uri = layout.kept_split
    fs, base = filesystem(uri)
    fs.makedirs(base, exist_ok=True)  # local filesystems need it; object stores ignore it
    if fs.exists(f"{base}/{MARKER}"):
        fs.rm(f"{base}/{MARKER}")  # a split being replaced is not whole until its marker is back
    for name, path in ((TRAIN, train_path), (VALIDATION, validation_path)):
        fs.put_file(str(path), f"{base}/{name}")
    fs.pipe_file(f"{base}/{MARKER}", json.dumps({"fingerprint": fingerprint(spec), "summary": summary}).encode())
    return uri


def take(layout: RunLayout, spec: FineTuneJobSpec) -> KeptSplit | None:
    """The run's kept split when it is whole and was made for this spec; None otherwise."""
    uri = layout.kept_split
    fs, base = filesystem(uri)
    try:
        marker = json.loads(fs.cat_file(f"{base}/{MARKER}"))
    except FileNotFoundError:
        return None
    if marker.get("fingerprint") != fingerprint(spec):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for name in (TRAIN, VALIDATION):
            fs.get_file(f"{base}/{name}", str(Path(tmp, name)))
        train, validation = read_chat_jsonl(Path(tmp, TRAIN)), read_chat_jsonl(Path(tmp, VALIDATION))
    report_fs, report = filesystem(layout.dataset_report)
    return KeptSplit(train, validation, report_fs.cat_file(report), marker.get("summary") or {}, uri)
