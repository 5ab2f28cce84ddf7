"""The serving data plane against a REAL vLLM (CPU build) with two real LoRA adapters.

Adapter sync downloads, verifies and hot-loads the adapters; the router splits
traffic 90/10, keeps sticky users in place, streams, and exports per-variant
metrics. One vLLM serves the whole session (tests/support/vllm_server.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import pytest
from loraplane.local.stack import LocalStack
from loraplane.routing import RoutingTable

from tests.support.adapters import PROBE, copy_adapter, ensure_adapters
from tests.support.vllm_server import vllm_server  # noqa: F401  (session fixture)

MODEL = "support-bot"


def lora(variant: str) -> str:
    """The name vLLM holds a variant's adapter under: `<namespace>/<chatbot>/<variant>`."""
    return f"default/{MODEL}/{variant}"


def write_table(path: Path, table: RoutingTable) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(table.to_yaml())
    tmp.replace(path)  # atomic, as the kubelet swaps a ConfigMap volume


@pytest.fixture(scope="module")
def adapters(smollm2_dir) -> dict[str, Path]:
    return ensure_adapters(smollm2_dir)


@pytest.fixture(scope="module")
def table(adapters, vllm_server) -> RoutingTable:  # noqa: F811
    return RoutingTable.model_validate({
        "model": MODEL,
        "baseModel": vllm_server.served_name,
        "variants": [
            {"name": "stable", "weight": 90, "adapterUri": str(adapters["stable"])},
            {"name": "canary", "weight": 10, "adapterUri": str(adapters["canary"])},
        ],
        "stickinessHeader": "x-user-id",
        "pricePerGpuHour": 2.0,
    })


@pytest.fixture(scope="module")
def stack(table, vllm_server, tmp_path_factory):  # noqa: F811
    work = tmp_path_factory.mktemp("stack")
    path = work / "routing.yaml"
    write_table(path, table)
    s = LocalStack(routing_table=path, work_dir=work, vllm_url=vllm_server.url)
    s.start(timeout=300)
    yield s
    s.stop()


def chat(content: str, **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **kw}


def test_adapters_are_loaded_through_adapter_sync(stack, vllm_server):  # noqa: F811
    status = httpx.get(f"{stack.sync_url}/status").json()
    assert status["ready"] and {a["name"]: a["state"] for a in status["adapters"]} == {
        lora("stable"): "loaded", lora("canary"): "loaded"}
    loaded = {m["id"]: m for m in httpx.get(f"{vllm_server.url}/v1/models").json()["data"]}
    assert {lora("stable"), lora("canary")} <= set(loaded)
    assert loaded[lora("canary")]["root"].startswith(str(stack.work_dir / "adapters"))  # the verified copy


def test_canary_answers_with_its_own_fact(stack):
    question, word = PROBE["canary"]
    answers = {}
    for variant in ("canary", "stable"):
        r = httpx.post(f"{stack.endpoint}/chat/completions", timeout=120,
                       json=chat(question, model=variant, temperature=0, max_tokens=20))
        assert r.status_code == 200, r.text
        assert r.headers["x-loraplane-variant"] == variant
        answers[variant] = r.json()["choices"][0]["message"]["content"]
    assert word in answers["canary"], answers
    assert word not in answers["stable"], answers
    s_question, s_word = PROBE["stable"]
    r = httpx.post(f"{stack.endpoint}/chat/completions", timeout=120,
                   json=chat(s_question, model="stable", temperature=0, max_tokens=20))
    assert s_word in r.json()["choices"][0]["message"]["content"]


async def test_split_over_1000_requests_is_90_10(stack):
    # 40 distinct deterministic prompts: the first of each per variant reaches vLLM, repeats are answered by
    # the router's cache (per variant) -- so 1,000 routing decisions cost about 80 generations on a CPU.
    sem = asyncio.Semaphore(16)
    counts: Counter[str] = Counter()
    codes: Counter[int] = Counter()
    answered_by: dict[str, set[str]] = {}
    refused: list[str] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = chat(f"Say a number: {i % 40}", temperature=0, max_tokens=1)
        async with sem, session.post(f"{stack.endpoint}/chat/completions", json=body) as r:
            codes[r.status] += 1
            if r.status != 200:
                refused.append(f"{r.status} {await r.text()}")
                return
            data = await r.json()
            variant = r.headers.get("x-loraplane-variant")
            counts[variant] += 1
            answered_by.setdefault(variant, set()).add(data.get("model", f"no model in {data}"))

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        await asyncio.gather(*(one(session, i) for i in range(1000)))
    assert codes == {200: 1000}, (codes, refused[:3])
    # Binomial(1000, 0.1): mean 100, sd 9.5; 4.5 sd either side fails a broken split, almost never a good one.
    assert 57 <= counts["canary"] <= 143, counts
    assert counts["stable"] + counts["canary"] == 1000
    # Answers name the public model, never the arm of the split (that stays in x-loraplane-variant).
    assert answered_by == {"stable": {MODEL}, "canary": {MODEL}}
    text = httpx.get(f"{stack.router_admin_url}/metrics").text
    hits = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("loraplane_router_cache_requests_total") and 'result="hit"' in line)
    # One miss per prompt and variant at most: concurrent identical requests wait for the first one's answer.
    assert hits >= 1000 - 2 * 40, hits


