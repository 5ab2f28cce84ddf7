"""Adapter capacity in adapter sync: every chatbot of a pool, a disk budget with LRU, first-request fetches.

vLLM is the fake of test_serving_adapter_sync (its runtime LoRA API); the real one runs the same
paths in tests/e2e/test_many_adapters_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loraplane_server.adapter_sync.disk import OnDisk, evictions, parse_size
from loraplane_server.adapter_sync.sync import AdapterSync
from loraplane_server.adapter_sync.vllm_client import VllmClient, lora_activity
from loraplane_server.table_watch import TableWatcher
from loraplane_server.vllm_resolver import AdapterSyncResolver

from tests.unit.test_serving_adapter_sync import FakeVllm, make_adapter

pytestmark = pytest.mark.unit


def test_sizes_parse_as_kubernetes_quantities():
    assert parse_size("500Mi") == 500 * 2**20 and parse_size("2G") == 2 * 10**9 and parse_size("4096") == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def test_evictions_take_the_least_recently_used_idle_copies_first():
    held = [OnDisk("a", 40, 10.0), OnDisk("b", 40, 30.0), OnDisk("c", 40, 20.0)]
    assert evictions(held, 20, 140) == []  # fits as it is
    assert evictions(held, 40, 140) == ["a"]
    assert evictions(held, 60, 140, busy=frozenset({"a"})) == ["c"]
    assert evictions(held, 80, 140, busy=frozenset({"a"})) == ["c", "b"]
    assert evictions(held, 200, 140) is None  # larger than the whole budget
    assert evictions(held, 10**9, None) == []  # unbounded


def test_last_use_comes_from_vllms_lora_requests_info():
    text = (
        '# HELP vllm:lora_requests_info Running stats on lora requests.\n# TYPE vllm:lora_requests_info gauge\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="ns/a/v1,ns/b/v1",waiting_lora_adapters=""} 100.0\n'
        'vllm:lora_requests_info{max_lora="2",running_lora_adapters="ns/a/v1",waiting_lora_adapters="ns/c/v2"} 200.0\n'
    )
    assert lora_activity(text) == {"ns/a/v1": 200.0, "ns/b/v1": 100.0, "ns/c/v2": 200.0}


class TrackingVllm(FakeVllm):
    """Also notes, at each unload, whether the adapter's files were still on the volume."""

    def __init__(self) -> None:
        super().__init__()
        self.files_at_unload: dict[str, bool] = {}

    async def unload(self, r):
        body = await r.json()
        self.files_at_unload[body["lora_name"]] = Path(self.loaded[body["lora_name"]]).exists()
        self.calls.append(("unload", body["lora_name"]))
        self.loaded.pop(body["lora_name"])
        return web.Response(text="ok")


def table(namespace: str, chatbot: str, uris: list[Path]) -> str:
    variants = [{"name": f"v{i}", "weight": 100 if i == 0 else 0, "adapterUri": str(u)} for i, u in enumerate(uris)]
    return json.dumps({"model": chatbot, "namespace": namespace, "chatbot": chatbot, "baseModel": "base",
                       "variants": variants})


@pytest.fixture
async def pool(tmp_path):
    """Two chatbots' tables in one pool directory, three adapters each, a budget for three copies."""
    fake = TrackingVllm()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    session = aiohttp.ClientSession()
    tables = tmp_path / "routing"
    tables.mkdir()
    store = tmp_path / "store"
    uris = {bot: [make_adapter(store / bot / f"v{i}", 10 + i) for i in range(3)] for bot in ("alpha", "beta")}
    for bot, ns in (("alpha", "team-a"), ("beta", "team-b")):
        (tables / f"{ns}.{bot}.yaml").write_text(table(ns, bot, uris[bot]))
    watcher = TableWatcher(tables)
    watcher.check()
    one = sum(p.stat().st_size for p in uris["beta"][2].iterdir())  # the largest (about 4 kB; four of the smallest do not fit)
    clock = {"now": 1000.0}
    sync = AdapterSync(watcher, VllmClient(session, url), tmp_path / "local", disk_budget=3 * one + 100,
                       backoff_base=30, wall_clock=lambda: clock["now"])
    yield fake, sync, clock, tables, uris
    await session.close()
    await runner.cleanup()


async def test_a_pool_registers_what_fits_its_disk_and_serves_the_rest_on_demand(pool):
    fake, sync, clock, _tables, _uris = pool
    await sync.reconcile()
    status = sync.status()
    names = {f"team-a/alpha/v{i}" for i in range(3)} | {f"team-b/beta/v{i}" for i in range(3)}
    assert {a["name"] for a in status["adapters"]} == names  # every chatbot of the pool
    on_disk = set(status["onDisk"])
    assert len(on_disk) == 3 and on_disk == set(status["registered"]) == set(fake.loaded)
    assert {"team-a/alpha/v0", "team-b/beta/v0"} <= on_disk  # the routed variants first
    assert status["diskUsedBytes"] <= status["diskBudgetBytes"]
    assert sync.ready  # on-demand adapters do not hold readiness back
    cold = sorted(names - on_disk)
    assert all(a["state"] == "on-demand" for a in status["adapters"] if a["name"] in cold)


