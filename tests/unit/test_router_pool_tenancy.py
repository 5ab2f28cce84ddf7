"""One router in front of a pool shared by two chatbots: names, pins, headers and API keys never cross.

Both chatbots name their variants alike (`stable`, `canary`) on purpose: only the namespace and
chatbot in the LoRA name tell them apart upstream. The upstream is a stub recording what vLLM
would be asked; the real-vLLM two-chatbot test lives with the serving e2e tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from loraplane.pool_routing import pool_files
from loraplane.routing import RoutingTable
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

from tests.support.stub_upstream import Stub, serve

KEY_A, KEY_B = "sk-alpha-0123456789abcdef", "sk-beta-fedcba9876543210"


def bot(namespace: str, name: str, served: str, key: str | None, **kw) -> RoutingTable:
    return RoutingTable.model_validate({
        "model": served, "namespace": namespace, "chatbot": name, "baseModel": "base-llm",
        "variants": [{"name": "stable", "weight": 50, "adapterUri": f"file:///{name}/stable"},
                     {"name": "canary", "weight": 50, "adapterUri": f"file:///{name}/canary"}],
        "apiKeySha256": [hashlib.sha256(key.encode()).hexdigest()] if key else [],
        "stickinessHeader": "x-user-id", **kw,
    })


ALPHA = bot("team-a", "alpha", "alpha", KEY_A)
BETA = bot("team-b", "beta", "beta", KEY_B)
OPEN = bot("team-c", "open", "open-bot", None)


@pytest.fixture
async def pool(tmp_path: Path):
    """A router over a tables directory of three chatbots and one stub upstream."""
    tables = tmp_path / "routing"
    tables.mkdir()
    for name, text in pool_files([ALPHA, BETA, OPEN]).items():
        (tables / name).write_text(text)
    stub = Stub()
    up_runner, up = await serve(stub.app())
    watcher = TableWatcher(tables)
    watcher.check()
    router = Router(watcher, UpstreamPool([up]), RouterMetrics())
    watcher._on_change = router.on_table  # as the router's entry point wires it
    runner, url = await serve(router.app())
    admin_runner, admin = await serve(router.admin_app())
    import aiohttp

    async with aiohttp.ClientSession() as http:
        yield http, url, admin, stub, router
    for r in (admin_runner, runner, up_runner):
        await r.cleanup()


def chat(model: str | None, **kw) -> dict:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, **kw}
    return body if model is None else {**body, "model": model}


def auth(key: str | None) -> dict:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def post(http, url, body, key=None, **headers):
    async with http.post(f"{url}/v1/chat/completions", json=body, headers={**auth(key), **headers}) as r:
        return r.status, await r.json(), r.headers.copy()


async def test_each_served_name_reaches_only_its_own_chatbots_adapters(pool):
    http, url, _, stub, _ = pool
    for _ in range(10):
        assert (await post(http, url, chat("alpha"), KEY_A))[0] == 200
        assert (await post(http, url, chat("beta"), KEY_B))[0] == 200
        assert (await post(http, url, chat("open-bot")))[0] == 200
    asked = [b["model"] for b in stub.requests]
    assert {m.rsplit("/", 1)[0] for m in asked} == {"team-a/alpha", "team-b/beta", "team-c/open"}
    assert asked[0::3] == [m for m in asked if m.startswith("team-a/alpha/")]


@pytest.mark.parametrize("model", [
    "stable", "canary",  # a bare variant is ambiguous on a shared pool
    "team-b/beta/stable", "team-b.beta", "beta/stable",  # upstream names and table keys pick nothing
    "alpha:team-b/beta/stable", "alpha:../beta", "alpha:", ":stable", "Alpha", "alpha ",
])
async def test_no_model_name_or_pin_reaches_another_chatbot(pool, model):
    http, url, _, stub, _ = pool
    status, body, _ = await post(http, url, chat(model), KEY_A)
    assert status == 404 and body["error"]["code"] == "model_not_found"
    assert stub.requests == []


async def test_a_pin_names_its_chatbot_and_stays_inside_it(pool):
    http, url, _, stub, _ = pool
    status, body, headers = await post(http, url, chat("alpha:canary"), KEY_A, **{"x-loraplane-variant": "stable"})
    assert status == 200 and headers["x-loraplane-variant"] == "canary" and body["model"] == "alpha:canary"
    # Headers choose nothing: neither the variant header nor another chatbot's sticky user.
    status, _, headers = await post(http, url, chat("beta"), KEY_B, **{"x-loraplane-variant": "team-a/alpha/stable"})
    assert status == 200
    assert [b["model"] for b in stub.requests] == ["team-a/alpha/canary", f"team-b/beta/{headers['x-loraplane-variant']}"]
    assert (await post(http, url, chat(None), KEY_A))[0] == 404  # no model: several chatbots, none chosen


async def test_api_keys_right_key_wrong_chatbots_key_none_and_garbage(pool, caplog):
    http, url, _, stub, router = pool
    caplog.set_level(logging.DEBUG)
    assert (await post(http, url, chat("beta"), KEY_B))[0] == 200
    for key in (KEY_A, None, "sk-nope", KEY_B + " "):
        status, body, headers = await post(http, url, chat("beta"), key) if key != KEY_B + " " else \
            await post(http, url, chat("beta"), None, Authorization=f"Basic {KEY_B}")
        assert status == 401, key
        assert body["error"]["code"] == "invalid_api_key" and body["error"]["type"] == "invalid_request_error"
        assert headers["WWW-Authenticate"] == "Bearer"
    assert (await post(http, url, chat("beta:canary"), KEY_A))[0] == 401  # a pin takes the chatbot's key too
    assert (await post(http, url, chat("open-bot"), KEY_A))[0] == 200  # a keyless chatbot asks none
    assert len(stub.requests) == 2
    # Neither the client's key nor its digest goes upstream, into logs or into metrics.
    assert all(KEY_A not in json.dumps(b) and KEY_B not in json.dumps(b) for b in stub.requests)
    assert all("Authorization" not in h for h in stub.headers)
    exposition = router.metrics.exposition().decode()
    for secret in (KEY_A, KEY_B, hashlib.sha256(KEY_B.encode()).hexdigest()):
        assert secret not in caplog.text and secret not in exposition
    assert ('loraplane_router_rejected_requests_total{chatbot="beta",model="beta",namespace="team-b",'
            'reason="unauthorized"} 5.0') in exposition


async def test_models_lists_only_what_the_caller_may_use(pool):
    http, url, _, _, _ = pool

    async def ids(key):
        async with http.get(f"{url}/v1/models", headers=auth(key)) as r:
            return [m["id"] for m in (await r.json())["data"]]

    assert await ids(KEY_A) == ["alpha", "alpha:stable", "alpha:canary"]
    assert await ids(KEY_B) == ["beta", "beta:stable", "beta:canary"]
    assert await ids(None) == ["open-bot", "open-bot:stable", "open-bot:canary"]
    assert await ids("sk-nope") == ["open-bot", "open-bot:stable", "open-bot:canary"]
    async with http.get(f"{url}/v1/models/beta:canary", headers=auth(KEY_A)) as r:
        assert r.status == 404


async def test_feedback_is_recorded_only_against_the_chatbot_that_answered(pool):
    http, url, admin, _, _ = pool
    _, _, headers = await post(http, url, chat("alpha:canary"), KEY_A)
    rid = headers["x-request-id"]

    async def feedback(key, request_id=rid):
        async with http.post(f"{url}/v1/feedback", json={"requestId": request_id, "score": "up"},
                             headers=auth(key)) as r:
            return r.status, await r.json()

    assert (await feedback(KEY_B))[0] == 401  # beta's key cannot score alpha's answer
    assert (await feedback(None))[0] == 401
    assert await feedback(KEY_A) == (200, {"requestId": rid, "variant": "canary", "score": 1.0})
    async with http.get(f"{admin}/metrics") as r:
        text = await r.text()
    assert ('loraplane_router_feedback_score_count{chatbot="alpha",model="alpha",namespace="team-a",'
            'variant="canary"} 1.0') in text
    assert 'feedback_score_count{chatbot="beta"' not in text
    async with http.get(f"{url}/metrics") as r:
        assert r.status == 404  # metrics are on the admin port only


async def test_cache_and_stickiness_are_per_chatbot(pool):
    http, url, _, stub, _ = pool
    for _ in range(2):
        assert (await post(http, url, chat("open-bot:stable", temperature=0)))[0] == 200
    # The same request to another chatbot's same-named variant is never a hit of the first.
    status, _, headers = await post(http, url, chat("alpha:stable", temperature=0), KEY_A)
    assert status == 200 and headers.get("x-loraplane-cache") is None
    assert [b["model"] for b in stub.requests] == ["team-c/open/stable", "team-a/alpha/stable"]


async def test_a_chatbot_that_leaves_the_pool_is_no_longer_served_and_the_others_are_untouched(pool, tmp_path):
    http, url, _, stub, router = pool
    assert (await post(http, url, chat("beta"), KEY_B))[0] == 200
    (tmp_path / "routing" / "team-b.beta.yaml").unlink()
    assert router.watcher.check() is True
    assert (await post(http, url, chat("beta"), KEY_B))[0] == 404
    assert (await post(http, url, chat("alpha"), KEY_A))[0] == 200
    assert "team-b.beta" not in router.caches
    assert 'in_flight_requests{chatbot="beta"' not in router.metrics.exposition().decode()
