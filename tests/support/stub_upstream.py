"""A stub standing in for vLLM's OpenAI server where only the router's logic is under test.

It answers completions (or whatever `handler` decides) and records every request body and
header it got; the real vLLM is exercised by the e2e serving tests.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web


def completion(model: str, text: str = "hello") -> dict:
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stub:
    """A fake vLLM: records requests; `handler` decides the answer."""

    def __init__(self, handler=None) -> None:
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.handler = handler or self.ok
        self.cancelled = asyncio.Event()
        self.health_delay = 0.0  # seconds /health takes (a replica busy generating answers it late)

    async def ok(self, request: web.Request, body: dict) -> web.StreamResponse:
        return web.json_response(completion(body["model"]))

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        try:
            return await self.handler(request, body)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def health(self, _request: web.Request) -> web.Response:
        await asyncio.sleep(self.health_delay)
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._entry)
        app.router.add_post("/v1/completions", self._entry)
        app.router.add_get("/health", self.health)
        return app
