"""The router's proxy logic against stub upstreams (aiohttp servers on localhost).

The stubs stand in for vLLM only where the logic alone is under test; the real
vLLM is exercised in tests/e2e/test_serving_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

from tests.support.stub_upstream import Stub, completion, free_port, serve

TABLE = {
    "model": "bot",
    "baseModel": "base-llm",
    "variants": [
        {"name": "stable", "weight": 90, "adapterUri": "file:///a/stable"},
        {"name": "canary", "weight": 10, "adapterUri": "file:///a/canary"},
    ],
    "stickinessHeader": "x-user-id",
    "pricePerGpuHour": 3.6,
    "gpuTokensPerSecond": 100,
    "promptTokenWeight": 0.0,
}
CHAT = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture
async def harness(tmp_path: Path):
    """Start stub upstreams and a router; yields a function (stubs, **pool options) -> (router url, router)."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(upstream_urls: list[str], table: dict = TABLE, **pool_kw):
        path = tmp_path / "routing.yaml"
        path.write_text(json.dumps(table))
        metrics = RouterMetrics()
        watcher = TableWatcher(path, on_result=lambda r: metrics.reloads.labels(r).inc())
        watcher.check()
        router = Router(watcher, UpstreamPool(upstream_urls, **pool_kw), metrics)
        watcher._on_change = router.on_table
        runner, url = await serve(router.app())
        runners.append(runner)
        return url, router

    async def stub(handler=None) -> tuple[Stub, str]:
        s = Stub(handler)
        runner, url = await serve(s.app())
        runners.append(runner)
        return s, url

    async def client() -> aiohttp.ClientSession:
        session = aiohttp.ClientSession()
        sessions.append(session)
        return session

    start.stub = stub
    start.client = client
    yield start
    for s in sessions:
        await s.close()
    for r in reversed(runners):
        await r.cleanup()


async def test_rewrites_model_tags_variant_and_counts_usage(harness):
    stub, up = await harness.stub()
    url, router = await harness([up])
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-user-id": "alice"}) as r:
        assert r.status == 200
        variant = r.headers["x-loraplane-variant"]
        assert r.headers["x-request-id"].endswith(f"-{variant}")
        assert (await r.json())["choices"][0]["message"]["content"] == "hello"
    assert stub.requests[0]["model"] == f"default/bot/{variant}"  # the LoRA name: namespace/chatbot/variant
    text = router.metrics.exposition().decode()
    assert f'loraplane_router_requests_total{{chatbot="bot",code="200",model="bot",namespace="default",variant="{variant}"}} 1.0' in text
    assert f'loraplane_router_tokens_total{{chatbot="bot",kind="completion",model="bot",namespace="default",variant="{variant}"}} 3.0' in text
    # 3 completion tokens / 100 tokens per GPU-second * 3.6 per GPU-hour / 3600 s
    assert f'loraplane_router_estimated_cost_total{{chatbot="bot",model="bot",namespace="default",variant="{variant}"}} 3e-05' in text


async def test_sticky_user_keeps_variant_and_pinning_wins(harness):
    _, up = await harness.stub()
    url, _ = await harness([up])
    http = await harness.client()
    seen = set()
    for _ in range(20):
        async with http.post(f"{url}/v1/chat/completions", json=CHAT, headers={"x-user-id": "bob"}) as r:
            seen.add(r.headers["x-loraplane-variant"])
    assert len(seen) == 1
    other = ({"stable", "canary"} - seen).pop()
    async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": other}, headers={"x-user-id": "bob"}) as r:
        assert r.headers["x-loraplane-variant"] == other
    async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "nope"}) as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


async def test_base_variant_is_sent_as_the_base_model(harness):
    stub, up = await harness.stub()
    table = {**TABLE, "variants": [{"name": "base", "weight": 100}]}
    url, _ = await harness([up], table=table)
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.headers["x-loraplane-variant"] == "base"
    assert stub.requests[0]["model"] == "base-llm"


