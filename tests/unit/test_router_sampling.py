"""Opt-in traffic sampling in the router: consent, rate, bounds, tenancy of the export, feedback joined,
and the CLI's export, prompt drawing and preference pairs built from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aiohttp import web
from click.testing import CliRunner
from loraplane.api import ChatbotDeployment
from loraplane.builders.routing_table import build_routing_table
from loraplane.cli import cli as cli_main
from loraplane.evaluation.prompts import read_prompt_file
from loraplane.evaluation.traffic import TrafficSample, feedback_pairs, read_samples, samples_token
from loraplane.routing import RoutingTable, SamplingSettings
from loraplane_server.router.sampling import Sampling

from tests.unit import test_router_proxy as proxy
from tests.unit.test_router_proxy import CHAT, TABLE, completion

harness = proxy.harness  # the router-with-stub-upstreams fixture, shared

CONSENT = {"x-loraplane-sample-consent": "yes"}
SAMPLED = {**TABLE, "sampling": {"rate": 1.0, "consent": "Header", "maxSamples": 3}}


def ask(text: str) -> dict:
    return {**CHAT, "messages": [{"role": "user", "content": text}]}


async def streamed(request: web.Request, body: dict) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    for part in ("Hel", "lo there"):
        chunk = {"choices": [{"index": 0, "delta": {"content": part}}], "model": body["model"]}
        await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await out.write(b"data: [DONE]\n\n")
    return out


async def export(http, url: str, router, model: str = "bot", token: str | None = "own"):
    token = samples_token(router.request_ids.key, model) if token == "own" else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{url}/v1/samples", params={"model": model}, headers=headers) as r:
        return r.status, await r.json(), r.headers


async def test_only_consenting_requests_are_kept_whole_or_streamed_and_feedback_is_joined(harness):
    _, up = await harness.stub()
    url, router = await harness([up], table=SAMPLED)
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=ask("no consent")) as r:
        assert r.status == 200
    async with http.post(f"{url}/v1/chat/completions", json=ask("where is my order?"), headers=CONSENT) as r:
        rid = r.headers["x-request-id"]
    status, body, headers = await export(http, url, router)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert [s["messages"][-1]["content"] for s in body["samples"]] == ["where is my order?"]
    assert body["samples"][0]["answer"] == "hello" and body["samples"][0]["requestId"] == rid
    async with http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": "up"}) as r:
        assert r.status == 200
    _, body, _ = await export(http, url, router)
    assert body["samples"][0]["feedback"] == 1.0 and body["feedback"] == [{"requestId": rid, "score": 1.0}]

    stream_stub, stream_up = await harness.stub(streamed)
    url, router = await harness([stream_up], table=SAMPLED)
    async with http.post(f"{url}/v1/chat/completions", json={**ask("stream it"), "stream": True},
                         headers=CONSENT) as r:
        assert r.status == 200 and b"lo there" in await r.read()
    _, body, _ = await export(http, url, router)
    assert [s["answer"] for s in body["samples"]] == ["Hello there"]


async def test_the_export_is_for_its_own_chatbots_token_only(harness):
    _, up = await harness.stub()
    url, router = await harness([up], table=SAMPLED)
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=ask("secret of bot"), headers=CONSENT):
        pass
    assert (await export(http, url, router, token=None))[0] == 401
    # Another chatbot's token (same router key) reads neither this chatbot's samples nor, by its own name, any.
    other = samples_token(router.request_ids.key, "other-bot")
    status, body, _ = await export(http, url, router, model="bot", token=other)
    assert status == 403 and "secret" not in json.dumps(body)
    status, body, _ = await export(http, url, router, model="other-bot")
    assert status == 404 and "secret" not in json.dumps(body)
    assert (await export(http, url, router, token=samples_token(b"another key", "bot")))[0] == 403


async def test_off_by_default_and_turning_it_off_drops_what_was_kept(harness, tmp_path):
    _, up = await harness.stub()
    url, router = await harness([up], table={**TABLE, "sampling": {"rate": 1.0, "consent": "Declared"}})
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=ask("kept without a header")):
        pass
    assert len((await export(http, url, router))[1]["samples"]) == 1
    (tmp_path / "routing.yaml").write_text(json.dumps(TABLE))  # no sampling block: off
    assert router.watcher.check() is True
    async with http.post(f"{url}/v1/chat/completions", json=ask("not kept"), headers=CONSENT):
        pass
    assert router.sampling._samples == {}
    assert (await export(http, url, router))[0] == 404
    spec = ChatbotDeployment.model_validate({"metadata": {"name": "bot"}, "spec": {"baseModel": {"name": "m"}}}).spec
    assert build_routing_table("bot", spec, [], {"base": 100}).sampling is None
    on = spec.model_copy(update={"sampling": spec.sampling.model_copy(update={"enabled": True, "retention": "1h"})})
    assert build_routing_table("bot", on, [], {"base": 100}).sampling == SamplingSettings(
        rate=0.05, consent="Header", max_samples=1000, retention_seconds=3600)


class _Request:
    def __init__(self, headers):
        self.headers = headers


def test_rate_count_and_retention_bound_the_store():
    now = [1_000_000.0]
    table = RoutingTable.model_validate({**TABLE, "sampling": {"rate": 0.5, "consent": "Declared", "maxSamples": 3,
                                                               "retentionSeconds": 60}})
    import random
    store = Sampling(b"k", lambda: table, random.Random(7), clock=lambda: now[0])
    kept = 0
    for n in range(200):
        pending = store.begin(_Request({}), table, ask(f"q{n}"), f"id-{n}", "stable")
        if pending is not None:
            pending.whole(json.dumps(completion("stable", f"a{n}")).encode())
            store.finish(pending, "200")
            kept += 1
    assert 70 < kept < 130  # rate 0.5
    assert len(store._samples["bot"]) == 3  # maxSamples
    long = store.begin(_Request({}), table.model_copy(update={"sampling": SamplingSettings(rate=1)}),
                       ask("x" * 40_000), "id-long", "stable")
    assert long is None  # too long to keep
    now[0] += 61
    assert len(store._expire("bot", table.sampling)) == 0  # retention


def test_cli_exports_merges_replicas_draws_prompts_and_builds_preference_pairs(tmp_path, monkeypatch):
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def sample(rid, variant, answer, question="How do I reset my password?", feedback=None, **kw):
        return TrafficSample(request_id=rid, model="bot", variant=variant, at=at, answer=answer, feedback=feedback,
                             messages=[{"role": "user", "content": question}], **kw)

    replicas = {"http://r1:8000": ([sample("a", "stable", "Call us.")], {"b": 1.0}),
                "http://r2:8000": ([sample("b", "canary", "Open Settings, then Reset.")], {"a": 0.0})}
    seen_tokens = []

    def fake_fetch(endpoint, model, token):
        seen_tokens.append(token)
        return replicas[endpoint]

    monkeypatch.setattr("loraplane.cli.evaluate.fetch_samples", fake_fetch)
    (tmp_path / "key").write_bytes(b"router-key\n")
    out = tmp_path / "samples.jsonl"
    res = CliRunner().invoke(cli_main, ["eval", "samples", "--endpoint", "http://r1:8000", "--endpoint",
                                        "http://r2:8000", "--model", "bot", "--key-file", str(tmp_path / "key"),
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert seen_tokens == [samples_token(b"router-key", "bot")] * 2
    # Feedback each replica took for the other's answer is joined.
    assert {s.request_id: s.feedback for s in read_samples(out)} == {"a": 0.0, "b": 1.0}
    assert read_prompt_file(out)[0] == ("How do I reset my password?", "Call us.")  # eval create --prompts
    prefs = tmp_path / "prefs.jsonl"
    res = CliRunner().invoke(cli_main, ["eval", "preferences", "--samples", str(out), "--out", str(prefs)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    assert rows == [{"prompt": "How do I reset my password?", "chosen": "Open Settings, then Reset.",
                     "rejected": "Call us.", "source": "feedback", "model": "bot", "chosenVariant": "canary",
                     "rejectedVariant": "stable", "chosenScore": 1.0, "rejectedScore": 0.0}]
    # One answer alone, equal scores and multi-turn exchanges make no pair.
    multi = sample("m1", "stable", "x", feedback=1.0)
    multi.messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
                      {"role": "user", "content": "How do I reset my password?"}]
    assert feedback_pairs([sample("c", "stable", "x", feedback=1.0), sample("d", "canary", "y", feedback=1.0),
                           multi, sample("e", "stable", "z", question="other", feedback=0.0)]) == []
