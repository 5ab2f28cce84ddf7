"""Fair sharing on a shared pool: one chatbot's flood does not take the others' latency.

The upstream is a stub with a fixed service time and a bounded capacity (as many requests at
once as the router's slots), so latency measures queueing alone, not the machine's load: B's
p95 is measured solo and then under A's flood, in the same test, against the same stub.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from loraplane.pool_routing import pool_files
from loraplane.routing import RoutingTable
from loraplane_server.router.app import Router
from loraplane_server.router.fair_share import next_tenant, share_limit
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import QueueFull, UpstreamPool
from loraplane_server.table_watch import TableWatcher

from tests.support.stub_upstream import Stub, completion, serve

SERVICE_SECONDS = 0.12
SLOTS = 4  # the stub's capacity and the router's slots: A's share is 2 of them


def table(name: str, share: int = 1) -> RoutingTable:
    return RoutingTable.model_validate({
        "model": name, "namespace": "team", "baseModel": "base-llm", "share": share,
        "variants": [{"name": "stable", "weight": 100, "adapterUri": f"file:///{name}"}],
        "cache": {"enabled": False},
    })


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(round(0.95 * len(ordered))) - 1)]


def test_share_limits_split_the_slots_by_weight_among_active_chatbots():
    assert share_limit(8, 1, {"a": 1}) == 8  # alone: the whole pool
    assert share_limit(8, 1, {"a": 1, "b": 1}) == 4
    assert share_limit(8, 3, {"a": 3, "b": 1}) == 6 and share_limit(8, 1, {"a": 3, "b": 1}) == 2
    assert share_limit(4, 1, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}) == 1  # never below one slot
    assert share_limit(0, 1, {"a": 1}) == 0


def test_a_freed_slot_goes_to_the_waiting_chatbot_furthest_below_its_share():
    weights = {"a": 1, "b": 1, "c": 4}
    assert next_tenant({"a": 1, "b": 1}, {"a": 3, "b": 1}, weights) == "b"
    assert next_tenant({"a": 1, "c": 1}, {"a": 1, "c": 3}, weights) == "c"  # 3/4 < 1/1
    assert next_tenant({"a": 0, "b": 0}, {}, weights) is None


@pytest.fixture
async def shared_pool(tmp_path: Path):
    tables = tmp_path / "routing"
    tables.mkdir()
    for name, text in pool_files([table("a"), table("b")]).items():
        (tables / name).write_text(text)
    capacity = asyncio.Semaphore(SLOTS)

    async def fixed_service(_request, body):
        async with capacity:
            await asyncio.sleep(SERVICE_SECONDS)
        return aiohttp.web.json_response(completion(body["model"]))

    stub = Stub(fixed_service)
    up_runner, up = await serve(stub.app())
    watcher = TableWatcher(tables)
    watcher.check()
    router = Router(watcher, UpstreamPool([up], max_in_flight=SLOTS, queue_size=2 * SLOTS), RouterMetrics())
    runner, url = await serve(router.app())
    async with aiohttp.ClientSession() as http:
        yield http, url, router
    await runner.cleanup()
    await up_runner.cleanup()


async def ask(http: aiohttp.ClientSession, url: str, model: str) -> tuple[int, float]:
    started = time.perf_counter()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    async with http.post(f"{url}/v1/chat/completions", json=body) as r:
        await r.read()
        assert r.status != 429 or r.headers["Retry-After"] == "1"
        return r.status, time.perf_counter() - started


async def b_latencies(http, url, n: int) -> list[float]:
    """B's closed loop: one request at a time, well within its share."""
    out = []
    for _ in range(n):
        status, seconds = await ask(http, url, "b")
        assert status == 200
        out.append(seconds)
    return out


async def test_a_flood_at_four_times_its_share_gets_429s_while_b_keeps_its_latency(shared_pool):
    http, url, router = shared_pool
    solo = await b_latencies(http, url, 20)
    codes: list[int] = []
    stop = asyncio.Event()

    async def flood_worker():
        while not stop.is_set():
            status, _ = await ask(http, url, "a")
            codes.append(status)
            if status == 429:
                await asyncio.sleep(0.02)  # a client honouring Retry-After would wait longer still

    # A's share is SLOTS/2 = 2 slots; it keeps 4x that many requests open at once.
    workers = [asyncio.create_task(flood_worker()) for _ in range(4 * SLOTS // 2)]
    await asyncio.sleep(3 * SERVICE_SECONDS)  # the flood is in full swing before B comes back
    try:
        flooded = await b_latencies(http, url, 20)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert p95(flooded) <= 1.5 * p95(solo), (p95(solo), p95(flooded))
    assert codes.count(429) > 0 and codes.count(200) > 0, codes
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_rejected_requests_total{chatbot="a",model="a",namespace="team",reason="over_share"}' in text
    assert 'reason="over_share"' not in text.split('chatbot="b"', 1)[-1].split("\n", 1)[0]


async def test_a_chatbot_alone_uses_the_whole_pool_and_a_newcomer_gets_the_next_freed_slots():
    pool = UpstreamPool(["http://vllm-0:8000"], max_in_flight=4, queue_size=4, active_window=0.2)
    a = [await pool.acquire(tenant="a") for _ in range(4)]  # alone: every slot
    b_waiting = asyncio.ensure_future(pool.acquire(tenant="b"))
    a_waiting = asyncio.ensure_future(pool.acquire(tenant="a"))
    await asyncio.sleep(0)
    assert not b_waiting.done() and not a_waiting.done()
    pool.release(a.pop(), "a")
    await asyncio.sleep(0)
    assert b_waiting.done() and not a_waiting.done()  # b is furthest below its share
    pool.release(a.pop(), "a")
    await asyncio.sleep(0)
    # a holds its share (2 of 4) while b is active: the freed slot stays free for b.
    assert not a_waiting.done() and pool.upstreams[0].in_flight == 3
    b = [await b_waiting, await asyncio.wait_for(pool.acquire(tenant="b"), 1)]
    # Over its share of slots and of the queue (2 of 4 places), a is refused at once.
    queued = asyncio.ensure_future(pool.acquire(tenant="a"))
    await asyncio.sleep(0)
    with pytest.raises(QueueFull) as refused:
        await pool.acquire(tenant="a")
    assert refused.value.reason == "over_share"
    for u in b:
        pool.release(u, "b")
    # Once b has been idle for the active window, a may use the whole pool again.
    await asyncio.wait_for(asyncio.gather(a_waiting, queued), 2)
    assert (pool.tenants["a"].in_flight, pool.tenants["a"].queued, pool.tenants["b"].in_flight) == (4, 0, 0)
