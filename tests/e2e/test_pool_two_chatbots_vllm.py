"""Two chatbots of two namespaces on ONE real vLLM (CPU build) behind one router: a shared pool.

Chatbot A (team-a/support-bot) and chatbot B (team-b/sales-bot, served as "sales") serve two
random-weight peft adapters each (tests/support/random_adapters.py), each with its own greedy answer. The pool's tables are a directory with one file per chatbot, as the operator
mounts them, read by the real router and adapter sync. Each chatbot's answers come from its own
adapters, and no model name, pin or header sent for one reaches the other's. A canary on A rolls
back on errors injected for A's canary adapter (a reverse proxy between the router and vLLM, as in
test_canary_real_stack) while B's table, weights and answers stay as they were.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from loraplane.api.chatbotdeployment import RolloutSpec
from loraplane.canary import Action, LocalCanary, RouterMetricsSource, RoutingFileRouter
from loraplane.local.pool import write_pool_tables
from loraplane.local.stack import LocalStack
from loraplane.pool_routing import table_file
from loraplane.routing import RoutingTable, load_routing_table

from tests.e2e.test_canary_real_stack import FaultProxy
from tests.support.random_adapters import ensure_random_adapters
from tests.support.vllm_server import vllm_server  # noqa: F401  (session fixture)

pytestmark = pytest.mark.e2e

A, B = ("team-a", "support-bot"), ("team-b", "sales-bot")
B_SERVED = "sales"
SAY = [{"role": "user", "content": "Say something."}]


def tables(random_paths: list[Path], base: str) -> list[RoutingTable]:
    a = RoutingTable.model_validate({
        "model": A[1], "namespace": A[0], "chatbot": A[1], "baseModel": base, "cache": {"enabled": False},
        "variants": [{"name": "stable", "weight": 100, "adapterUri": str(random_paths[2])},
                     {"name": "canary", "weight": 0, "adapterUri": str(random_paths[3])}]})
    b = RoutingTable.model_validate({
        "model": B_SERVED, "namespace": B[0], "chatbot": B[1], "baseModel": base, "cache": {"enabled": False},
        "variants": [{"name": "r1", "weight": 100, "adapterUri": str(random_paths[0])},
                     {"name": "r2", "weight": 0, "adapterUri": str(random_paths[1])}]})
    return [a, b]


@pytest.fixture(scope="module")
def proxy(vllm_server):  # noqa: F811
    p = FaultProxy(vllm_server.url).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def pool(smollm2_dir, vllm_server, proxy, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("pool-two-chatbots")
    routing = work / "routing"
    write_pool_tables(routing, tables(ensure_random_adapters(smollm2_dir, 4), vllm_server.served_name))
    s = LocalStack(routing_table=routing, work_dir=work, vllm_url=proxy.url)
    s.start(timeout=300)
    yield s
    s.stop()


async def ask(client: httpx.AsyncClient, url: str, model: str, messages=SAY, **headers) -> httpx.Response:
    return await client.post(f"{url}/chat/completions", headers=headers, json={
        "model": model, "messages": messages, "max_tokens": 8, "temperature": 0})


def content(r: httpx.Response) -> str:
    return r.json()["choices"][0]["message"]["content"]


async def test_each_chatbot_answers_from_its_own_adapters_and_never_the_others(pool, vllm_server):  # noqa: F811
    async with httpx.AsyncClient(timeout=120) as client:
        # What each adapter says, asked of vLLM directly by its LoRA name.
        own = {}
        for ns, bot, variant in [(*A, "stable"), (*A, "canary"), (*B, "r1"), (*B, "r2")]:
            own[(bot, variant)] = content(await ask(client, f"{vllm_server.url}/v1", f"{ns}/{bot}/{variant}"))
        b_answers = {own[(B[1], "r1")], own[(B[1], "r2")]}
        assert len(set(own.values())) == 4, own

        r = await ask(client, pool.endpoint, A[1])
        assert r.status_code == 200 and r.headers["x-loraplane-variant"] == "stable"
        assert content(r) == own[(A[1], "stable")]
        r = await ask(client, pool.endpoint, f"{A[1]}:canary")  # A's own pin
        assert r.status_code == 200 and content(r) == own[(A[1], "canary")]
        r = await ask(client, pool.endpoint, B_SERVED)
        assert r.status_code == 200 and r.headers["x-loraplane-variant"] == "r1" and content(r) == own[(B[1], "r1")]
        r = await ask(client, pool.endpoint, f"{B_SERVED}:r2")
        assert r.status_code == 200 and content(r) == own[(B[1], "r2")]

        # Every way a request for A could try to reach B's adapters (and the reverse).
        attempts = [
            (f"{A[1]}:r1", {}), (f"{A[1]}:r2", {}), ("r1", {}), ("stable", {}), (f"{B[0]}/{B[1]}/r1", {}),
            (f"{A[0]}/{A[1]}/stable", {}), (f"{B_SERVED}:stable", {}), (f"{B_SERVED}:canary", {}),
            (A[1], {"x-loraplane-variant": "r1"}), (A[1], {"x-loraplane-chatbot": B[1]}),
            (A[1], {"x-loraplane-namespace": B[0], "x-loraplane-variant": "r2"}), (B[1], {}),
        ]
        for model, headers in attempts:
            r = await ask(client, pool.endpoint, model, **headers)
            if r.status_code != 200:
                assert 400 <= r.status_code < 500, (model, headers, r.status_code, r.text[:200])
                continue
            variant = r.headers["x-loraplane-variant"]
            if model.startswith(B_SERVED):
                assert variant in ("r1", "r2") and content(r) not in (own[(A[1], "stable")], own[(A[1], "canary")])
            else:
                assert variant in ("stable", "canary") and content(r) not in b_answers, (model, headers, variant)


async def test_a_canary_on_one_chatbot_rolls_back_while_the_other_is_untouched(pool, proxy):
    rollout = RolloutSpec.model_validate({
        "steps": [30, 60, 100], "interval": "10m", "minRequests": 8, "analysis": {"maxErrorRate": 0.05}})
    a_file = pool.routing_table / table_file(*A)
    b_file = pool.routing_table / table_file(*B)
    b_before = b_file.read_text()
    canary_lora = f"{A[0]}/{A[1]}/canary"
    proxy.failing.add(canary_lora)  # vLLM "fails" A's canary adapter only
    b_codes: list[int] = []
    try:
        canary = LocalCanary(rollout, stable="stable", canary="canary", model=A[1],
                             source=RouterMetricsSource(f"{pool.router_admin_url}/metrics"),
                             router=RoutingFileRouter(a_file))
        async with httpx.AsyncClient(timeout=120) as client:
            outcome = await canary.start()
            assert outcome.action is Action.ADVANCE
            await asyncio.sleep(2.5)  # the router reloads the tables every second
            decided = None
            for i in range(40):
                answers = await asyncio.gather(*(
                    ask(client, pool.endpoint, A[1], [{"role": "user", "content": f"Name a colour. ({i}.{j})"}])
                    for j in range(6)), ask(client, pool.endpoint, B_SERVED))
                b_codes.append(answers[-1].status_code)
                decided = await canary.tick()
                if decided.action in (Action.ROLLBACK, Action.PROMOTE):
                    break
            assert decided is not None and decided.action is Action.ROLLBACK, decided
            assert [r.metric for r in decided.verdict.failed] == ["errorRate"]
            assert {v.name: v.weight for v in load_routing_table(a_file).variants} == {"stable": 100, "canary": 0}
            await asyncio.sleep(2.5)
            after = [await ask(client, pool.endpoint, A[1]) for _ in range(4)]
            assert all(r.status_code == 200 and r.headers["x-loraplane-variant"] == "stable" for r in after)
            # B: the same file, every request answered, still from its own adapter.
            assert b_file.read_text() == b_before and set(b_codes) == {200}
            r = await ask(client, pool.endpoint, B_SERVED)
            assert r.status_code == 200 and r.headers["x-loraplane-variant"] == "r1"
    finally:
        proxy.failing.discard(canary_lora)
