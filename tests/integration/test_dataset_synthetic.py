"""Synthetic augmentation against a real HTTP server on localhost that speaks the OpenAI chat protocol.

The server stands in for the stronger model: it answers /v1/chat/completions with a new
wording of the question it is shown, and fails on purpose (429, then 500) so the client
has to retry through both.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aiohttp import web
from loraplane.api import FineTuneJobSpec
from loraplane_trainer.dataset import SyntheticError, prepare
from loraplane_trainer.dataset.augment import synthetic

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "examples" / "data" / "support.jsonl"
WORDINGS = ["Could you explain this to me: {q}", "A customer asks: {q}", "I need help. {q}"]


class FakeModel:
    """The protocol side of an OpenAI-compatible server; `script` gives the status of the first requests."""

    def __init__(self, script: list[int], key: str = "test-key-123"):
        self.script, self.key = list(script), key
        self.requests: list[dict] = []
        self.statuses: list[int] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        status = self.script.pop(0) if self.script else 200
        if request.headers.get("Authorization") != f"Bearer {self.key}":
            status = 401
        self.statuses.append(status)
        if status != 200:
            headers = {"Retry-After": "0"} if status == 429 else {}
            return web.json_response({"error": {"message": "try later"}}, status=status, headers=headers)
        question = re.search(r"Question: (.*)\n", body["messages"][0]["content"]).group(1)
        n = len(self.requests)
        if n % 5 == 0:  # now and then a whole new example as JSON
            content = json.dumps({"prompt": f"Brand-new question number {n} about storage?",
                                  "completion": "A new answer from the bigger model."})
        else:
            content = WORDINGS[n % len(WORDINGS)].format(q=question.lower())
        return web.json_response({
            "id": f"chatcmpl-{n}", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        })


@contextmanager
def serve(model: FakeModel) -> Iterator[str]:
    """Run the server in its own thread and event loop (prepare() runs its own loop)."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    async def start() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", model.chat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"], holder["port"] = runner, site._server.sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield f"http://127.0.0.1:{holder['port']}/v1"
    finally:
        asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def spec(endpoint: str, count: int, **synthetic_fields) -> FineTuneJobSpec:
    return FineTuneJobSpec.model_validate({
        "baseModel": {"name": "m"},
        "dataset": {"uri": str(SUPPORT)},
        "augmentation": {"synthetic": {"endpoint": endpoint, "model": "big-model", "count": count,
                                       "apiKeySecretRef": {"name": "llm", "key": "key"}, "concurrency": 3,
                                       **synthetic_fields}},
        "output": {"uri": "file:///x"},
    })


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(synthetic, "BACKOFF_SECONDS", 0.01)


def test_synthetic_examples_retry_through_429_and_500(tmp_path):
    model = FakeModel(script=[429, 500])
    with serve(model) as endpoint:
        prepared = prepare(spec(endpoint, 20), tmp_path, secrets={"llm/key": "test-key-123"})
    assert model.statuses[:2] == [429, 500] and model.statuses.count(200) == 20
    assert all(r["model"] == "big-model" for r in model.requests)
    report = prepared.report
    assert report.stats["synthetic"] == {"requested": 20, "received": 20, "failed": 0, "retries": 2}
    added = [json.loads(x) for x in prepared.train_path.read_text().splitlines()]
    added = [r for r in added if r["source"] == "synthetic"]
    assert len(added) == report.augmented["synthetic"] > 0
    assert sum(report.augmentation_rejected.values()) + len(added) == 20
    assert any(r["messages"][-1]["content"] == "A new answer from the bigger model." for r in added)
    validation = prepared.validation_path.read_text()
    assert all(r["messages"][0]["content"] not in validation for r in added)
    assert not report.has_errors


def test_api_key_from_the_pod_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LORAPLANE_SYNTHETIC_API_KEY", "env-key-456")
    model = FakeModel(script=[], key="env-key-456")
    with serve(model) as endpoint:
        prepared = prepare(spec(endpoint, 3), tmp_path)
    assert prepared.report.stats["synthetic"]["received"] == 3


def test_a_refused_key_or_a_dead_endpoint_raises_a_clear_error(tmp_path):
    with serve(FakeModel(script=[])) as endpoint, pytest.raises(SyntheticError, match="refused the API key"):
        prepare(spec(endpoint, 2), tmp_path, secrets={"llm/key": "wrong"})
    with serve(FakeModel(script=[503] * 10)) as endpoint, pytest.raises(SyntheticError, match="every request failed"):
        prepare(spec(endpoint, 2, maxRetries=1), tmp_path, secrets={"llm/key": "test-key-123"})


def test_some_failures_become_a_warning(tmp_path):
    model = FakeModel(script=[503, 503])
    with serve(model) as endpoint:
        prepared = prepare(spec(endpoint, 4, maxRetries=1, concurrency=1), tmp_path,
                           secrets={"llm/key": "test-key-123"})
    finding = prepared.report.finding("synthetic")
    assert finding.severity == "warning" and finding.count == 1 and "HTTP 503" in finding.message
