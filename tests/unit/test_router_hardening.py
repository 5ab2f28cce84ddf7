"""The router against hostile clients: admission before the body, body limits, slow clients, strict
parsing, forged feedback, per-credential caching, the public model name.

The upstream is an aiohttp stand-in for vLLM (only the router's own logic is under test here; the
router in front of the real vLLM is tests/e2e/test_serving_vllm.py). Slow clients are raw sockets.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from loraplane_server.router.app import Router
from loraplane_server.router.feedback import RequestIds
from loraplane_server.router.metrics import RouterMetrics
from loraplane_server.router.pool import UpstreamPool
from loraplane_server.table_watch import TableWatcher

TABLE = {
    "model": "bot",
    "baseModel": "base-llm",
    "variants": [
        {"name": "stable", "weight": 50, "adapterUri": "file:///a/stable"},
        {"name": "canary", "weight": 50, "adapterUri": "file:///a/canary"},
    ],
    "cache": {"enabled": True, "maxTemperature": 0.0},
}
CHAT = {"model": "bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


class Upstream:
    """A vLLM stand-in answering with `model` set to what it was asked for, as vLLM does."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict, dict]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        await self.release.wait()
        chunk = {"id": "c1", "object": "chat.completion.chunk", "model": body["model"],
                 "choices": [{"index": 0, "delta": {"content": "hi"}}]}
        if body.get("stream"):
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            await out.write(f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n".encode())
            await out.write(b"data: [DONE]\n\n")
            return out
        answer = {"id": "c1", "object": "chat.completion", "model": body["model"],
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                               "finish_reason": "stop"}]}
        return web.Response(text=json.dumps(answer, separators=(",", ":")), content_type="application/json")

    async def health(self, _r: web.Request) -> web.Response:
        return web.Response(text="ok")


async def _serve(app: web.Application, **options) -> tuple[web.AppRunner, str, int]:
    runner = web.AppRunner(app, **options)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}", port


@pytest.fixture
async def stack(tmp_path: Path):
    """start(**router options) -> (router url, router port, router, upstream)."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**options):
        upstream = Upstream()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", upstream.chat)
        app.router.add_get("/health", upstream.health)
        runner, up_url, _ = await _serve(app)
        runners.append(runner)
        path = tmp_path / "routing.yaml"
        path.write_text(json.dumps(TABLE))
        watcher = TableWatcher(path)
        watcher.check()
        router = Router(watcher, UpstreamPool([up_url]), RouterMetrics(), **options)
        runner, url, port = await _serve(router.app(), **router.server_options())
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        start.http = session
        return url, port, router, upstream

    yield start
    for s in sessions:
        await s.close()
    for r in reversed(runners):
        await r.cleanup()


async def _raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection; fails if it stays open longer than `seconds`."""
    return await asyncio.wait_for(reader.read(), timeout=seconds)


# ---------------------------------------------------------------- item 4: memory and slow clients


async def test_admission_refuses_before_the_body_is_read(stack):
    url, port, router, upstream = await stack(max_concurrent=1)
    upstream.release.clear()
    first = asyncio.create_task(stack.http.post(f"{url}/v1/chat/completions", json=CHAT))
    while not upstream.requests:
        await asyncio.sleep(0.01)
    # Headers announce 15 MiB, no body byte follows: the answer comes at once, without waiting for it.
    reader, writer = await _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Type: application/json\r\nContent-Length: 15728640\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 429") and b"Retry-After: 1" in head
    writer.close()
    upstream.release.set()
    assert (await first).status == 200
    text = router.metrics.exposition().decode()
    assert 'loraplane_router_rejected_requests_total{chatbot="bot",model="bot",namespace="default",reason="overloaded"} 1.0' in text


async def test_body_over_the_limit_is_refused_with_413(stack):
    url, _, router, upstream = await stack(max_body_bytes=64 * 1024)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 100_000}]}
    async with stack.http.post(f"{url}/v1/chat/completions", json=big) as r:
        assert r.status == 413 and (await r.json())["error"]["code"] == "body_too_large"

    async def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b" " * 16 * 1024

    async with stack.http.post(f"{url}/v1/chat/completions", data=chunked()) as r:
        assert r.status == 413
    assert not upstream.requests


async def test_a_stalled_body_is_answered_408_within_the_body_timeout(stack):
    _, port, router, upstream = await stack(body_timeout=0.5)
    reader, writer = await _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"mo")
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    assert head.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
    writer.close()
    assert router.admitted == 0 and not upstream.requests


