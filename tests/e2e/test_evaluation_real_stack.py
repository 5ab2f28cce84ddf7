"""`loraplane eval` end to end on the real serving path: the router in front of a real vLLM with two real
adapters answers the session, three raters rate it in a real Chromium, results, gate, judge and export."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from loraplane.evaluation.session import read_session
from loraplane.evaluation.traffic import read_samples
from loraplane.local.stack import LocalStack, ManagedProcess, free_port, wait_http
from loraplane.routing import RoutingTable

from tests.support.adapters import FACTS, PROBE, ensure_adapters
from tests.support.browser import chromium
from tests.support.raters import expected_results, intended, rate_in_browser
from tests.support.vllm_server import vllm_server  # noqa: F401  (session fixture)

MODEL = "support-bot"
CANDIDATE, BASELINE = "tuned-x7q9", "stable-m2z4"  # variant names no answer text contains


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "loraplane.cli", "eval", *args], capture_output=True, text=True,
                          timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def stack(smollm2_dir, vllm_server, tmp_path_factory):  # noqa: F811
    adapters = ensure_adapters(smollm2_dir)
    work = tmp_path_factory.mktemp("eval-stack")
    table = RoutingTable.model_validate({
        "model": MODEL, "baseModel": vllm_server.served_name,
        "variants": [{"name": BASELINE, "weight": 90, "adapterUri": str(adapters["stable"])},
                     {"name": CANDIDATE, "weight": 10, "adapterUri": str(adapters["canary"])}],
        # Every request is kept (consent declared), so the session's own requests are the traffic sampled.
        "sampling": {"rate": 1.0, "consent": "Declared"}})
    (work / "routing.yaml").write_text(table.to_yaml())
    s = LocalStack(routing_table=work / "routing.yaml", work_dir=work, vllm_url=vllm_server.url)
    s.start(timeout=300)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def session_dir(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval-session")
    prompts = tmp / "prompts.jsonl"
    questions = [q for q, _ in FACTS["canary"]] + [q for q, _ in FACTS["stable"][:2]]
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in questions))
    out = tmp / "session"
    cli("create", "--endpoint", stack.endpoint, "--model", MODEL, "--candidate", CANDIDATE, "--baseline", BASELINE,
        "--prompts", str(prompts), "--items", "6", "--raters", "ann,bo,cy", "--max-tokens", "24", "--out", str(out))
    return out


def test_the_answers_came_from_each_variant_through_the_router(session_dir):
    session = read_session(session_dir)
    assert len(session.items) == 6 and session.variants == (CANDIDATE, BASELINE)
    question, word = PROBE["canary"]
    item = next(i for i in session.items if i.prompt == question)
    assert word in item.answers[CANDIDATE], item.answers
    assert word not in item.answers[BASELINE], item.answers
    for i in session.items:
        assert CANDIDATE not in json.dumps(i.answers[CANDIDATE]) + i.answers[BASELINE]


def test_sampled_traffic_exports_with_feedback_and_becomes_preference_pairs(stack, session_dir, tmp_path):
    session = read_session(session_dir)
    samples = tmp_path / "samples.jsonl"
    export = ("samples", "--endpoint", stack.router_admin_url, "--chatbot", MODEL,
              "--key-file", str(stack.signing_key_file()), "--out", str(samples))
    cli(*export)
    kept = {(s.variant, s.messages[-1]["content"]): s for s in read_samples(samples)}
    for item in session.items:  # every answer the session holds, as the router relayed it from vLLM
        for v in session.variants:
            assert kept[(v, item.prompt)].answer.strip() == item.answers[v]
    question, _ = PROBE["canary"]
    for variant, score in ((CANDIDATE, "up"), (BASELINE, "down")):
        r = httpx.post(f"{stack.router_url}/v1/feedback", json={"requestId": kept[(variant, question)].request_id,
                                                                 "score": score})
        assert r.status_code == 200, r.text
    cli(*export)
    prefs = tmp_path / "prefs.jsonl"
    cli("preferences", "--samples", str(samples), "--out", str(prefs))
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    item = next(i for i in session.items if i.prompt == question)
    assert [(r["prompt"], r["chosen"].strip(), r["rejected"].strip(), r["chosenVariant"]) for r in rows] == [
        (question, item.answers[CANDIDATE], item.answers[BASELINE], CANDIDATE)]


def test_three_raters_rate_real_answers_and_the_results_match(session_dir, tmp_path, vllm_server):  # noqa: F811
    session = read_session(session_dir)
    port = free_port()
    page = ManagedProcess("eval-serve", [sys.executable, "-m", "loraplane.cli", "eval", "serve", "--session",
                                         str(session_dir), "--port", str(port)], tmp_path / "serve.log").start()
    url = f"http://127.0.0.1:{port}"
    plan = intended(session)
    seen: list[str] = []
    try:
        wait_http(f"{url}/healthz", page, 60, "loraplane eval serve")
        with chromium() as driver:
            for n, rater in enumerate(session.raters):
                rate_in_browser(driver, url, session, rater.name, plan, keyboard=n != 2, seen=seen)
    finally:
        page.stop()
    for text in seen:
        assert CANDIDATE not in text and BASELINE not in text

    want = expected_results(session, plan)
    out_json, out_csv, card = tmp_path / "results.json", tmp_path / "ratings.csv", tmp_path / "card.md"
    proc = cli("results", "--session", str(session_dir), "--json", str(out_json), "--csv", str(out_csv),
               "--card", str(card), "--min-win-rate", "0.5")
    res = json.loads(out_json.read_text())
    assert res["gate"]["passed"] is True
    r = res["results"]
    assert (r["wins"], r["losses"], r["ties"]) == (want["wins"], want["losses"], want["ties"])
    assert r["win_rate"]["mean"] == pytest.approx(want["winRate"])
    assert r["preference_kappa"] == pytest.approx(want["kappa"])
    assert {c["criterion"]: c["alpha"] for c in r["criteria"]} == pytest.approx(want["alpha"])
    assert len(out_csv.read_text().splitlines()) == 1 + 3 * 6
    assert "## Human evaluation" in card.read_text() and "Krippendorff" in proc.stdout

    blocked = cli("results", "--session", str(session_dir), "--min-win-rate", "0.99", check=False)
    assert blocked.returncode == 1 and "below minHumanWinRate" in blocked.stdout

    # The real vLLM as the judge: a 135M model is a poor judge, so only the plumbing and the report are checked.
    judged = cli("judge", "--session", str(session_dir), "--endpoint", f"{vllm_server.url}/v1", "--model",
                 vllm_server.served_name)
    judge = json.loads((session_dir / "judge.json").read_text())
    assert len(judge["items"]) == 6 and "Agreement with the raters" in judged.stdout

    prefs = tmp_path / "prefs.jsonl"
    cli("preferences", "--session", str(session_dir), "--out", str(prefs))
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    assert rows and all(set(row) >= {"prompt", "chosen", "rejected"} for row in rows)
    by_prompt = {i.prompt: i for i in session.items}
    for row in rows:
        assert {row["chosen"], row["rejected"]} == set(by_prompt[row["prompt"]].answers.values())
