"""Adapter sync's reconcile loop against a fake vLLM LoRA API (the real one: tests/e2e/test_serving_vllm.py)."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loraplane_server.adapter_sync.sync import AdapterSync
from loraplane_server.adapter_sync.vllm_client import VllmClient
from loraplane_server.table_watch import TableWatcher
from prometheus_client import generate_latest

from tests.support.adapters import publish_dir


class FakeVllm:
    """Keeps the loaded LoRA set like vLLM's runtime LoRA endpoints do."""

    def __init__(self) -> None:
        self.loaded: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []

    async def models(self, _r):
        data = [{"id": "base", "root": "/m", "parent": None}]
        data += [{"id": n, "root": p, "parent": "base"} for n, p in self.loaded.items()]
        return web.json_response({"object": "list", "data": data})

    async def load(self, r):
        body = await r.json()
        self.calls.append(("load", body["lora_name"]))
        if body["lora_name"] in self.loaded:
            return web.json_response({"error": "already loaded"}, status=400)
        self.loaded[body["lora_name"]] = body["lora_path"]
        return web.Response(text="ok")

    async def unload(self, r):
        body = await r.json()
        self.calls.append(("unload", body["lora_name"]))
        self.loaded.pop(body["lora_name"])
        return web.Response(text="ok")

    def app(self):
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/load_lora_adapter", self.load)
        app.router.add_post("/v1/unload_lora_adapter", self.unload)
        return app


def make_adapter(directory: Path, seed: int) -> Path:
    directory.mkdir(parents=True)
    (directory / "adapter_config.json").write_text(json.dumps({"r": 8, "seed": seed}))
    (directory / "adapter_model.safetensors").write_bytes(bytes(range(256)) * (seed + 1))
    publish_dir(directory, job="bot", version=f"v{seed}", base_model="base")
    return directory


@pytest.fixture
async def env(tmp_path):
    fake = FakeVllm()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    session = aiohttp.ClientSession()
    table_path = tmp_path / "routing.yaml"

    def set_table(variants: list[dict]) -> None:
        table_path.write_text(json.dumps({"model": "bot", "baseModel": "base", "variants": variants}))

    set_table([{"name": "base", "weight": 100}])
    watcher = TableWatcher(table_path)
    watcher.check()
    sync = AdapterSync(watcher, VllmClient(session, url), tmp_path / "local", backoff_base=30)
    yield fake, sync, set_table, tmp_path
    await session.close()
    await runner.cleanup()


async def test_loads_verified_adapters_and_unloads_removed_ones(env):
    fake, sync, set_table, tmp = env
    a = make_adapter(tmp / "store" / "a", 1)
    b = make_adapter(tmp / "store" / "b", 2)
    set_table([{"name": "a", "weight": 90, "adapterUri": str(a)}, {"name": "b", "weight": 10, "adapterUri": str(b)}])
    sync.watcher.check()
    await sync.reconcile()
    assert sync.ready and set(fake.loaded) == {"default/bot/a", "default/bot/b"}
    assert Path(fake.loaded["default/bot/a"]).parent == tmp / "local" / "default" / "bot"  # vLLM reads the verified local copy
    assert (Path(fake.loaded["default/bot/a"]) / "adapter_model.safetensors").read_bytes() == (a / "adapter_model.safetensors").read_bytes()
    await sync.reconcile()
    assert fake.calls == [("load", "default/bot/a"), ("load", "default/bot/b")]  # nothing reloaded when nothing changed

    set_table([{"name": "a", "weight": 100, "adapterUri": str(a)}])
    sync.watcher.check()
    await sync.reconcile()
    assert set(fake.loaded) == {"default/bot/a"} and fake.calls[-1] == ("unload", "default/bot/b")

    fake.loaded.clear()  # vLLM restarted and lost its adapters
    await sync.reconcile()
    assert set(fake.loaded) == {"default/bot/a"} and sync.ready


async def test_corrupted_file_is_refused_and_never_loaded(env):
    fake, sync, set_table, tmp = env
    a = make_adapter(tmp / "store" / "a", 1)
    weights = a / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 1
    weights.write_bytes(bytes(data))
    set_table([{"name": "a", "weight": 100, "adapterUri": str(a)}])
    sync.watcher.check()
    await sync.reconcile()
    state = sync.adapters["default/bot/a"]
    assert state.state == "failed" and "adapter_model.safetensors" in state.message
    assert "does not match the manifest" in state.message
    assert fake.calls == [] and not sync.ready
    assert not list((tmp / "local").rglob("adapter_model.safetensors"))
    await sync.reconcile()  # within the backoff: not even retried
    assert state.failures == 1
    text = generate_latest(sync.metrics.registry).decode()
    assert 'loraplane_adapter_sync_operations_total{operation="load",result="refused"} 1.0' in text
    assert 'loraplane_adapter_sync_adapters{state="failed"} 1.0' in text


