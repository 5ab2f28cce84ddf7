"""The trainer's dataset stage runs in a child process: its findings and errors come back, its models stay there."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from loraplane.api.finetunejob import FineTuneJob
from loraplane_trainer.training.dataset_stage import prepare_dataset
from loraplane_trainer.training.errors import DatasetInvalid
from loraplane_trainer.training.model_source import ResolvedModel

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[2] / "examples" / "data"
EMBEDDINGS = "loraplane_trainer.dataset.meaning.embeddings"


def job(uri: str) -> FineTuneJob:
    return FineTuneJob.model_validate({
        "apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "t"},
        "spec": {"baseModel": {"name": "m"}, "dataset": {"uri": uri}, "output": {"uri": "file:///x"}}})


def test_the_checks_run_in_a_child_and_report_back(smollm2_dir, tmp_path):
    loaded_before = dict(getattr(sys.modules.get(EMBEDDINGS), "_SHARED", {}))
    prepared = prepare_dataset(job(str(DATA / "bad" / "duplicates.jsonl")), tmp_path, None,
                               ResolvedModel(smollm2_dir, "HuggingFaceTB/SmolLM2-135M-Instruct"))
    expected = json.loads((DATA / "bad" / "expected.json").read_text())["duplicates.jsonl"]
    finding = prepared.report.finding("duplicates")
    assert prepared.report.has_errors and finding.severity == "error"
    assert set(finding.lines) <= set(expected["at"]) and finding.lines
    assert Path(prepared.train_path).is_file() and Path(prepared.report_path).is_file()
    # The sentence model was loaded in the child only: this process holds no more models than before.
    assert dict(getattr(sys.modules.get(EMBEDDINGS), "_SHARED", {})) == loaded_before


def test_an_unreadable_source_fails_naming_the_field(smollm2_dir, tmp_path):
    with pytest.raises(DatasetInvalid, match=r"spec\.dataset: .*nowhere\.jsonl"):
        prepare_dataset(job(str(tmp_path / "nowhere.jsonl")), tmp_path, None,
                        ResolvedModel(smollm2_dir, "HuggingFaceTB/SmolLM2-135M-Instruct"))
