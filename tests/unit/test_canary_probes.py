"""Probe-set exact match through a router endpoint, and its place in the analysis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from loraplane.api.chatbotdeployment import CanaryAnalysis
from loraplane.canary import Decision, ProbedSource, RouterMetricsSource, judge, load_probes, parse_probes

from tests.support.canary_metrics import router_metrics_server

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PROBES = "\n".join([
    '{"prompt": "capital of France?", "completion": "Paris"}',
    '{"prompt": "2+2?", "completion": "4"}',
    '{"messages": [{"role": "system", "content": "terse"}, {"role": "user", "content": "colour of sky?"},'
    ' {"role": "assistant", "content": "blue"}]}',
    '{"prompt": "largest planet?", "completion": "Jupiter"}',
])
ANSWERS = {"capital of France?": "Paris", "2+2?": "4", "colour of sky?": "blue", "largest planet?": "Jupiter"}


def chat_app(calls: list[dict]) -> web.Application:
    """Answers like a router pinned to a variant: v1 knows every answer, v2 only half of them."""

    async def completions(request: web.Request) -> web.Response:
        body = await request.json()
        calls.append({**body, "authorization": request.headers.get("Authorization")})
        question = body["messages"][-1]["content"]
        answer = ANSWERS[question]
        if body["model"].removeprefix("bot:") == "v2" and question in ("2+2?", "largest planet?"):
            answer = "I am not sure."
        return web.json_response({"choices": [{"index": 0, "message": {"role": "assistant", "content": f" {answer}\n"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    return app


def test_parse_probes_names_the_bad_line():
    probes = parse_probes(PROBES)
    assert len(probes) == 4 and probes[2].messages[0] == ("system", "terse") and probes[2].completion == "blue"
    with pytest.raises(ValueError, match="probes.jsonl:2: a probe needs"):
        parse_probes('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', "probes.jsonl")
    with pytest.raises(ValueError, match=":1: not JSON"):
        parse_probes("{nope", "x")


async def test_probes_through_the_router_feed_the_analysis(tmp_path):
    (tmp_path / "probes.jsonl").write_text(PROBES)
    probes = load_probes(f"file://{tmp_path}/probes.jsonl")
    calls: list[dict] = []
    cache: dict = {}
    with router_metrics_server("bot") as m:
        m.serve("v1", 100)
        m.serve("v2", 100)
        async with TestServer(chat_app(calls)) as server:
            source = ProbedSource(RouterMetricsSource(m.url), str(server.make_url("")), probes, cache=cache)
            figs = await source.figures("bot", ["v1", "v2"], T0, T0 + timedelta(minutes=1), None)
            assert figs["v1"].probe_exact_match == 1.0 and figs["v2"].probe_exact_match == 0.5
            assert {c["model"] for c in calls} == {"v1", "v2"} and all(c["temperature"] == 0 for c in calls)
            # The same window is probed once, however many ticks judge it.
            again = ProbedSource(RouterMetricsSource(m.url), str(server.make_url("")), probes, cache=cache)
            await again.figures("bot", ["v1", "v2"], T0, T0 + timedelta(minutes=2), None)
            assert len(calls) == 8
    verdict = judge(CanaryAnalysis(min_probe_exact_match=0.75), figs["v1"], figs["v2"], min_requests=10)
    assert verdict.decision is Decision.FAIL and "probeExactMatch 0.5 below by 0.25" in verdict.reason


@pytest.mark.parametrize("line", ['{"messages":[1]}', '{"messages":[{"role":"assistant"}]}', '{"messages":"x"}'])
def test_malformed_probe_lines_are_value_errors_naming_the_line(line):
    from loraplane.canary.probes import parse_probes

    with pytest.raises(ValueError, match="probes.jsonl:2: a probe needs"):
        parse_probes('{"prompt": "a", "completion": "b"}\n' + line, "probes.jsonl")


async def test_probes_pin_their_own_chatbot_and_carry_its_key(tmp_path):
    """On a shared pool a bare variant pins nothing: the probe names `<served>:<variant>` and sends the key."""
    probes = parse_probes(PROBES)
    calls: list[dict] = []
    with router_metrics_server("bot") as m:
        m.serve("v2", 100)
        async with TestServer(chat_app(calls)) as server:
            source = ProbedSource(RouterMetricsSource(m.url), str(server.make_url("")), probes, cache={},
                                  served_name="bot", api_key="k-123")
            figs = await source.figures("bot", ["v2"], T0, T0 + timedelta(minutes=1), None)
    assert figs["v2"].probe_exact_match == 0.5
    assert {c["model"] for c in calls} == {"bot:v2"} and {c["authorization"] for c in calls} == {"Bearer k-123"}
