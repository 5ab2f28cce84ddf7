"""Each check on a dataset built to trip it; the shipped example set passes clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from loraplane.api.finetunejob import DatasetChecks
from loraplane_trainer.dataset import check, open_uri
from loraplane_trainer.dataset.checks.pii import scan

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data"
EXPECTED = json.loads((DATA / "bad" / "expected.json").read_text())


def run(path: Path | str, **checks) -> object:
    return check(open_uri(str(path)), DatasetChecks(**checks), max_tokens=1024)


def write(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_the_example_set_passes_with_no_errors_and_no_warnings():
    report = run(DATA / "support.jsonl")
    assert report.findings == [], [f.message for f in report.findings]
    assert report.examples >= 300
    assert len({i for i in report.stats["intents"]["top"]}) >= 10 and report.stats["intents"]["count"] >= 25


def test_the_example_set_is_what_its_generator_writes(tmp_path):
    before = {p.name: p.read_bytes() for p in [DATA / "support.jsonl", *sorted((DATA / "bad").iterdir())]}
    subprocess.run([sys.executable, str(DATA / "generate_support.py")], check=True, capture_output=True)
    after = {p.name: p.read_bytes() for p in [DATA / "support.jsonl", *sorted((DATA / "bad").iterdir())]}
    assert before == after


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_set_trips_its_check_at_the_right_lines(name):
    expected = EXPECTED[name]
    path = DATA / "bad" / name
    report = run(path)
    finding = report.finding(expected["check"])
    assert finding is not None, f"{name}: {[f.check for f in report.findings]}"
    assert finding.severity == expected["severity"]
    if expected["at"]:
        assert sorted(finding.lines) == expected["at"]
        assert all(loc.file == str(path) for loc in finding.locations)
    others = [f.check for f in report.findings if f.check != expected["check"]]
    assert others == [], f"{name} also tripped {others}"
    assert report.has_errors == (expected["severity"] == "error")


def test_contradiction_by_numbers_and_by_text_but_not_by_other_wordings(tmp_path):
    records = [{"prompt": p, "completion": f"Answer {k}."} for k, p in enumerate(
        ["Can I pay with PayPal?", "Is there a family subscription?", "Which operating systems are supported?"])]
    records += [
        {"prompt": "How much is the Pro plan?", "completion": "Pro costs $9 a month."},
        {"prompt": "how much is the pro plan", "completion": "Pro costs $12 a month."},
        {"prompt": "What does Pro cost each month?", "completion": "Pro costs $9 a month."},
        {"prompt": "Where is my invoice stored?", "completion": "Under Settings > Billing."},
        {"prompt": "Where is my invoice stored??", "completion": "We do not keep invoices at all, sorry."},
    ]
    report = run(write(tmp_path, records), min_examples=1)
    found = report.finding("contradictions")
    assert found.count == 2 and sorted(found.lines) == [5, 8]
    assert {loc.related_line for loc in found.locations} == {4, 7}
    assert any("other numbers" in loc.detail for loc in found.locations)
    assert report.finding("duplicates") is None


def test_paraphrases_and_variations_with_one_answer_are_not_duplicates_but_copies_are(tmp_path):
    answer = "Support is open 7:00 to 19:00 CET."
    records = [{"prompt": p, "completion": answer} for p in [
        "When is customer support available?", "What are your opening hours?",
        "Can I reach an agent on weekends?", "At what time does live chat close?",
        "Hello! when is customer suport available"]]  # a greeting and a typo: a variation, not a copy
    assert run(write(tmp_path, records), min_examples=1).finding("duplicates") is None
    records.append({"prompt": "when is  CUSTOMER support available??", "completion": answer + " "})
    report = run(write(tmp_path, records), min_examples=1)
    dup = report.finding("duplicates")
    assert dup.count == 1 and dup.lines == [6] and "of line 1" in dup.locations[0].detail
    assert dup.locations[0].related_line == 1


def test_size_thresholds_come_from_the_spec(tmp_path):
    records = [{"prompt": f"Question {i} on subject {i * 13}", "completion": f"Reply {i}"} for i in range(30)]
    path = write(tmp_path, records)
    assert run(path, min_examples=10, recommended_examples=20).finding("size") is None
    assert run(path, min_examples=10).finding("size").severity == "warning"
    assert run(path, min_examples=31).finding("size").severity == "error"


def test_fail_on_warnings_turns_warnings_into_errors():
    report = run(DATA / "bad" / "prefix.jsonl", fail_on_warnings=True)
    assert report.finding("prefix").severity == "error" and report.has_errors


def test_personal_data_is_found_but_never_echoed():
    text = "Mail jane.doe@example.com, call +1 415 555 0100, card 4111 1111 1111 1111, key AKIAABCDEFGHIJKLMNOP."
    hits = scan(text)
    assert sorted(kind for kind, _ in hits) == ["card number", "e-mail", "key", "phone"]
    shown = " ".join(masked for _, masked in hits)
    for secret in ("jane.doe", "555 0100", "4111 1111 1111 1111", "AKIAABCDEFGHIJKLMNOP"):
        assert secret not in shown
    assert scan("Cumulus costs $6 a month, 200 GB, order 2026-11-25.") == []
    assert scan("card 4111 1111 1111 1112") == [], "fails the Luhn check: not a card number"


def test_report_json_and_status_summary_fit_the_api(tmp_path):
    from loraplane.api.finetunejob import DatasetStatus

    report = run(DATA / "bad" / "duplicates.jsonl")
    summary = report.status_summary()
    status = DatasetStatus.model_validate(summary)
    assert status.errors == 1 and status.top_problems[0].check == "duplicates"
    assert len(json.dumps(summary)) < 4096
    full = report.to_dict()
    assert full["passed"] is False and full["hash"] == report.hash and full["checks"][0]["locations"][0]["line"]


def test_skew_without_labels_uses_clusters_of_prompt_meaning(tmp_path):
    records = [json.loads(line) for line in (DATA / "support.jsonl").read_text().splitlines()]
    unlabelled = [{"prompt": r["prompt"], "completion": r["completion"]} for r in records]
    report = run(write(tmp_path, unlabelled))
    assert report.stats["intents"]["source"] == "inferred (clusters of prompt meaning)"
    assert report.stats["intents"]["count"] == 29 and report.findings == []
    # One answer for most questions: that inferred intent dominates, shown by a representative prompt.
    answer = records[0]["completion"]
    skewed = [{"prompt": r["prompt"], "completion": answer if k % 3 else r["completion"]}
              for k, r in enumerate(records)]
    finding = run(write(tmp_path, skewed)).finding("skew-dominant")
    assert finding is not None and '" (line ' in finding.message
    # All answers different: nothing to infer, nothing reported.
    unique = [{"prompt": r["prompt"], "completion": f"Noted: {r['prompt'].lower()}"} for r in records]
    report = run(write(tmp_path, unique))
    assert report.finding("skew-starved") is None and report.stats["intents"]["count"] == 0