async def test_deterministic_requests_are_cached_per_variant(harness):
    stub, up = await harness.stub()
    url, router = await harness([up])
    http = await harness.client()
    body = {**CHAT, "temperature": 0}
    for _ in range(3):
        async with http.post(f"{url}/v1/chat/completions", json={**body, "model": "stable"}) as r:
            assert r.status == 200 and (await r.json())["model"] == "stable"
    async with http.post(f"{url}/v1/chat/completions", json={**body, "model": "canary"}) as r:
        assert r.headers.get("x-loraplane-cache") is None and (await r.json())["model"] == "canary"
    async with http.post(f"{url}/v1/chat/completions", json={**body, "model": "stable", "temperature": 0.5}) as r:
        assert r.status == 200
    assert [b["model"] for b in stub.requests] == ["default/bot/stable", "default/bot/canary", "default/bot/stable"]
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_cache_requests_total{chatbot="bot",model="bot",namespace="default",result="hit",variant="stable"} 2.0' in text
    assert 'loraplane_router_cache_requests_total{chatbot="bot",model="bot",namespace="default",result="miss",variant="canary"} 1.0' in text


async def test_bad_table_is_rejected_and_last_good_stays(harness, tmp_path, caplog):
    _, up = await harness.stub()
    url, router = await harness([up])
    path = tmp_path / "routing.yaml"
    path.write_text(json.dumps({**TABLE, "variants": [{"name": "stable", "weight": 50}]}))
    assert router.watcher.check() is False
    assert "weights must sum to 100, got 50" in caplog.text
    assert [v.weight for v in router.watcher.table.variants] == [90, 10]
    path.write_text(json.dumps({**TABLE, "variants": [{"name": "canary", "weight": 100, "adapterUri": "file:///c"}]}))
    assert router.watcher.check() is True
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.headers["x-loraplane-variant"] == "canary"
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_routing_table_reloads_total{result="rejected"} 1.0' in text
    assert 'loraplane_router_routing_table_reloads_total{result="ok"} 2.0' in text


async def test_full_queue_answers_429_with_retry_after(harness):
    release = asyncio.Event()

    async def slow(request, body):
        await release.wait()
        return web.json_response(completion(body["model"]))

    stub, up = await harness.stub(slow)
    url, router = await harness([up], max_in_flight=1, queue_size=1)
    http = await harness.client()

    async def call():
        async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
            return r.status, r.headers.get("Retry-After")

    first = asyncio.create_task(call())
    second = asyncio.create_task(call())
    while len(stub.requests) < 1 or not router.pool.upstreams[0].waiting:
        await asyncio.sleep(0.01)
    assert await call() == (429, "1")  # one running, one queued: the third is refused at once
    release.set()
    assert [(await first)[0], (await second)[0]] == [200, 200]
    assert len(stub.requests) == 2
    assert 'code="429"' in router.metrics.exposition().decode()


async def test_connection_failure_retries_on_another_replica(harness):
    stub, up = await harness.stub()
    dead = f"http://127.0.0.1:{free_port()}"
    url, router = await harness([dead, up])
    router.pool.affinity_replicas = 0  # by load alone, ties in list order: the dead replica is tried first
    http = await harness.client()
    for _ in range(4):
        async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
    assert len(stub.requests) == 4
    assert router.pool.upstreams[0].healthy is False
    assert "loraplane_router_upstream_errors_total" in router.metrics.exposition().decode()


async def test_a_connection_closed_before_the_answer_is_sent_again_and_the_replica_stays(harness):
    # As vLLM (uvicorn) closes a kept-alive connection idle for 5 s just as the router reuses it.
    drops = {"left": 2}

    async def drop_then_answer(request, body):
        if drops["left"]:
            drops["left"] -= 1
            request.transport.close()
            raise ConnectionResetError
        return web.json_response(completion(body["model"]))

    stub, up = await harness.stub(drop_then_answer)
    url, router = await harness([up])
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 200
    assert len(stub.requests) == 3 and router.pool.upstreams[0].healthy
    assert 'reason="disconnected"' in router.metrics.exposition().decode()
    drops["left"] = 10  # a replica that closes every connection is going away: out of the pool
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 503
    assert router.pool.upstreams[0].healthy is False


