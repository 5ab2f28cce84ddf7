"""A real Prometheus server (Debian's `prometheus`) scraping two real routers in two namespaces,
read by the canary's PrometheusSource.

The two routers serve chatbots of the same name; Prometheus labels each scrape target with its
namespace, as its Kubernetes discovery does. The upstream behind the routers is a small aiohttp
stand-in for vLLM: the figures under test are the routers' own.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import pytest
import yaml
from aiohttp import web
from loraplane.canary import PrometheusSource
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing: run make install")
MODEL = "support-bot"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def vllm_stand_in(request: web.Request) -> web.Response:
    body = await request.json()
    return web.json_response({"id": "c", "object": "chat.completion", "model": body["model"],
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]})


async def serve(app: web.Application, **options) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def start_router(tmp_path: Path, name: str, upstream: str) -> tuple[web.AppRunner, int]:
    table = tmp_path / f"{name}.yaml"
    table.write_text(json.dumps({"model": MODEL, "namespace": name, "baseModel": "base", "variants": [
        {"name": "stable", "weight": 100, "adapterUri": "file:///a/stable"}]}))
    watcher = TableWatcher(table)
    watcher.check()
    router = Router(watcher, UpstreamPool([upstream]), RouterMetrics())
    runner, port = await serve(router.app(), **router.server_options())
    admin_runner, admin_port = await serve(router.admin_app())  # Prometheus scrapes the admin port
    return runner, port, admin_runner, admin_port


async def test_prometheus_source_reads_one_namespace_of_two_same_named_chatbots(tmp_path):
    app = web.Application()
    app.router.add_post("/v1/chat/completions", vllm_stand_in)
    runners = []
    up_runner, up_port = await serve(app)
    runners.append(up_runner)
    ports, admin_ports = {}, {}
    for ns in ("team-a", "team-b"):
        runner, ports[ns], admin_runner, admin_ports[ns] = await start_router(tmp_path, ns,
                                                                              f"http://127.0.0.1:{up_port}")
        runners += [runner, admin_runner]
    prom_port = free_port()
    # The router's own `namespace` label (the chatbot's) is kept: honor_labels, as the ServiceMonitor does.
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": [{
        "job_name": "routers", "honor_labels": True,
        "static_configs": [{"targets": [f"127.0.0.1:{admin_ports[ns]}"], "labels": {"namespace": ns}} for ns in ports]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def send(ns: str, n: int) -> None:
                for _ in range(n):
                    async with http.post(f"http://127.0.0.1:{ports[ns]}/v1/chat/completions",
                                         json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}) as r:
                        assert r.status == 200

            async def scraped(ns: str, at_least: float) -> bool:
                q = f'loraplane_router_requests_total{{namespace="{ns}",model="{MODEL}"}}'
                async with httpx.AsyncClient() as c:
                    try:
                        data = (await c.get(f"{url}/api/v1/query", params={"query": q})).json()["data"]["result"]
                    except (httpx.HTTPError, KeyError, ValueError):
                        return False
                return bool(data) and float(data[0]["value"][1]) >= at_least

            async def wait_scraped(ns: str, at_least: float) -> None:
                deadline = time.monotonic() + 60
                while not await scraped(ns, at_least):
                    assert time.monotonic() < deadline, f"Prometheus never scraped {ns}"
                    await asyncio.sleep(0.5)

            # One request first, so each series exists before the window's traffic (increase() needs it).
            for ns in ports:
                await send(ns, 1)
                await wait_scraped(ns, 1)
            since = datetime.now(UTC)
            await asyncio.sleep(2)
            await send("team-a", 20)
            await send("team-b", 200)
            await wait_scraped("team-a", 21)
            await wait_scraped("team-b", 201)
            await asyncio.sleep(2.5)  # a few more scrapes at the final values
            now = datetime.now(UTC)
            a = await PrometheusSource(url, namespace="team-a").figures(MODEL, ["stable"], since, now, None)
            b = await PrometheusSource(url, namespace="team-b").figures(MODEL, ["stable"], since, now, None)
            both = await PrometheusSource(url).figures(MODEL, ["stable"], since, now, None)
    finally:
        prom.terminate()
        prom.wait(10)
        for r in reversed(runners):
            await r.cleanup()
    # increase() extrapolates a little at the window's edges; the other namespace's 200 never count.
    assert 15 <= a["stable"].requests <= 40, a
    assert 150 <= b["stable"].requests <= 400, b
    assert both["stable"].requests > 150  # without the namespace matcher the two chatbots are summed
