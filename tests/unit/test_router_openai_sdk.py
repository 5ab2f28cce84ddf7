"""The official `openai` SDK against the router: what client code written for OpenAI sees.

Behind the router is an aiohttp stand-in for vLLM (the SDK against the router in front of the real
vLLM is in the e2e tests' reach; here it is the router's answers and errors that are under test).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest
from aiohttp import web
from loraplane_server.router.app import Router
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

TABLE = {"model": "support-bot", "baseModel": "base", "variants": [
    {"name": "tuned", "weight": 100, "adapterUri": "file:///a/tuned"}]}
MESSAGES = [{"role": "user", "content": "hi"}]


class Upstream:
    hold: asyncio.Event | None = None


async def vllm_stand_in(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if Upstream.hold is not None:
        await Upstream.hold.wait()
    if body.get("stream"):
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for i, piece in enumerate(["Hel", "lo"]):
            chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": "stop" if i else None}]}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": body["model"], "choices": [],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
        await out.write(f"data: {json.dumps(usage)}\n\n".encode() + b"data: [DONE]\n\n")
        return out
    return web.json_response({
        "id": "c1", "object": "chat.completion", "created": 1, "model": body["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}})


@pytest.fixture
async def router_url(tmp_path: Path):
    upstream = web.Application()
    Upstream.hold = None
    upstream.router.add_post("/v1/chat/completions", vllm_stand_in)
    runner = web.AppRunner(upstream)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners = [runner]
    up = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    (tmp_path / "routing.yaml").write_text(json.dumps(TABLE))
    watcher = TableWatcher(tmp_path / "routing.yaml")
    watcher.check()
    router = Router(watcher, UpstreamPool([up], max_in_flight=1, queue_size=0), RouterMetrics())
    runner = web.AppRunner(router.app(), **router.server_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1", Upstream
    for r in reversed(runners):
        await r.cleanup()


def client(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="user-key", max_retries=0)


async def test_chat_completion_names_the_public_model(router_url):
    url, _ = router_url
    raw = await client(url).chat.completions.with_raw_response.create(model="support-bot", messages=MESSAGES)
    answer = raw.parse()
    assert answer.choices[0].message.content == "Hello" and answer.model == "support-bot"
    assert raw.headers["x-loraplane-variant"] == "tuned"


async def test_streaming_chunks_and_no_injected_usage(router_url):
    url, _ = router_url
    stream = await client(url).chat.completions.create(model="support-bot", messages=MESSAGES, stream=True)
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert all(c.model == "support-bot" for c in chunks)
    assert all(c.usage is None for c in chunks)  # the router asked vLLM for usage; the client did not


async def test_models_list_and_retrieve(router_url):
    url, _ = router_url
    sdk = client(url)
    assert [m.id async for m in sdk.models.list()] == ["support-bot", "tuned"]
    assert (await sdk.models.retrieve("support-bot")).id == "support-bot"
    with pytest.raises(openai.NotFoundError) as err:
        await sdk.models.retrieve("nope")
    assert err.value.code == "model_not_found"


async def test_a_full_pool_is_a_rate_limit_error_with_retry_after(router_url):
    url, upstream = router_url
    upstream.hold = asyncio.Event()
    sdk = client(url)
    first = asyncio.create_task(sdk.chat.completions.create(model="support-bot", messages=MESSAGES))
    await asyncio.sleep(0.3)
    with pytest.raises(openai.RateLimitError) as err:
        await sdk.chat.completions.create(model="support-bot", messages=MESSAGES)
    assert err.value.response.headers["Retry-After"] == "1"
    upstream.hold.set()
    assert (await first).choices[0].message.content == "Hello"


async def test_a_bad_request_is_an_sdk_bad_request_error(router_url):
    url, _ = router_url
    with pytest.raises(openai.BadRequestError) as err:
        await client(url).chat.completions.create(model="support-bot", messages=MESSAGES, stream=True,
                                                  stream_options="yes")  # type: ignore[arg-type]
    assert err.value.code == "invalid_stream_options"