async def test_no_retry_once_the_stream_has_started(harness):
    calls = []

    async def dies_mid_stream(request, body):
        calls.append(1)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n')
        request.transport.close()  # the replica dies after the first byte
        return resp

    _, up1 = await harness.stub(dies_mid_stream)
    _, up2 = await harness.stub(dies_mid_stream)
    url, router = await harness([up1, up2])
    http = await harness.client()
    got = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
            assert r.status == 200
            async for chunk in r.content.iter_any():
                got += chunk
    assert b'"par"' in got
    assert len(calls) == 1  # the other replica was never tried: the client already had bytes
    text = router.metrics.exposition().decode()
    assert 'reason="stream_broken"' in text and 'code="502"' in text


async def test_stream_passes_each_event_through_at_once_and_strips_injected_usage(harness):
    go_on = asyncio.Event()

    async def streamer(request, body):
        assert body["stream_options"] == {"include_usage": True}  # injected for the token metrics
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"one"}}],"usage":null}\n\n')
        await go_on.wait()  # the client must see "one" before "two" is even produced
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"two"}}],"usage":null}\n\n')
        await resp.write(b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\n')
        await resp.write(b"data: [DONE]\n\n")
        return resp

    _, up = await harness.stub(streamer)
    url, router = await harness([up])
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True, "model": "canary"}) as r:
        assert r.headers["x-loraplane-variant"] == "canary"
        first = await asyncio.wait_for(r.content.readuntil(b"\n\n"), timeout=5)
        assert b'"one"' in first
        go_on.set()
        rest = await r.content.read()
    assert b'"two"' in rest and rest.endswith(b"data: [DONE]\n\n")
    assert b'"usage":{' not in rest
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_tokens_total{chatbot="bot",kind="completion",model="bot",namespace="default",variant="canary"} 2.0' in text
    assert 'loraplane_router_time_to_first_token_seconds_count{chatbot="bot",model="bot",namespace="default",variant="canary"} 1.0' in text


async def test_client_disconnect_cancels_the_upstream_request(harness):
    async def endless(request, body):
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        while True:
            await resp.write(b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n')
            await asyncio.sleep(0.05)

    stub, up = await harness.stub(endless)
    url, router = await harness([up])
    http = await harness.client()
    r = await http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True})
    await r.content.readuntil(b"\n\n")
    r.close()  # the user closes the tab
    await asyncio.wait_for(stub.cancelled.wait(), timeout=10)
    for _ in range(100):
        if router.pool.upstreams[0].in_flight == 0:
            break
        await asyncio.sleep(0.05)
    assert router.pool.upstreams[0].in_flight == 0


async def test_non_streamed_client_disconnect_cancels_upstream(harness):
    async def hangs(request, body):
        await asyncio.sleep(60)

    stub, up = await harness.stub(hangs)
    url, _ = await harness([up])
    http = await harness.client()
    task = asyncio.create_task(http.post(f"{url}/v1/chat/completions", json=CHAT))
    while not stub.requests:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait_for(stub.cancelled.wait(), timeout=10)


async def test_feedback_is_attributed_to_the_variant(harness):
    _, up = await harness.stub()
    url, router = await harness([up])
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "canary"}) as r:
        rid = r.headers["x-request-id"]
    async with http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": 4}) as r:
        assert r.status == 200 and (await r.json()) == {"requestId": rid, "variant": "canary", "score": 0.75}
    async with http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": "up"}) as r:
        assert r.status == 409
    async with http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": 9}) as r:
        assert r.status == 400 and "score 9" in (await r.json())["error"]["message"]
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_feedback_score_sum{chatbot="bot",model="bot",namespace="default",variant="canary"} 0.75' in text
    async with http.get(f"{url}/v1/models") as r:
        assert [m["id"] for m in (await r.json())["data"]] == ["bot", "stable", "canary"]


