"""`prepare`: load, check, split and augment a FineTuneJob's dataset into the files the trainer reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .analysis import Analysis, analyse
from .augment import back_translation as bt
from .augment.filter import accept
from .augment.synthetic import SyntheticError, api_key, generate
from .augment.variations import variations
from .checks.base import Finding, Location, Locations
from .example import Example
from .meaning.moderation import ModerationError
from .report import DatasetReport
from .similarity import SignatureMatrix, similar_pairs
from .sources import Malformed, Reader, open_dataset, open_uri
from .split import split_mask
from .text import normalise_prompt

__all__ = ["ModerationError", "PreparedDataset", "SyntheticError", "check", "prepare"]


@dataclass
class PreparedDataset:
    """The prepared files and the report; `report.has_errors` means: do not train (exit code 42)."""

    train_path: Path
    validation_path: Path
    report_path: Path
    report: DatasetReport


def _report(reader: Reader, analysis: Analysis) -> DatasetReport:
    malformed = next((f.count for f in analysis.findings if f.check == "malformed"), 0)
    return DatasetReport(dataset=reader.label, hash=reader.sha256, examples=analysis.examples,
                         malformed=malformed, findings=list(analysis.findings), stats=dict(analysis.stats))


def check(reader: Reader, checks: Any, *, max_tokens: int | None = None, tokenizer: Any = None,
          secrets: Mapping[str, str] | None = None) -> DatasetReport:
    """Run every check over one source without keeping the examples (streaming)."""
    return _report(reader, analyse(reader, checks, max_tokens=max_tokens, tokenizer=tokenizer, secrets=secrets))


def leakage(train: list[Example], validation: list[Example], threshold: float) -> Finding | None:
    """Validation examples whose prompt is a near copy of a training prompt."""
    sigs = SignatureMatrix(len(train) + len(validation) + 1)
    sigs.extend([normalise_prompt(ex.prompt) for ex in train + validation])
    i, j, _ = similar_pairs(sigs, threshold)
    t = len(train)
    cross = (i < t) & (j >= t)
    found = Locations()
    leaked: dict[int, int] = {}
    for a, b in zip(i[cross].tolist(), j[cross].tolist(), strict=True):
        leaked.setdefault(b - t, a)
    for v, a in sorted(leaked.items()):
        found.add(Location(validation[v].file, validation[v].line,
                           f"near copy of training example {train[a].origin}"))
    if not found.count:
        return None
    share = found.count / max(len(validation), 1)
    return Finding("leakage", "warning", found.count,
                   f"{found.count} validation example(s) ({share:.1%}) are near copies of training prompts: "
                   "evaluation on them overstates what the model learned", found.items)


def prepare(
    spec: Any,
    workdir: Path,
    *,
    base_dir: Path | None = None,
    tokenizer: Any = None,
    secrets: Mapping[str, str] | None = None,
    augment: bool = True,
) -> PreparedDataset:
    """Load, check, split and augment spec.dataset; write train.jsonl, validation.jsonl, dataset-report.json.

    Bad data never raises: it goes into the report. An unreadable source raises SourceError,
    an unusable synthetic endpoint SyntheticError, an unusable moderation endpoint ModerationError.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ds = spec.dataset
    checks = ds.checks
    max_tokens = spec.training.max_tokens if spec.training else None
    reader = open_dataset(ds, base_dir=base_dir)
    examples: list[Example] = []
    analysis = analyse(reader, checks, max_tokens=max_tokens, tokenizer=tokenizer, keep=examples.append,
                       secrets=secrets)
    report = _report(reader, analysis)

    if ds.validation_uri:
        val_reader = open_uri(ds.validation_uri, base_dir=base_dir, fmt=ds.format, mapping=reader.mapping)
        validation: list[Example] = []
        bad = Locations()
        for item in val_reader:
            if isinstance(item, Malformed):
                bad.add(Location(item.file, item.line, item.message))
            else:
                validation.append(item)
        if bad.count:
            severity = "error" if bad.count > checks.max_malformed else "warning"
            report.findings.append(Finding("validation-malformed", severity, bad.count,
                                           f"{bad.count} malformed line(s) in the validation file", bad.items))
        if not validation:
            report.findings.append(Finding("validation-size", "error", 0, "the validation file has no valid examples"))
        train = examples
        if found := leakage(train, validation, checks.near_duplicate_threshold):
            report.findings.append(found)
        report.validation_file = val_reader.label
        report.split = {"method": "validation file", "leaked": found.count if found else 0}
    else:
        mask = split_mask(analysis, ds.validation_split, ds.seed, paraphrases_together=ds.keep_paraphrases_together)
        train = [ex for ex, v in zip(examples, mask.tolist(), strict=True) if not v]
        validation = [ex for ex, v in zip(examples, mask.tolist(), strict=True) if v]
        report.split = {"method": "grouped stratified split", "fraction": ds.validation_split, "seed": ds.seed,
                        "groups": int(len(np.unique(analysis.prompt_groups))) if analysis.examples else 0,
                        "paraphraseGroupsTogether": ds.keep_paraphrases_together}

    added: list[Example] = []
    aug = spec.augmentation
    if augment and aug and not report.has_errors:
        candidates: list[Example] = []
        if aug.prompt_variations and aug.prompt_variations.per_example:
            pv = aug.prompt_variations
            for ex in train:
                candidates += variations(ex, pv.per_example, ds.seed, pv.methods)
        if aug.synthetic:
            key = api_key(aug.synthetic.api_key_secret_ref, dict(secrets) if secrets else None)
            made, stats = asyncio.run(generate(train, aug.synthetic, seed=ds.seed, key=key))
            candidates += made
            report.stats["synthetic"] = {"requested": stats.requested, "received": stats.received,
                                         "failed": stats.failed, "retries": stats.retries}
            if stats.failed:
                report.findings.append(Finding("synthetic", "warning", stats.failed,
                                               f"{stats.failed} of {stats.requested} synthetic request(s) failed: "
                                               f"{stats.errors[-1] if stats.errors else ''}"))
        if aug.back_translation:
            cfg = aug.back_translation
            key = bt.api_key(cfg.api_key_secret_ref, dict(secrets) if secrets else None)
            made, bstats = asyncio.run(bt.back_translate(train, cfg, seed=ds.seed, key=key))
            candidates += made
            report.stats["backTranslation"] = {"requested": bstats.requested, "received": bstats.received,
                                               "failed": bstats.failed, "retries": bstats.retries,
                                               "languages": bstats.languages}
            if bstats.failed:
                report.findings.append(Finding("back-translation", "warning", bstats.failed,
                                               f"{bstats.failed} of {bstats.requested} back-translation(s) failed: "
                                               f"{bstats.errors[-1] if bstats.errors else ''}"))
        added, rejected = accept(candidates, train, validation, threshold=checks.near_duplicate_threshold,
                                 max_tokens=max_tokens, tokenizer=tokenizer, pii=checks.pii,
                                 harmful=checks.harmful, harmful_threshold=checks.harmful_threshold,
                                 embedding_model=checks.embedding_model)
        for ex in added:
            report.augmented[ex.source] = report.augmented.get(ex.source, 0) + 1
        report.augmentation_rejected = dict(rejected)

    report.train = len(train) + len(added)
    report.validation = len(validation)
    train_path = _write_jsonl(workdir / "train.jsonl", train + added)
    validation_path = _write_jsonl(workdir / "validation.jsonl", validation)
    report_path = report.write(workdir / "dataset-report.json")
    return PreparedDataset(train_path, validation_path, report_path, report)


def _write_jsonl(path: Path, examples: list[Example]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_record(), ensure_ascii=False) + "\n")
    return path