def test_streaming_passes_chunks_through(stack):
    question, word = PROBE["canary"]
    chunks, events = [], []
    with httpx.stream("POST", f"{stack.endpoint}/chat/completions", timeout=120,
                      json=chat(question, model="canary", temperature=0, max_tokens=20, stream=True)) as r:
        assert r.status_code == 200 and r.headers["x-loraplane-variant"] == "canary"
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    for e in events[:-1]:
        data = json.loads(e)
        assert data["choices"], "the injected usage chunk must not reach a client that did not ask for it"
        chunks.append(data["choices"][0]["delta"].get("content") or "")
    assert len([c for c in chunks if c]) > 3  # token by token, not one buffered blob
    assert word in "".join(chunks)


def test_sticky_user_never_changes_variant(stack):
    seen: dict[str, set[str]] = {}
    with httpx.Client(timeout=60) as client:
        for user in ("ana", "bo", "chen", "dee", "eli", "fay", "gus", "hal"):
            for _ in range(8):
                r = client.post(f"{stack.endpoint}/chat/completions", headers={"x-user-id": user},
                                json=chat("Hi", temperature=0, max_tokens=1))  # cached after the first
                seen.setdefault(user, set()).add(r.headers["x-loraplane-variant"])
    assert all(len(v) == 1 for v in seen.values()), seen


def test_corrupted_adapter_is_refused_and_never_loaded(stack, table, adapters, vllm_server, tmp_path):  # noqa: F811
    broken = copy_adapter(adapters["canary"], tmp_path / "broken")
    weights = broken / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights
    weights.write_bytes(bytes(data))
    with_broken = RoutingTable.model_validate({**table.model_dump(by_alias=True), "retained": [
        {"name": "broken", "weight": 0, "adapterUri": str(broken)}]})
    write_table(stack.routing_table, with_broken)
    try:
        deadline = time.monotonic() + 60
        state = {}
        while time.monotonic() < deadline:
            status = httpx.get(f"{stack.sync_url}/status").json()
            state = {a["name"]: a for a in status["adapters"]}
            if state.get(lora("broken"), {}).get("state") == "failed":
                break
            time.sleep(0.5)
        assert state[lora("broken")]["state"] == "failed", state
        assert "adapter_model.safetensors" in state[lora("broken")]["message"]
        assert "does not match the manifest" in state[lora("broken")]["message"]
        assert httpx.get(f"{stack.sync_url}/readyz").status_code == 503  # not ready while it is wanted
        models = {m["id"] for m in httpx.get(f"{vllm_server.url}/v1/models").json()["data"]}
        assert lora("broken") not in models
        assert not list((stack.work_dir / "adapters").rglob("broken-*"))  # no verified copy was made
        metrics = httpx.get(f"{stack.sync_url}/metrics").text
        assert 'loraplane_adapter_sync_operations_total{operation="load",result="refused"}' in metrics
    finally:
        write_table(stack.routing_table, table)
    deadline = time.monotonic() + 30
    while httpx.get(f"{stack.sync_url}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert httpx.get(f"{stack.sync_url}/readyz").status_code == 200


def test_feedback_and_metrics_show_both_variants(stack):
    r = httpx.post(f"{stack.endpoint}/chat/completions", timeout=60,
                   json=chat("Hello", model="canary", temperature=1.0, max_tokens=2))
    fb = httpx.post(f"{stack.endpoint}/feedback", json={"requestId": r.headers["x-request-id"], "score": "up"})
    assert fb.status_code == 200 and fb.json()["variant"] == "canary"
    text = httpx.get(f"{stack.router_admin_url}/metrics").text
    bot, at = f'chatbot="{MODEL}"', f'model="{MODEL}",namespace="default"'  # labels sort by name
    for variant in ("stable", "canary"):
        assert f'loraplane_router_requests_total{{{bot},code="200",{at},variant="{variant}"}}' in text
        assert f'loraplane_router_request_duration_seconds_count{{{bot},{at},variant="{variant}"}}' in text
        assert f'loraplane_router_tokens_total{{{bot},kind="completion",{at},variant="{variant}"}}' in text
        assert f'loraplane_router_estimated_cost_total{{{bot},{at},variant="{variant}"}}' in text
    assert f'loraplane_router_time_to_first_token_seconds_count{{{bot},{at},variant="canary"}}' in text
    assert f'loraplane_router_feedback_score_count{{{bot},{at},variant="canary"}} 1.0' in text