async def test_dns_discovery_gives_one_upstream_per_address():
    from loraplane_server.router.pool import resolve_dns

    urls = await resolve_dns("localhost:8000")
    assert urls and all(u.endswith(":8000") for u in urls)
    assert any(u in ("http://127.0.0.1:8000", "http://[::1]:8000") for u in urls)
    pool = UpstreamPool(["http://a:1"])
    pool.upstreams[0].in_flight = 3
    pool.set_urls(["http://a:1", "http://b:1"])  # a keeps its state, b is new
    assert [(u.url, u.in_flight) for u in pool.upstreams] == [("http://a:1", 3), ("http://b:1", 0)]


async def test_unhealthy_replica_is_skipped_until_its_health_check_passes(harness):
    stub, up = await harness.stub()
    url, router = await harness([up])
    router.pool.upstreams[0].healthy = False
    http = await harness.client()
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 503
    async with http.get(f"{url}/readyz") as r:
        assert r.status == 503
    await router.pool.check_health(router.session)
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 200


async def test_a_replica_leaves_the_pool_only_after_three_late_health_checks_in_a_row(harness):
    stub, up = await harness.stub()
    url, router = await harness([up])
    pool, http = router.pool, await harness.client()
    stub.health_delay = 0.3
    for _ in range(2):  # busy generating, it answers /health late: requests still go to it
        await pool.check_health(router.session, timeout=0.1)
        async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
            assert r.status == 200
    stub.health_delay = 0.0
    await pool.check_health(router.session, timeout=0.1)  # an answer in time starts the count again
    assert pool.upstreams[0].failed_checks == 0
    stub.health_delay = 0.3
    for _ in range(3):
        await pool.check_health(router.session, timeout=0.1)
    assert pool.upstreams[0].healthy is False
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 503
    stub.health_delay = 0.0
    await pool.check_health(router.session, timeout=0.1)  # one pass brings it back
    async with http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert r.status == 200


async def test_identical_concurrent_deterministic_requests_reach_the_upstream_once(harness):
    release = asyncio.Event()

    async def slow(request, body):
        await release.wait()
        return web.json_response(completion(body["model"], text="shared"))

    stub, up = await harness.stub(slow)
    url, router = await harness([up])
    http = await harness.client()

    async def call():
        async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "stable", "temperature": 0}) as r:
            return r.status, (await r.json())["choices"][0]["message"]["content"]

    tasks = [asyncio.create_task(call()) for _ in range(5)]
    while not stub.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    release.set()
    assert [await t for t in tasks] == [(200, "shared")] * 5
    assert len(stub.requests) == 1
    assert not router._inflight


async def test_waiting_requests_go_on_alone_when_the_first_fails(harness):
    release = asyncio.Event()

    async def first_fails(request, body):
        if len(stub.requests) == 1:
            await release.wait()
            return web.json_response({"error": {"message": "boom"}}, status=500)
        return web.json_response(completion(body["model"]))

    stub, up = await harness.stub(first_fails)
    url, _ = await harness([up])
    http = await harness.client()

    async def call():
        async with http.post(f"{url}/v1/chat/completions", json={**CHAT, "model": "stable", "temperature": 0}) as r:
            return r.status

    tasks = [asyncio.create_task(call()) for _ in range(3)]
    while not stub.requests:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    release.set()
    assert sorted([await t for t in tasks]) == [200, 200, 500]
    assert len(stub.requests) >= 2


def test_complete_sse_events_are_found_with_lf_and_crlf():
    from loraplane_server.router.app import _events_end

    assert _events_end(b"data: a\n\ndata: b") == len(b"data: a\n\n")
    assert _events_end(b"data: a\r\n\r\ndata: b\r\n\r\n") == len(b"data: a\r\n\r\ndata: b\r\n\r\n")
    assert _events_end(b"data: partial") == 0
