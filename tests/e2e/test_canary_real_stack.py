"""A canary of a REAL LoRA adapter on the real serving stack, driven by the operator's own canary logic.

Real vLLM (CPU build, the session's server) holds two trained adapters, loaded by
adapter sync; the real router splits traffic by routing.yaml, which `LocalCanary`
rewrites and the router reloads live; the analysis reads the router's /metrics.
Only the cluster is absent. vLLM never answers 5xx for a well-formed request, so
errors are injected by a real reverse proxy between the router and vLLM that
answers 500 for requests naming the failing variant and passes everything else
through (streaming included), as a broken adapter or a crashing replica would.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from loraplane import router_metrics as rm
from loraplane.api.chatbotdeployment import RolloutSpec
from loraplane.canary import (
    Action,
    LocalCanary,
    RouterMetricsSource,
    RoutingFileRouter,
    StepOutcome,
    write_routing_file,
)
from loraplane.local.stack import LocalStack
from loraplane.routing import RoutingTable, load_routing_table
from prometheus_client.parser import text_string_to_metric_families

from tests.support.adapters import PROBE, ensure_adapters
from tests.support.vllm_server import vllm_server  # noqa: F401  (session fixture)

MODEL = "support-bot"


def lora(variant: str) -> str:
    """The name vLLM (and the proxy in front of it) knows a variant's adapter by."""
    return f"default/{MODEL}/{variant}"
STABLE, CANARY = "support-v1", "support-v2"  # as the operator names versions of a followed FineTuneJob
# Headers that describe one hop, not the message; aiohttp sets its own.
HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "upgrade",
               "proxy-connection", "te", "trailer"}
_prompt_ids = itertools.count()