async def test_unpublished_and_mismatched_adapters_are_refused(env):
    fake, sync, set_table, tmp = env
    unpublished = tmp / "store" / "u"
    unpublished.mkdir(parents=True)
    (unpublished / "adapter_config.json").write_text("{}")
    good = make_adapter(tmp / "store" / "g", 3)
    set_table([
        {"name": "u", "weight": 50, "adapterUri": str(unpublished)},
        {"name": "g", "weight": 50, "adapterUri": str(good), "sha256": "0" * 64},
    ])
    sync.watcher.check()
    await sync.reconcile()
    assert "not published" in sync.adapters["default/bot/u"].message
    assert "differs from the routing table's sha256" in sync.adapters["default/bot/g"].message
    assert fake.calls == [] and sync.status()["ready"] is False


async def test_a_file_of_the_wrong_size_is_refused_before_it_is_downloaded(env):
    fake, sync, set_table, tmp = env
    a = make_adapter(tmp / "store" / "a", 1)
    (a / "adapter_model.safetensors").write_bytes(b"\0" * 10_000_000)  # swapped for something far bigger
    set_table([{"name": "a", "weight": 100, "adapterUri": str(a)}])
    sync.watcher.check()
    await sync.reconcile()
    assert "10000000 bytes, the manifest says 512" in sync.adapters["default/bot/a"].message
    assert fake.calls == []
    assert not list((tmp / "local").rglob("adapter_model.safetensors"))


def test_a_variant_name_reaching_outside_the_adapters_volume_is_refused(tmp_path):
    from loraplane.routing import RoutingTable
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="variants.0.name"):
        RoutingTable.model_validate({"model": "bot", "baseModel": "base", "variants": [
            {"name": "../../x", "weight": 100, "adapterUri": "file:///a"}]})


async def test_the_vllm_api_key_is_sent_with_every_call(tmp_path):
    seen: list[str | None] = []

    async def models(request):
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    async with aiohttp.ClientSession() as session:
        client = VllmClient(session, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", "k3y")
        assert await client.loaded_adapters() == {}
    await runner.cleanup()
    assert seen == ["Bearer k3y"]


async def test_readiness_follows_a_vllm_restart_at_once(env):
    fake, sync, set_table, tmp = env
    a = make_adapter(tmp / "store" / "a", 1)
    set_table([{"name": "a", "weight": 100, "adapterUri": str(a)}])
    sync.watcher.check()
    await sync.reconcile()
    app = sync.app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/readyz"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 200
        fake.loaded.clear()  # vLLM restarted: its adapters are gone, no reconcile pass has run yet
        async with http.get(url) as r:
            assert r.status == 503
    await runner.cleanup()
    assert sync.wake.is_set()  # the next pass reloads it at once


def test_an_amended_model_card_refreshes_the_card_alone(tmp_path):
    """The card is amended after publishing (human evaluation results): a local copy keeps its weights."""
    from loraplane.storage.model_card import amend_card
    from loraplane_server.adapter_sync.fetch import fetch_adapter

    a = make_adapter(tmp_path / "store" / "a", 1)
    (a / "README.md").write_text("# v1\n")
    publish_dir(a, job="bot", version="v1", base_model="base")
    first = fetch_adapter("a", str(a), tmp_path / "local")
    weights = first.path / "adapter_model.safetensors"
    before = weights.stat().st_ino
    amend_card(f"file://{a}", "human-evaluation", "## Human evaluation\n\nwin rate 0.75\n")
    again = fetch_adapter("a", str(a), tmp_path / "local", expected_digest=first.manifest.digest)
    assert again.path == first.path and weights.stat().st_ino == before  # not downloaded again
    assert "win rate 0.75" in (again.path / "README.md").read_text()
    # Any other stale file still means a fresh download.
    weights.write_bytes(b"\0" * 10)
    fixed = fetch_adapter("a", str(a), tmp_path / "local")
    assert fixed.path.joinpath("adapter_model.safetensors").read_bytes() == (a / "adapter_model.safetensors").read_bytes()
