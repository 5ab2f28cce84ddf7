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