class FaultProxy:
    """A reverse proxy (aiohttp, in its own thread and event loop) that fails one variant's requests.

    Requests whose JSON body names a model in `failing` get a 500 in OpenAI's error shape;
    everything else (chat completions, streams, adapter loads, /health, /v1/models) goes to
    `target` and comes back chunk by chunk.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.failing: set[str] = set()
        self.injected: Counter[str] = Counter()
        self.passed = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> FaultProxy:
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(30)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _serve(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=None, sock_read=300))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        model = None
        if body and request.content_type == "application/json":
            try:
                data = json.loads(body)
                model = data.get("model") if isinstance(data, dict) else None
            except ValueError:
                pass
        if model is not None and model in self.failing:
            self.injected[model] += 1
            return web.json_response(
                {"error": {"message": f"injected failure for {model}", "type": "internal_error", "code": None}},
                status=500)
        self.passed += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with self._session.request(request.method, f"{self.target}{request.path_qs}",
                                         data=body or None, headers=headers) as upstream:
            out = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS})
            await out.prepare(request)
            async for chunk in upstream.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples `name` whose labels include `labels` in a Prometheus exposition."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def initial_table(adapters: dict[str, Path], base_model: str) -> RoutingTable:
    """Every user on the stable adapter, the candidate loaded with weight 0 (a ChatbotDeployment before its canary)."""
    return RoutingTable.model_validate({
        "model": MODEL,
        "baseModel": base_model,
        "variants": [
            {"name": STABLE, "weight": 100, "adapterUri": str(adapters["stable"])},
            {"name": CANARY, "weight": 0, "adapterUri": str(adapters["canary"])},
        ],
        # Every request must reach vLLM (and the proxy): no cached answers.
        "cache": {"enabled": False},
    })


@pytest.fixture(scope="module")
def adapters(smollm2_dir) -> dict[str, Path]:
    return ensure_adapters(smollm2_dir)


@pytest.fixture(scope="module")
def proxy(vllm_server):  # noqa: F811
    p = FaultProxy(vllm_server.url).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def stack(adapters, vllm_server, proxy, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("canary-stack")
    path = work / "routing.yaml"
    write_routing_file(path, initial_table(adapters, vllm_server.served_name))
    # The proxy stands where vLLM would: the router's upstream (adapter sync's loads pass through it).
    s = LocalStack(routing_table=path, work_dir=work, vllm_url=proxy.url)
    s.start(timeout=300)
    yield s
    s.stop()


class Traffic:
    """Users of the chatbot: distinct greedy prompts through the router, some streamed, optional feedback."""

    def __init__(self, client: httpx.AsyncClient, stack: LocalStack) -> None:
        self.client, self.stack = client, stack
        self.answers: list[tuple[int, str]] = []  # (status, variant)
        self.streamed: Counter[str] = Counter()

    async def reloads(self) -> float:
        text = (await self.client.get(f"{self.stack.router_admin_url}/metrics")).text
        return metric(text, rm.ROUTING_TABLE_RELOADS, result="ok")

    async def table_in_force(self, before: float, timeout: float = 30) -> None:
        """Wait until the router has loaded a table newer than the count `before`."""
        deadline = time.monotonic() + timeout
        while await self.reloads() <= before:
            assert time.monotonic() < deadline, "the router did not reload routing.yaml"
            await asyncio.sleep(0.2)

    async def one(self, *, stream: bool, feedback: bool) -> None:
        body = {"model": MODEL, "temperature": 0, "max_tokens": 4, "stream": stream,
                "messages": [{"role": "user", "content": f"Name a colour. ({next(_prompt_ids)})"}]}
        url = f"{self.stack.endpoint}/chat/completions"
        if stream:
            async with self.client.stream("POST", url, json=body) as r:
                lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
            if r.status_code == 200:
                assert lines and lines[-1] == "data: [DONE]", lines[-3:]
                self.streamed[r.headers["x-loraplane-variant"]] += 1
        else:
            r = await self.client.post(url, json=body)
        variant = r.headers["x-loraplane-variant"]
        self.answers.append((r.status_code, variant))
        if feedback and r.status_code == 200:
            fb = await self.client.post(f"{self.stack.endpoint}/feedback",
                                        json={"requestId": r.headers["x-request-id"], "score": "up"})
            assert fb.status_code == 200, fb.text

    async def round(self, n: int = 12, *, feedback: bool = False) -> None:
        await asyncio.gather(*(self.one(stream=i % 3 == 0, feedback=feedback) for i in range(n)))

    async def drive(self, canary: LocalCanary, *, feedback: bool = False, timeout: float = 240) -> list[StepOutcome]:
        """Start the canary, then send rounds of traffic and tick until it promotes or rolls back.

        Returns every outcome, the start's and each tick's. Every change of weights is waited
        for (the router's reload counter), so each round is routed by the table the canary last wrote.
        """
        before = await self.reloads()
        outcomes = [await canary.start()]
        await self.table_in_force(before)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.round(feedback=feedback)
            before = await self.reloads()
            outcomes.append(await canary.tick())
            if outcomes[-1].action in (Action.ADVANCE, Action.PROMOTE, Action.ROLLBACK):
                await self.table_in_force(before)
            if outcomes[-1].action in (Action.PROMOTE, Action.ROLLBACK):
                return outcomes
        raise AssertionError(f"no decision in {timeout:.0f}s; last state: {canary.state.message}")


async def reset(stack: LocalStack, adapters: dict[str, Path], served_name: str, traffic: Traffic) -> None:
    """Back to the table before any canary (the router reloads it if it changed)."""
    table = initial_table(adapters, served_name)
    if load_routing_table(stack.routing_table) != table:
        before = await traffic.reloads()
        write_routing_file(stack.routing_table, table)
        await traffic.table_in_force(before)


async def test_real_adapter_canary_promotes_on_good_figures(stack, adapters, proxy, vllm_server):  # noqa: F811
    rollout = RolloutSpec.model_validate({
        "steps": [30, 60, 100], "interval": "2s", "minRequests": 10, "promotionGracePeriod": "5m",
        "analysis": {"maxErrorRate": 0.05, "maxP95LatencySeconds": 120, "minFeedbackDelta": -0.1,
                     "minFeedbackCount": 5},
    })
    async with httpx.AsyncClient(timeout=180) as client:
        traffic = Traffic(client, stack)
        await reset(stack, adapters, vllm_server.served_name, traffic)
        canary = LocalCanary(rollout, stable=STABLE, canary=CANARY, model=MODEL,
                             source=RouterMetricsSource(f"{stack.router_admin_url}/metrics"),
                             router=RoutingFileRouter(stack.routing_table))
        history = await traffic.drive(canary, feedback=True)

        decisive = [o.action for o in canary.history]  # the outcomes that changed the weights
        # Started at 30%, passed it to 60%, passed that: 100 is the promotion itself.
        assert decisive == [Action.ADVANCE, Action.ADVANCE, Action.PROMOTE], decisive
        assert all(code == 200 for code, _ in traffic.answers), Counter(traffic.answers)
        assert {v for _, v in traffic.answers} == {STABLE, CANARY}
        assert set(traffic.streamed) == {STABLE, CANARY}  # streams went through the proxy for both
        assert not proxy.injected

        # The promotion was judged on every configured check, each passed with figures.
        checks = {r.metric: r for r in history[-1].verdict.results}
        assert set(checks) == {"errorRate", "p95Latency", "feedbackDelta"}
        assert all(r.passed for r in checks.values()), checks
        assert checks["errorRate"].canary == 0.0 and checks["feedbackDelta"].canary == 1.0

        # The canary is the new stable; the old stable is retiring, still loaded but taking no traffic.
        assert canary.state.stable == CANARY and canary.state.canary is None
        assert [r.name for r in canary.state.retiring] == [STABLE]
        table = load_routing_table(stack.routing_table)
        assert {v.name: v.weight for v in table.variants} == {CANARY: 100}
        assert [v.name for v in table.retained] == [STABLE]
        status = (await client.get(f"{stack.sync_url}/status")).json()
        assert {a["name"]: a["state"] for a in status["adapters"]} == {lora(STABLE): "loaded", lora(CANARY): "loaded"}

        # Users now get the promoted adapter, with what it was trained on.
        question, word = PROBE["canary"]
        r = await client.post(f"{stack.endpoint}/chat/completions", json={
            "model": MODEL, "temperature": 0, "max_tokens": 20,
            "messages": [{"role": "user", "content": question}]})
        assert r.status_code == 200 and r.headers["x-loraplane-variant"] == CANARY
        assert word in r.json()["choices"][0]["message"]["content"]


async def test_real_adapter_canary_rolls_back_on_injected_errors(stack, adapters, proxy, vllm_server):  # noqa: F811
    # A long interval: a step could never pass in this test, so only a failed check can end the canary.
    rollout = RolloutSpec.model_validate({
        "steps": [30, 60, 100], "interval": "10m", "minRequests": 10, "analysis": {"maxErrorRate": 0.05},
    })
    async with httpx.AsyncClient(timeout=180) as client:
        traffic = Traffic(client, stack)
        await reset(stack, adapters, vllm_server.served_name, traffic)
        before_500 = metric((await client.get(f"{stack.router_admin_url}/metrics")).text, rm.REQUESTS,
                            variant=CANARY, code="500")
        proxy.failing.add(lora(CANARY))  # vLLM knows it by its LoRA name
        try:
            canary = LocalCanary(rollout, stable=STABLE, canary=CANARY, model=MODEL,
                                 source=RouterMetricsSource(f"{stack.router_admin_url}/metrics"),
                                 router=RoutingFileRouter(stack.routing_table))
            history = await traffic.drive(canary)
            injected = proxy.injected[lora(CANARY)]

            # Rolled back at the first tick with enough canary requests, within the first step's interval:
            # every tick before it was waiting for requests, none waited for the interval.
            assert history[0].action is Action.ADVANCE and history[-1].action is Action.ROLLBACK
            waits = history[1:-1]
            assert all(o.action is Action.WAIT and o.verdict.results[0].metric == "requests" for o in waits), [
                o.reason for o in waits]
            assert canary.state.step == 0 and canary.state.rolled_back and canary.state.canary_weight == 0

            # The reason names the failed metric and its figure: every canary answer was an injected 500.
            failed = history[-1].verdict.failed
            assert [r.metric for r in failed] == ["errorRate"]
            assert failed[0].canary == 1.0 and failed[0].stable == 0.0 and failed[0].limit == 0.05
            assert history[-1].reason.startswith("errorRate 1 above by 0.95 limit 0.05"), history[-1].reason
            assert "rolled back" in canary.state.message and "errorRate" in canary.state.message

            # The router counted each injected failure against the canary, and only there.
            text = (await client.get(f"{stack.router_admin_url}/metrics")).text
            assert metric(text, rm.REQUESTS, variant=CANARY, code="500") - before_500 == injected >= 10
            assert {v for code, v in traffic.answers if code == 500} == {CANARY}
            assert all(code == 200 for code, v in traffic.answers if v == STABLE)

            # Weight 0 in routing.yaml and in force: no user reaches the canary any more.
            table = load_routing_table(stack.routing_table)
            assert {v.name: v.weight for v in table.variants} == {STABLE: 100, CANARY: 0}
            traffic.answers.clear()
            await traffic.round(20)
            assert traffic.answers == [(200, STABLE)] * 20, Counter(traffic.answers)
            assert proxy.injected[lora(CANARY)] == injected
        finally:
            proxy.failing.discard(lora(CANARY))