async def test_a_first_request_evicts_the_least_recently_used_copy_unregistering_it_first(pool):
    fake, sync, clock, _tables, _uris = pool
    await sync.reconcile()
    held = sorted(sync.status()["onDisk"])
    for i, name in enumerate(held):
        sync.adapters[name].last_used = 900.0 + i  # held[0] is the least recently used
    victim = sync.adapters[held[0]]
    victim_path = Path(victim.path)
    cold = next(n for n in sync.adapters if n not in held)
    path = await sync.resolve(cold)
    assert Path(path).is_dir() and (Path(path) / "manifest.json").exists()
    assert fake.files_at_unload == {held[0]: True} and not victim_path.exists()  # unregistered, then deleted
    assert victim.state == "on-demand" and sync.adapters[cold].state == "resolving"
    assert sync.disk_used <= sync.disk_budget
    with pytest.raises(KeyError):
        await sync.resolve("team-c/gamma/v0")  # not in any table of the pool: never fetched


async def test_vllms_resolver_plugin_gets_the_path_from_adapter_sync(pool):
    fake, sync, _clock, _tables, _uris = pool
    await sync.reconcile()
    runner = web.AppRunner(sync.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    resolver = AdapterSyncResolver(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", timeout=10)
    try:
        cold = next(n for n in sync.adapters if n not in fake.loaded)
        path = await asyncio.to_thread(resolver.fetch, cold)
        assert path == sync.adapters[cold].path and Path(path).is_dir()
        assert await asyncio.to_thread(resolver.fetch, "team-c/gamma/v0") is None  # 404: vLLM answers "does not exist"
    finally:
        await runner.cleanup()


async def test_a_restarted_sidecar_adopts_the_copies_and_registrations_it_left(pool):
    fake, sync, clock, tables, _uris = pool
    await sync.reconcile()
    before = dict(fake.loaded)
    fresh = AdapterSync(sync.watcher, sync.vllm, sync.root, disk_budget=sync.disk_budget, wall_clock=lambda: 1000.0)
    calls = len(fake.calls)
    await fresh.reconcile()
    assert fake.loaded == before and len(fake.calls) == calls  # nothing fetched again, nothing re-registered
    fake.loaded.clear()  # and a restarted vLLM gets them back
    await fresh.reconcile()
    assert fake.loaded == before and fresh.ready


async def test_a_chatbot_leaving_the_pool_is_unregistered_then_deleted(pool):
    fake, sync, _clock, tables, _uris = pool
    await sync.reconcile()
    alpha = [Path(a.path) for a in sync.adapters.values() if a.name.startswith("team-a/") and a.path]
    assert alpha
    (tables / "team-a.alpha.yaml").unlink()
    sync.watcher.check()
    await sync.reconcile()
    assert not any(n.startswith("team-a/") for n in fake.loaded)
    assert not any(p.exists() for p in alpha)
    assert fake.files_at_unload and all(fake.files_at_unload.values())
    assert all(n.startswith("team-b/") for n in sync.status()["onDisk"])


def test_the_resolver_plugin_installs_with_the_standard_library_only(tmp_path):
    """What `make install-vllm` and the vLLM image run: vLLM finds the entry point; nothing of ours beyond it loads."""
    import importlib.metadata
    import subprocess
    import sys

    from loraplane.local.stack import resolver_env
    from loraplane_server import vllm_resolver

    vllm_resolver.install(tmp_path / "site")
    local = tmp_path / "local"
    resolver_env("http://127.0.0.1:1", local)  # the local stack's variant: metadata only, the source on the path
    for where in (tmp_path / "site", local):
        found = [ep for d in importlib.metadata.distributions(path=[str(where)])
                 for ep in d.entry_points if ep.group == "vllm.general_plugins"]
        assert [(ep.name, ep.value) for ep in found] == [
            ("loraplane-adapter-resolver", "loraplane_server.vllm_resolver:register")]
    # -S -I: no site-packages at all, so an import of anything but the standard library fails here.
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import loraplane_server.vllm_resolver as r; r.register(); "
             "print(sorted(m for m in sys.modules if m.startswith('loraplane')))")
    out = subprocess.run([sys.executable, "-S", "-I", "-c", probe, str(tmp_path / "site")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['loraplane_server', 'loraplane_server.vllm_resolver']"
