"""Opt-in traffic sampling in the router: consent, rate, bounds, tenancy of the export, feedback joined,
and the CLI's export, prompt drawing and preference pairs built from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from click.testing import CliRunner
from loraplane.api import ChatbotDeployment
from loraplane.builders.routing_table import build_routing_table
from loraplane.cli import cli as cli_main
from loraplane.evaluation.prompts import read_prompt_file
from loraplane.evaluation.traffic import TrafficSample, feedback_pairs, read_samples, samples_token
from loraplane.pool_routing import PoolRouting, pool_files
from loraplane.routing import RoutingTable, SamplingSettings
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.router.sampling import Sampling
from loraplane_server.table_watch import TableWatcher

from tests.support.stub_upstream import Stub, serve
from tests.unit.test_router_proxy import CHAT, TABLE, completion

CONSENT = {"x-loraplane-sample-consent": "yes"}
SAMPLED = {**TABLE, "sampling": {"rate": 1.0, "consent": "Header", "maxSamples": 3}}
# Two namespaces' chatbots both named `bot` on one shared pool, both sampled, plus one that is not.
TEAM_A = RoutingTable.model_validate({**SAMPLED, "model": "bot-a", "namespace": "team-a", "chatbot": "bot"})
TEAM_B = RoutingTable.model_validate({**SAMPLED, "model": "bot-b", "namespace": "team-b", "chatbot": "bot"})
UNSAMPLED = RoutingTable.model_validate({**TABLE, "model": "quiet", "namespace": "team-c", "chatbot": "quiet"})


def ask(text: str, model: str = "bot") -> dict:
    return {**CHAT, "model": model, "messages": [{"role": "user", "content": text}]}


async def streamed(request: web.Request, body: dict) -> web.StreamResponse:
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await out.prepare(request)
    for part in ("Hel", "lo there"):
        chunk = {"choices": [{"index": 0, "delta": {"content": part}}], "model": body["model"]}
        await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
    await out.write(b"data: [DONE]\n\n")
    return out


@pytest.fixture
async def pool(tmp_path):
    """Start a stub upstream and a router over a tables directory; yields a function
    (tables, handler=None) -> (url, admin url, router, tables directory), and an HTTP client."""
    runners: list[web.AppRunner] = []

    async def start(tables: list[RoutingTable], handler=None):
        directory = tmp_path / f"routing-{len(runners)}"
        directory.mkdir()
        for name, text in pool_files(tables).items():
            (directory / name).write_text(text)
        up_runner, up = await serve(Stub(handler).app())
        watcher = TableWatcher(directory)
        watcher.check()
        router = Router(watcher, UpstreamPool([up]), RouterMetrics())
        watcher._on_change = router.on_table
        runner, url = await serve(router.app())
        admin_runner, admin = await serve(router.admin_app())
        runners.extend([up_runner, runner, admin_runner])
        return url, admin, router, directory

    async with aiohttp.ClientSession() as http:
        start.http = http
        yield start
    for r in reversed(runners):
        await r.cleanup()


async def export(http, admin: str, router, chatbot: str = "default.bot", token: str | None = "own"):
    token = samples_token(router.request_ids.key, chatbot) if token == "own" else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(f"{admin}/v1/samples", params={"chatbot": chatbot}, headers=headers) as r:
        return r.status, await r.json(), r.headers


async def test_only_consenting_requests_are_kept_whole_or_streamed_and_feedback_is_joined(pool):
    http = pool.http
    url, admin, router, _ = await pool([RoutingTable.model_validate(SAMPLED)])
    async with http.post(f"{url}/v1/chat/completions", json=ask("no consent")) as r:
        assert r.status == 200
    async with http.post(f"{url}/v1/chat/completions", json=ask("where is my order?"), headers=CONSENT) as r:
        rid = r.headers["x-request-id"]
    status, body, headers = await export(http, admin, router)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert [s["messages"][-1]["content"] for s in body["samples"]] == ["where is my order?"]
    assert body["samples"][0]["answer"] == "hello" and body["samples"][0]["requestId"] == rid
    assert body["samples"][0]["chatbot"] == "default.bot" and body["samples"][0]["model"] == "bot"
    async with http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": "up"}) as r:
        assert r.status == 200
    _, body, _ = await export(http, admin, router)
    assert body["samples"][0]["feedback"] == 1.0 and body["feedback"] == [{"requestId": rid, "score": 1.0}]
    # The export is on the admin port only, like /metrics: users' port does not serve it.
    token = samples_token(router.request_ids.key, "default.bot")
    async with http.get(f"{url}/v1/samples", params={"chatbot": "default.bot"},
                        headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status in (404, 405)

    url, admin, router, _ = await pool([RoutingTable.model_validate(SAMPLED)], streamed)
    async with http.post(f"{url}/v1/chat/completions", json={**ask("stream it"), "stream": True},
                         headers=CONSENT) as r:
        assert r.status == 200 and b"lo there" in await r.read()
    _, body, _ = await export(http, admin, router)
    assert [s["answer"] for s in body["samples"]] == ["Hello there"]


async def test_on_a_shared_pool_each_chatbots_samples_go_only_to_its_own_token(pool):
    http = pool.http
    url, admin, router, _ = await pool([TEAM_A, TEAM_B, UNSAMPLED])
    ids = {}
    for model in ("bot-a", "bot-b", "quiet"):
        async with http.post(f"{url}/v1/chat/completions", json=ask(f"secret of {model}", model),
                             headers=CONSENT) as r:
            assert r.status == 200
            ids[model] = r.headers["x-request-id"]
    for model in ("bot-a", "bot-b"):
        async with http.post(f"{url}/v1/feedback", json={"requestId": ids[model], "score": "down"}) as r:
            assert r.status == 200
    a = await export(http, admin, router, "team-a.bot")
    b = await export(http, admin, router, "team-b.bot")
    assert a[0] == b[0] == 200
    assert [s["messages"][-1]["content"] for s in a[1]["samples"]] == ["secret of bot-a"]
    assert [s["messages"][-1]["content"] for s in b[1]["samples"]] == ["secret of bot-b"]
    assert a[1]["feedback"] == [{"requestId": ids["bot-a"], "score": 0.0}]
    assert b[1]["feedback"] == [{"requestId": ids["bot-b"], "score": 0.0}]
    assert (await export(http, admin, router, "team-a.bot", token=None))[0] == 401
    # Team B's token, a token for the bare chatbot name or the served name, one made with another
    # key: none reads team A's samples, and the refusal says nothing of them.
    for token in (samples_token(router.request_ids.key, "team-b.bot"), samples_token(router.request_ids.key, "bot"),
                  samples_token(router.request_ids.key, "bot-a"), samples_token(b"another key", "team-a.bot")):
        status, body, _ = await export(http, admin, router, "team-a.bot", token=token)
        assert status == 403 and "secret" not in json.dumps(body)
    # Without a chatbot a shared pool has no default: refused.
    assert (await export(http, admin, router, "", token=samples_token(router.request_ids.key, "")))[0] == 403
    # A chatbot that does not sample: its own token gets a 404, and nothing of it was kept.
    assert (await export(http, admin, router, "team-c.quiet"))[0] == 404
    assert set(router.sampling._samples) == {"team-a.bot", "team-b.bot"}


async def test_off_by_default_and_turning_it_off_or_leaving_the_pool_drops_what_was_kept(pool):
    http = pool.http
    declared = TEAM_A.model_copy(update={"sampling": SamplingSettings(rate=1.0, consent="Declared")})
    url, admin, router, tables = await pool([declared, TEAM_B])
    for model in ("bot-a", "bot-b"):
        async with http.post(f"{url}/v1/chat/completions", json=ask("kept", model), headers=CONSENT):
            pass
    assert len((await export(http, admin, router, "team-a.bot"))[1]["samples"]) == 1
    # Team A turns sampling off: its samples go at the reload, before any request; team B's stay.
    (tables / "team-a.bot.yaml").write_text(TEAM_A.model_copy(update={"sampling": None}).to_yaml())
    assert router.watcher.check() is True
    assert set(router.sampling._samples) == {"team-b.bot"}
    assert (await export(http, admin, router, "team-a.bot"))[0] == 404
    async with http.post(f"{url}/v1/chat/completions", json=ask("not kept", "bot-a"), headers=CONSENT):
        pass
    assert set(router.sampling._samples) == {"team-b.bot"}
    # Team B leaves the pool: its samples go too.
    (tables / "team-b.bot.yaml").unlink()
    assert router.watcher.check() is True
    assert router.sampling._samples == {}
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
    store = Sampling(b"k", lambda: PoolRouting({"default.bot.yaml": table}), random.Random(7), clock=lambda: now[0])
    kept = 0
    for n in range(200):
        pending = store.begin(_Request({}), table, ask(f"q{n}"), f"id-{n}", "stable")
        if pending is not None:
            pending.whole(json.dumps(completion("stable", f"a{n}")).encode())
            store.finish(pending, "200")
            kept += 1
    assert 70 < kept < 130  # rate 0.5
    assert len(store._samples["default.bot"]) == 3  # maxSamples
    long = store.begin(_Request({}), table.model_copy(update={"sampling": SamplingSettings(rate=1)}),
                       ask("x" * 40_000), "id-long", "stable")
    assert long is None  # too long to keep
    now[0] += 61
    assert len(store._expire("default.bot", table.sampling)) == 0  # retention


def test_cli_exports_merges_replicas_draws_prompts_and_builds_preference_pairs(tmp_path, monkeypatch):
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def sample(rid, variant, answer, question="How do I reset my password?", feedback=None, **kw):
        return TrafficSample(request_id=rid, model="bot", variant=variant, at=at, answer=answer, feedback=feedback,
                             messages=[{"role": "user", "content": question}], **kw)

    replicas = {"http://r1:8000": ([sample("a", "stable", "Call us.")], {"b": 1.0}),
                "http://r2:8000": ([sample("b", "canary", "Open Settings, then Reset.")], {"a": 0.0})}
    seen_tokens = []

    def fake_fetch(endpoint, chatbot, token):
        assert chatbot == "team-a.bot"
        seen_tokens.append(token)
        return replicas[endpoint]

    monkeypatch.setattr("loraplane.cli.evaluate.fetch_samples", fake_fetch)
    (tmp_path / "key").write_bytes(b"router-key\n")
    out = tmp_path / "samples.jsonl"
    res = CliRunner().invoke(cli_main, ["eval", "samples", "--endpoint", "http://r1:8000", "--endpoint",
                                        "http://r2:8000", "--chatbot", "bot", "--namespace", "team-a",
                                        "--key-file", str(tmp_path / "key"),
                                        "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert seen_tokens == [samples_token(b"router-key", "team-a.bot")] * 2
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


async def test_eval_create_pins_each_variant_by_served_name_with_the_chatbots_key(pool, tmp_path):
    """On a shared pool a bare variant name pins nothing: `eval create --model` pins `<served>:<variant>`."""
    import asyncio
    import hashlib

    from loraplane.evaluation.session import read_session

    keyed = TEAM_A.model_copy(update={"api_key_sha256": [hashlib.sha256(b"sk-team-a").hexdigest()]})
    url, _, _, _ = await pool([keyed, TEAM_B])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {n}"}) + "\n" for n in range(3)))

    def create(*extra: str):
        args = ["eval", "create", "--endpoint", f"{url}/v1", "--candidate", "canary", "--baseline", "stable",
                "--prompts", str(prompts), "--items", "2", "--raters", "ann,bo,cy", "--out",
                str(tmp_path / f"session-{len(extra)}"), *extra]
        return CliRunner().invoke(cli_main, args)

    res = await asyncio.to_thread(create)  # bare variant names: not served on a shared pool
    assert res.exit_code != 0 and "HTTP 404" in res.output
    res = await asyncio.to_thread(create, "--model", "bot-a")  # no key: refused
    assert res.exit_code != 0 and "HTTP 401" in res.output
    res = await asyncio.to_thread(create, "--model", "bot-a", "--api-key", "sk-team-a")
    assert res.exit_code == 0, res.output
    assert len(read_session(tmp_path / "session-4").items) == 2
