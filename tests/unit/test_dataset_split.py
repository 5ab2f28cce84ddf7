"""The split: deterministic, stratified by intent, near copies on one side; leakage of a given
validation file is measured; augmentation stays on the train side and away from validation."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from loraplane.api import FineTuneJobSpec
from loraplane.api.finetunejob import DatasetStatus
from loraplane_trainer.dataset import prepare
from loraplane_trainer.dataset.augment.variations import variations
from loraplane_trainer.dataset.example import Example
from loraplane_trainer.dataset.text import jaccard, normalise_prompt

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "examples" / "data" / "support.jsonl"


def spec(uri: str, **dataset) -> FineTuneJobSpec:
    augmentation = dataset.pop("augmentation", None)
    body = {"baseModel": {"name": "m"}, "dataset": {"uri": uri, **dataset}, "output": {"uri": "file:///x"}}
    if augmentation:
        body["augmentation"] = augmentation
    return FineTuneJobSpec.model_validate(body)


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def prompts(path: Path) -> list[str]:
    return [r["messages"][-2]["content"] for r in read(path)]


def test_split_is_deterministic_and_stratified(tmp_path):
    a = prepare(spec(str(SUPPORT)), tmp_path / "a")
    b = prepare(spec(str(SUPPORT)), tmp_path / "b")
    assert a.train_path.read_bytes() == b.train_path.read_bytes()
    assert a.validation_path.read_bytes() == b.validation_path.read_bytes()
    c = prepare(spec(str(SUPPORT), seed=7), tmp_path / "c")
    assert set(prompts(c.validation_path)) != set(prompts(a.validation_path))
    total = Counter(r["intent"] for r in read(a.train_path) + read(a.validation_path))
    val = Counter(r["intent"] for r in read(a.validation_path))
    assert set(val) == set(total), "every intent is represented in validation"
    for intent, n in total.items():
        assert val[intent] == round(n * 0.15)
    assert not a.report.has_errors and a.report.train + a.report.validation == a.report.examples


def test_split_does_not_depend_on_file_order(tmp_path):
    lines = SUPPORT.read_text().splitlines()
    random.Random(3).shuffle(lines)
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(lines) + "\n")
    a = prepare(spec(str(SUPPORT)), tmp_path / "a")
    b = prepare(spec(str(shuffled)), tmp_path / "b")
    assert set(prompts(a.validation_path)) == set(prompts(b.validation_path))


def near_copy(prompt: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0:
        return prompt.lower().rstrip("?")
    if kind == 1:
        return "Hi there, " + prompt[0].lower() + prompt[1:]
    if kind == 2:
        return prompt.upper()
    return prompt.replace("?", "??") + " Thanks!"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_near_copies_always_land_on_one_side(tmp_path, seed):
    rng = random.Random(seed)
    records = [json.loads(line) for line in SUPPORT.read_text().splitlines()]
    pairs = rng.sample(records, 60)
    extra = [{**r, "prompt": near_copy(r["prompt"], rng)} for r in pairs]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records + extra))
    prepared = prepare(spec(str(path), seed=seed, checks={"maxDuplicateFraction": 0.5}), tmp_path / "out")
    train, val = set(prompts(prepared.train_path)), set(prompts(prepared.validation_path))
    for original, copy in zip(pairs, extra, strict=True):
        assert (original["prompt"] in val) == (copy["prompt"] in val), (original["prompt"], copy["prompt"])
        assert (original["prompt"] in train) == (copy["prompt"] in train)
    assert val, "the split still holds something out"


def test_validation_file_leakage_is_measured(tmp_path):
    records = [json.loads(line) for line in SUPPORT.read_text().splitlines()]
    val = records[:40]
    leaked = [{**r, "prompt": r["prompt"].lower()} for r in records[40:45]]
    (tmp_path / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val[5:] + leaked))
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[40:]))
    prepared = prepare(spec("train.jsonl", validationUri="val.jsonl"), tmp_path / "out", base_dir=tmp_path)
    finding = prepared.report.finding("leakage")
    assert finding.count == 5 and sorted(finding.lines) == [36, 37, 38, 39, 40]
    assert all(loc.file == "val.jsonl" for loc in finding.locations)
    assert prepared.report.validation == 40 and prepared.report.split["leaked"] == 5


def test_variations_are_seeded_and_leave_answers_alone():
    ex = Example([{"role": "user", "content": "How do I reset my password?"},
                  {"role": "assistant", "content": "Click 'Forgot password'."}], "reset", file="f", line=3)
    a, b = variations(ex, 5, seed=1), variations(ex, 5, seed=1)
    assert [v.prompt for v in a] == [v.prompt for v in b]
    assert [v.prompt for v in a] != [v.prompt for v in variations(ex, 5, seed=2)]
    assert len({v.prompt for v in a}) == 5 and ex.prompt not in {v.prompt for v in a}
    assert all(v.completion == ex.completion and v.source == "variation" and v.origin == "f:3" for v in a)
    assert sum(jaccard(normalise_prompt(v.prompt), normalise_prompt(ex.prompt)) > 0.5 for v in a) >= 4


def test_augmentation_is_train_side_and_never_near_validation(tmp_path):
    prepared = prepare(spec(str(SUPPORT), augmentation={"promptVariations": {"perExample": 2}}), tmp_path)
    train, val = read(prepared.train_path), read(prepared.validation_path)
    assert all(r["source"] == "original" for r in val)
    added = [r for r in train if r["source"] == "variation"]
    assert len(added) == prepared.report.augmented["variation"] > 300
    val_norm = [normalise_prompt(r["messages"][-2]["content"]) for r in val]
    for r in added:
        p = normalise_prompt(r["messages"][-2]["content"])
        assert max(jaccard(p, v) for v in val_norm) < 0.7
    status = DatasetStatus.model_validate(prepared.report.status_summary())
    assert status.augmented == len(added) and status.validation == len(val)
    on_disk = json.loads(prepared.report_path.read_text())
    assert on_disk["augmented"]["byMethod"] == {"variation": len(added)}


def test_bad_data_does_not_raise_and_is_reported(tmp_path):
    prepared = prepare(spec(str(ROOT / "examples" / "data" / "bad" / "malformed.jsonl")), tmp_path)
    assert prepared.report.has_errors and prepared.report.finding("malformed").lines == [5, 12, 20, 33]
    assert json.loads(prepared.report_path.read_text())["passed"] is False


@pytest.mark.parametrize("content", ["", '{"prompt": "q", "completion": "a"}\n', "not json\n"])
def test_empty_and_tiny_sets_are_reported_not_crashed(tmp_path, content):
    (tmp_path / "d.jsonl").write_text(content)
    prepared = prepare(spec("d.jsonl", augmentation={"promptVariations": {"perExample": 2}}), tmp_path / "out",
                       base_dir=tmp_path)
    assert prepared.report.finding("size").severity == "error"
    assert prepared.report.validation == 0 and prepared.train_path.exists()
