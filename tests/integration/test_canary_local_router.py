"""A canary driven outside a cluster against the REAL router process: its /metrics feed the analysis,
its routing.yaml (reloaded live) receives the weights.

vLLM is replaced by a small OpenAI-shaped upstream here, so errors can be injected for one
variant; the real-vLLM stack is exercised by the serving tests.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from aiohttp import web
from loraplane.api.chatbotdeployment import RolloutSpec
from loraplane.canary import Action, LocalCanary, RouterMetricsSource, RoutingFileRouter
from loraplane.routing import RoutingTable, load_routing_table

ROLLOUT = RolloutSpec.model_validate({"steps": [20, 50], "interval": "1s", "minRequests": 15,
                                      "analysis": {"maxErrorRate": 0.05}})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """OpenAI-shaped answers; variants named in `failing` answer 500."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["model"] in self.failing:
            return web.json_response({"error": {"message": "injected failure"}}, status=500)
        return web.json_response({
            "id": "x", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        })

    async def ok(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_get("/health", self.ok)
        app.router.add_get("/v1/models", self.ok)
        return app


def table(variants: dict[str, int]) -> RoutingTable:
    return RoutingTable.model_validate({
        "model": "bot", "baseModel": "base-llm",
        "variants": [{"name": n, "weight": w, "adapterUri": f"file:///adapters/{n}"} for n, w in variants.items()],
        "cache": {"enabled": False},
    })


async def drive(canary: LocalCanary, router_url: str, deadline: float) -> Action:
    """Send traffic through the router and tick the canary until it promotes or rolls back."""
    await canary.start()
    async with httpx.AsyncClient(timeout=10) as client:
        while time.monotonic() < deadline:
            for _ in range(15):
                await client.post(f"{router_url}/v1/chat/completions",
                                  json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]})
            outcome = await canary.tick()
            if outcome.action in (Action.PROMOTE, Action.ROLLBACK):
                return outcome.action
            await asyncio.sleep(0.2)
    raise AssertionError(f"no decision in time; last state: {canary.state.message}")


@pytest.fixture
async def stack(tmp_path):
    upstream = Upstream()
    runner = web.AppRunner(upstream.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    up_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    routing = tmp_path / "routing.yaml"
    routing.write_text(table({"v1": 100, "v2": 0, "v3": 0}).to_yaml())
    port, admin_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "loraplane_server.router", "--routing-table", str(routing), "--upstream", up_url,
         "--port", str(port), "--admin-port", str(admin_port), "--host", "127.0.0.1", "--reload-interval", "0.1", "--health-interval", "0.5"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{url}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None:
                    raise AssertionError(f"router exited: {proc.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("router not ready")
        yield upstream, url, routing, f"http://127.0.0.1:{admin_port}"
    finally:
        proc.terminate()
        proc.wait(10)
        await runner.cleanup()


async def test_local_canary_promotes_then_rolls_back_against_the_real_router(stack):
    upstream, url, routing, admin_url = stack
    assert (await asyncio.to_thread(httpx.get, f"{url}/metrics")).status_code == 404  # not on the users' port
    source = RouterMetricsSource(f"{admin_url}/metrics")
    router = RoutingFileRouter(routing)

    good = LocalCanary(ROLLOUT, stable="v1", canary="v2", model="bot", source=source, router=router)
    assert await drive(good, url, time.monotonic() + 60) is Action.PROMOTE
    after = load_routing_table(routing)
    assert {v.name: v.weight for v in after.variants if v.weight} == {"v2": 100}
    # Start (20%), the step passed (50%), promotion.
    assert [o.action for o in good.history] == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE]

    upstream.failing.add("default/bot/v3")  # vLLM knows it by its LoRA name
    bad = LocalCanary(ROLLOUT, stable="v2", canary="v3", model="bot", source=source, router=router)
    assert await drive(bad, url, time.monotonic() + 60) is Action.ROLLBACK
    weights = {v.name: v.weight for v in load_routing_table(routing).variants}
    assert weights["v3"] == 0 and weights["v2"] == 100
    failed = [r for r in bad.state.analysis if r.passed is False]
    assert failed and failed[0].metric == "errorRate" and failed[0].canary > 0.05
    # Once the table is reloaded, the router sends nothing more to the rolled-back variant.
    await asyncio.sleep(0.5)
    async with httpx.AsyncClient(timeout=10) as client:
        answers = [await client.post(f"{url}/v1/chat/completions",
                                     json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]})
                   for _ in range(20)]
    assert all(a.status_code == 200 for a in answers)