async def test_trickled_headers_are_cut_off_and_healthz_stays_up(stack):
    url, port, router, _ = await stack(header_timeout=1.0)
    slow = []
    for _ in range(50):
        reader, writer = await _raw(port, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        slow.append((reader, writer))
    async with stack.http.get(f"{url}/healthz") as r:
        assert r.status == 200
    started = time.monotonic()

    async def trickle(reader, writer):
        for i in range(20):
            if reader.at_eof():
                return
            try:
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
            except ConnectionError:
                return
            await asyncio.sleep(0.3)

    await asyncio.gather(*(trickle(r, w) for r, w in slow[:5]))
    for reader, _writer in slow:
        await _closed_within(reader, 5)
    assert time.monotonic() - started < 5  # every one closed about header_timeout after it opened
    for _, writer in slow:
        writer.close()


# ---------------------------------------------------------------- item 11: strict parsing


@pytest.mark.parametrize("payload, headers, code", [
    (json.dumps({**CHAT, "stream": True, "stream_options": "yes"}).encode(), {}, "invalid_stream_options"),
    (b"[" * 100_000 + b"]" * 100_000, {}, "invalid_json"),
    (json.dumps(CHAT).encode(), {"Content-Type": "application/json; charset=x-unknown-42"}, "unsupported_charset"),
    (json.dumps({**CHAT, "temperature": float("nan")}).encode(), {}, "invalid_json"),
    (json.dumps({**CHAT, "model": 7}).encode(), {}, "invalid_model"),
])
async def test_malformed_requests_get_an_openai_400_and_are_counted(stack, payload, headers, code):
    url, _, router, upstream = await stack()
    headers = {"Content-Type": "application/json", **headers}
    async with stack.http.post(f"{url}/v1/chat/completions", data=payload, headers=headers) as r:
        assert r.status == 400
        error = (await r.json())["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == code and error["message"]
    assert not upstream.requests
    assert f'loraplane_router_rejected_requests_total{{chatbot="bot",model="bot",namespace="default",reason="{code}"}} 1.0' in \
        router.metrics.exposition().decode()


async def test_answers_name_the_public_model_and_keep_the_variant_in_a_header(stack):
    url, _, _, upstream = await stack()
    async with stack.http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        assert (await r.json())["model"] == "bot"
        assert r.headers["x-loraplane-variant"] in ("stable", "canary")
    async with stack.http.post(f"{url}/v1/chat/completions", json={**CHAT, "stream": True}) as r:
        text = await r.text()
        assert '"model":"bot"' in text and "stable" not in text and "canary" not in text
    assert upstream.requests[0][0]["model"] in ("default/bot/stable", "default/bot/canary")  # vLLM: the LoRA name


async def test_the_cache_is_per_credential(stack):
    url, _, _, upstream = await stack()
    deterministic = {**CHAT, "model": "stable", "temperature": 0}
    for auth in ("Bearer alice", "Bearer alice"):
        async with stack.http.post(f"{url}/v1/chat/completions", json=deterministic,
                                   headers={"Authorization": auth}) as r:
            assert r.status == 200
    assert len(upstream.requests) == 1  # alice's second request was a hit
    async with stack.http.post(f"{url}/v1/chat/completions", json=deterministic) as r:
        assert "x-loraplane-cache" not in r.headers  # anonymous: not alice's answer
    async with stack.http.post(f"{url}/v1/chat/completions", json=deterministic,
                               headers={"Authorization": "Bearer bob"}) as r:
        assert "x-loraplane-cache" not in r.headers


async def test_the_vllm_key_replaces_the_clients_credentials_upstream(stack):
    url, _, _, upstream = await stack(upstream_api_key="pool-secret")
    async with stack.http.post(f"{url}/v1/chat/completions", json=CHAT,
                               headers={"Authorization": "Bearer user-token"}) as r:
        assert r.status == 200
    assert upstream.requests[0][1]["Authorization"] == "Bearer pool-secret"


async def test_models_retrieve(stack):
    url, _, _, _ = await stack()
    async with stack.http.get(f"{url}/v1/models/bot") as r:
        assert r.status == 200 and (await r.json())["id"] == "bot"
    async with stack.http.get(f"{url}/v1/models/nope") as r:
        assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


# ---------------------------------------------------------------- item 2: forged feedback


async def test_forged_and_huge_feedback_ids_are_refused(stack):
    url, _, router, _ = await stack(request_ids=RequestIds(b"k" * 32))
    for rid in ("lp-forged-canary", "lp-" + "a" * (1024 * 1024)):
        async with stack.http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": 5}) as r:
            assert r.status in (400, 413)
    assert len(router.seen_feedback._ids) == 0
    assert 'feedback_score_count{chatbot="bot",model="bot",namespace="default"' not in router.metrics.exposition().decode()
    async with stack.http.post(f"{url}/v1/chat/completions", json=CHAT) as r:
        rid = r.headers["x-request-id"]
    async with stack.http.post(f"{url}/v1/feedback", json={"requestId": rid, "score": 5}) as r:
        assert r.status == 200
