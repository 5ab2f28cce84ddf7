"""Adapter affinity (rendezvous hashing with bounded load) and residency as vLLM reports it."""

from __future__ import annotations

from collections import Counter

import aiohttp
import pytest
from aiohttp import web
from loraplane_server.router.placement import home_replicas, load_bound, place
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.router.residency import ResidencyPoller, lora_activity, registered_loras
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tests.support.stub_upstream import serve

REPLICAS = [f"http://vllm-{i}:8000" for i in range(4)]
ADAPTERS = [f"ns/bot-{i}/v1" for i in range(400)]


def idle(replicas=REPLICAS) -> dict[str, int]:
    return dict.fromkeys(replicas, 0)


def test_each_adapter_has_k_stable_homes_spread_evenly():
    homes = {a: home_replicas(a, REPLICAS, 2) for a in ADAPTERS}
    assert all(len(set(h)) == 2 for h in homes.values())
    assert homes == {a: home_replicas(a, list(reversed(REPLICAS)), 2) for a in ADAPTERS}  # order-free
    firsts = Counter(h[0] for h in homes.values())
    assert all(60 <= n <= 140 for n in firsts.values()), firsts  # 100 each expected


def test_adding_a_replica_moves_only_the_adapters_homed_on_it():
    before = {a: home_replicas(a, REPLICAS, 1)[0] for a in ADAPTERS}
    grown = [*REPLICAS, "http://vllm-4:8000"]
    after = {a: home_replicas(a, grown, 1)[0] for a in ADAPTERS}
    moved = [a for a in ADAPTERS if before[a] != after[a]]
    assert all(after[a] == "http://vllm-4:8000" for a in moved)
    assert 40 <= len(moved) <= 120  # about a fifth


def test_an_idle_pool_sends_an_adapter_to_its_first_home():
    for a in ADAPTERS[:50]:
        assert place(a, idle()) == home_replicas(a, REPLICAS, 2)[0]


def test_a_busy_first_home_gives_way_to_the_second_then_to_the_least_loaded():
    a = ADAPTERS[0]
    first, second = home_replicas(a, REPLICAS, 2)
    others = [r for r in REPLICAS if r not in (first, second)]
    loads = {**idle(), first: 3, second: 1, others[0]: 1, others[1]: 1}
    assert place(a, loads) == second  # within the bound, the less loaded home
    loads = {**idle(), first: 6, second: 6, others[0]: 0, others[1]: 1}
    assert load_bound(loads, 1.25) == 5
    assert place(a, loads) == others[0]  # both homes over the bound: least loaded overall


def test_a_home_with_a_free_slot_keeps_its_adapter_however_uneven_the_load():
    a = ADAPTERS[0]
    home, other = home_replicas(a, REPLICAS[:2], 2)
    assert place(a, {home: 3, other: 0}, k=1, capacity=4) == home  # 1.25x the mean alone would spill
    assert place(a, {home: 3, other: 0}, k=1) == other
    assert place(a, {home: 4, other: 0}, k=1, capacity=4) == other  # full: under pressure, least loaded


def test_base_model_requests_and_affinity_off_place_by_load_alone():
    loads = {**idle(), REPLICAS[2]: 0, REPLICAS[0]: 2, REPLICAS[1]: 2, REPLICAS[3]: 1}
    assert place(None, loads) == REPLICAS[2]
    assert place(ADAPTERS[0], loads, k=0) == REPLICAS[2]
    with pytest.raises(ValueError):
        place("x", {})


async def test_the_pool_places_each_adapter_on_its_home_and_spills_under_pressure():
    pool = UpstreamPool(REPLICAS[:2], max_in_flight=8, queue_size=0, affinity_replicas=1)
    for a in ADAPTERS[:50]:  # one at a time: the pool is idle, every request goes home
        u = await pool.acquire(adapter=a)
        assert u.url == home_replicas(a, REPLICAS[:2], 1)[0]
        pool.release(u)
    a = ADAPTERS[0]
    home, other = home_replicas(a, REPLICAS[:2], 2)
    small = UpstreamPool(REPLICAS[:2], max_in_flight=2, queue_size=0, affinity_replicas=1)
    held = [await small.acquire(adapter=a) for _ in range(3)]
    # The home takes requests while it has a free slot; with none left, the other replica serves.
    assert [u.url for u in held] == [home, home, other]
    pool = small
    for u in held:
        pool.release(u)
    assert all(u.in_flight == 0 for u in pool.upstreams)


LORA_METRICS = """\
# HELP vllm:lora_requests_info Running stats on lora requests.
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="2",running_lora_adapters="ns/a/v1",waiting_lora_adapters=""} 1.7e9
vllm:lora_requests_info{max_lora="2",running_lora_adapters="ns/b/v1,ns/a/v1",waiting_lora_adapters="ns/c/v1"} 1.8e9
vllm:num_requests_running{model_name="base"} 1.0
"""


def test_lora_activity_reads_the_newest_series():
    assert lora_activity(LORA_METRICS) == (["ns/a/v1", "ns/b/v1"], ["ns/c/v1"], 2)
    assert lora_activity("") == ([], [], None)


def test_registered_loras_are_the_models_with_a_parent():
    models = {"data": [{"id": "base", "parent": None}, {"id": "ns/a/v1", "parent": "base"},
                       {"id": "ns/b/v1", "parent": "base"}]}
    assert registered_loras(models) == ["ns/a/v1", "ns/b/v1"]
    assert registered_loras({"oops": 1}) == [] and registered_loras([]) == []


async def test_residency_document_from_a_replicas_models_and_metrics():
    # vLLM's gauge, exported by a real prometheus_client registry under vLLM's name and labels.
    registry = CollectorRegistry()
    info = Gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                 ["max_lora", "waiting_lora_adapters", "running_lora_adapters"], registry=registry)
    info.labels("2", "", "ns/a/v1").set(1.9e9)

    async def models(_r):
        return web.json_response({"object": "list", "data": [{"id": "base", "parent": None},
                                                             {"id": "ns/a/v1", "parent": "base"}]})

    async def metrics(_r):
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    runner, up = await serve(app)
    pool = UpstreamPool([up, "http://127.0.0.1:9"])  # the second one refuses connections
    pool.upstreams[1].healthy = False
    poller = ResidencyPoller(pool)
    try:
        async with aiohttp.ClientSession() as session:
            await poller.poll_once(session)
    finally:
        await runner.cleanup()
    assert poller.document() == {"replicas": [
        {"url": up, "healthy": True, "registered": ["ns/a/v1"], "running": ["ns/a/v1"], "waiting": [],
         "maxLoras": 2},
        {"url": "http://127.0.0.1:9", "healthy": False, "registered": [], "running": [], "waiting": []},
    ]}
