"""A run's checked split is taken again only whole and only for the spec it was made for."""

from __future__ import annotations

import json
from pathlib import Path

from loraplane.api.finetunejob import FineTuneJob
from loraplane.storage import RunLayout
from loraplane_trainer.training import kept_split

from tests.support.trainer_facts import facts_job


def _spec(tmp_path, **dataset):
    job = facts_job(tmp_path / "facts.jsonl", f"file://{tmp_path}/out")
    job["spec"]["dataset"].update(dataset)
    return FineTuneJob.model_validate(job).spec


def _layout(tmp_path) -> RunLayout:
    """A run whose dataset report is written, as the trainer writes it before it keeps the split."""
    layout = RunLayout(f"file://{tmp_path}/out", "facts-bot", "r1")
    report = Path(layout.dataset_report.removeprefix("file://"))
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text('{"passed": true}')
    return layout


def _files(tmp_path):
    rows = {"train": [{"messages": [{"role": "user", "content": "a?"}, {"role": "assistant", "content": "A."}]}],
            "validation": [{"messages": [{"role": "user", "content": "b?"}, {"role": "assistant", "content": "B."}]}]}
    paths = []
    for name in ("train", "validation"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows[name]))
        paths.append(path)
    return paths, rows


def test_a_kept_split_is_taken_again_for_the_same_spec(tmp_path):
    spec = _spec(tmp_path)
    (train, validation), rows = _files(tmp_path)
    layout = _layout(tmp_path)
    uri = kept_split.keep(layout, spec, train, validation, {"hash": "sha256:abc", "examples": 2})
    assert uri == f"{layout.prefix}/dataset"
    kept = kept_split.take(layout, spec)
    assert kept is not None
    assert kept.train == rows["train"] and kept.validation == rows["validation"]
    assert kept.report == b'{"passed": true}' and kept.summary == {"hash": "sha256:abc", "examples": 2}


def test_another_spec_or_a_cut_off_split_is_made_again(tmp_path):
    spec = _spec(tmp_path)
    (train, validation), _ = _files(tmp_path)
    layout = _layout(tmp_path)
    assert kept_split.take(layout, spec) is None  # nothing kept yet
    kept_split.keep(layout, spec, train, validation, {})
    assert kept_split.take(layout, _spec(tmp_path, seed=2)) is None  # another split seed
    assert kept_split.take(layout, _spec(tmp_path, validationSplit=0.3)) is None
    shorter = spec.model_copy(update={"training": spec.training.model_copy(update={"max_tokens": 512})})
    assert kept_split.take(layout, shorter) is None  # another longest example
    (tmp_path / "out/facts-bot/runs/r1/dataset/split.json").unlink()  # cut off before its marker
    assert kept_split.take(layout, spec) is None
    # The allowed licenses decide nothing about the split.
    licensed = spec.model_copy(update={"base_model": spec.base_model.model_copy(update={"allowed_licenses": ["mit"]})})
    kept_split.keep(layout, spec, train, validation, {})
    assert kept_split.take(layout, licensed) is not None
