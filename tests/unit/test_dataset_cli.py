"""`python -m loraplane_trainer validate|split|augment` and the `loraplane` commands that run them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from loraplane_trainer.dataset.cli import augment_command, split_command, validate_command

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"


def test_validate_clean_and_bad_sets():
    runner = CliRunner()
    ok = runner.invoke(validate_command, [str(DATA / "support.jsonl")])
    assert ok.exit_code == 0 and "passed" in ok.output and "no problems found" in ok.output
    bad = runner.invoke(validate_command, [str(DATA / "bad" / "contradictions.jsonl"), "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    assert report["passed"] is False and report["checks"][0]["check"] == "contradictions"
    first = report["checks"][0]["locations"][0]
    added = json.loads((DATA / "bad" / "expected.json").read_text())["contradictions.jsonl"]["at"]
    assert first["file"] == str(DATA / "bad" / "contradictions.jsonl") and first["line"] in added
    assert first["relatedLine"] < min(added) and first["similarity"] > 0.8 and "other numbers" in first["detail"]
    assert report["paraphraseGroups"]["count"] >= 29


def test_validate_a_finetunejob_yaml_resolves_its_dataset(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "set.jsonl").write_bytes((DATA / "bad" / "too-small.jsonl").read_bytes())
    job = tmp_path / "job.yaml"
    job.write_text(
        "apiVersion: loraplane.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: t}\n"
        "spec:\n  baseModel: {name: m}\n  dataset:\n    uri: data/set.jsonl\n    checks: {minExamples: 10}\n"
        "  output: {uri: 'file:///x'}\n"
    )
    result = CliRunner().invoke(validate_command, [str(job), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["checks"][0]["check"] == "size" and report["checks"][0]["severity"] == "warning"
    assert report["train"] + report["validation"] == 30


def test_split_and_augment_write_the_trainer_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(split_command, [str(DATA / "support.jsonl"), "--out", str(tmp_path / "s"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "s").iterdir()} == {"train.jsonl", "validation.jsonl", "dataset-report.json"}
    result = runner.invoke(augment_command, [str(DATA / "support.jsonl"), "--out", str(tmp_path / "a"),
                                             "--variations", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report["augmented"]["byMethod"]["variation"] > 250
    train = (tmp_path / "a" / "train.jsonl").read_text().splitlines()
    assert len(train) == report["train"]


def test_loraplane_runs_the_trainer_as_a_process():
    cli = Path(sys.executable).parent / "loraplane"
    ok = subprocess.run([str(cli), "validate", str(DATA / "support.jsonl"), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["examples"] >= 300
    bad = subprocess.run([str(cli), "validate", str(DATA / "bad" / "malformed.jsonl")], capture_output=True, text=True)
    assert bad.returncode == 1 and "malformed" in bad.stdout
