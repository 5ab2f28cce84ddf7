"""`loraplane eval` on a recorded session: results, exports, the gate's exit code, bad input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner
from loraplane.cli import cli
from loraplane.evaluation.session import Criterion, Rating, append_rating

from tests.unit.test_evaluation_page import BASELINE, CANDIDATE, make_session


def _rate_all(directory, session, pref_for):
    for rater in session.raters:
        for item in session.items:
            append_rating(directory, Rating(
                rater=rater.name, item=item.id, preference=pref_for(rater.name, item.id), at=datetime.now(UTC),
                scores={CANDIDATE: dict.fromkeys(Criterion, 4), BASELINE: dict.fromkeys(Criterion, 3)}))


def test_results_exports_and_the_gate(tmp_path):
    session = make_session(tmp_path / "s")
    _rate_all(tmp_path / "s", session, lambda r, i: BASELINE if (r, i) == ("cy", "item-4") else CANDIDATE)
    runner = CliRunner()
    out = runner.invoke(cli, ["eval", "results", "--session", str(tmp_path / "s"), "--json", str(tmp_path / "r.json"),
                              "--csv", str(tmp_path / "r.csv"), "--min-win-rate", "0.8"])
    assert out.exit_code == 0, out.output
    body = json.loads((tmp_path / "r.json").read_text())
    assert body["gate"] == {"minHumanWinRate": 0.8, "passed": True, "failed": []}
    assert body["results"]["win_rate"]["mean"] == 11 / 12
    assert "| relevance | 4.00 [4.00, 4.00] | 3.00 [3.00, 3.00] |" in out.output
    blocked = runner.invoke(cli, ["eval", "results", "--session", str(tmp_path / "s"), "--min-win-rate", "0.95"])
    assert blocked.exit_code == 1 and "below minHumanWinRate 0.95" in blocked.output
    prefs = runner.invoke(cli, ["eval", "preferences", "--session", str(tmp_path / "s"), "--out",
                                str(tmp_path / "p.jsonl")])
    assert prefs.exit_code == 0 and "4 preference pairs" in prefs.output
    row = json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])
    assert row["chosen"] == session.items[0].answers[CANDIDATE]


def test_bad_input_is_a_clear_error(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "prompts.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n')
    args = ["eval", "create", "--endpoint", "http://127.0.0.1:9/v1", "--candidate", "a", "--baseline", "b",
            "--raters", "x,y,z", "--out", str(tmp_path / "out")]
    out = runner.invoke(cli, [*args, "--prompts", str(bad)])
    assert out.exit_code != 0 and f"{bad}:2: needs a 'prompt' or a 'messages' field" in out.output
    both = runner.invoke(cli, [*args, "--prompts", str(bad), "--probes", "default"])
    assert both.exit_code != 0 and "exactly one of --prompts or --probes" in both.output
    unreachable = runner.invoke(cli, [*args, "--probes", "default", "--items", "1"])
    assert unreachable.exit_code != 0 and "http://127.0.0.1:9/v1: ConnectError" in unreachable.output
    missing = runner.invoke(cli, ["eval", "results", "--session", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "no session here" in missing.output


def test_attach_writes_the_results_into_the_adapters_model_card(tmp_path):
    from loraplane.evaluation.attached import read_attached
    from loraplane.storage import AdapterManifest, FileEntry, read_manifest, verify_files

    session = make_session(tmp_path / "s")
    _rate_all(tmp_path / "s", session, lambda r, i: CANDIDATE)
    adapter = tmp_path / "v3"
    adapter.mkdir()
    (adapter / "README.md").write_text("# v3\n")
    manifest = AdapterManifest(job="j", version="v3", verdict="accepted", base_model="smol",
                               created_at=datetime.now(UTC),
                               files=[FileEntry(path="README.md", sha256="0" * 64, size=5)])
    (adapter / "manifest.json").write_text(manifest.to_json())
    uri = f"file://{adapter}"
    for _ in range(2):  # attaching again replaces the section
        out = CliRunner().invoke(cli, ["eval", "results", "--session", str(tmp_path / "s"), "--attach", uri,
                                       "--min-win-rate", "0.6"])
        assert out.exit_code == 0, out.output
    card = (adapter / "README.md").read_text()
    assert card.startswith("# v3\n") and card.count("## Human evaluation") == 1 and "Human gate: passed" in card
    verify_files(uri, read_manifest(uri))  # the manifest lists the amended card
    assert read_attached(uri).win_rate == 1.0 and read_attached(uri).fewest_item_raters == 3
