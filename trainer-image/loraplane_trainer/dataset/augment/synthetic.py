"""Synthetic examples and paraphrases from a stronger model behind any OpenAI-compatible endpoint.

Each request shows the model one training example and asks for a new wording of its
question (the answer is kept), or, when the reply is a JSON object with "prompt" and
"completion", takes it as a new example. Requests run `concurrency` at a time and are
retried on 429, 5xx and connection errors with exponential backoff (Retry-After honoured).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..api_keys import from_secrets_or_env
from ..example import Example
from ..text import stable_hash

API_KEY_ENV = "LORAPLANE_SYNTHETIC_API_KEY"
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
DEFAULT_TEMPLATE = (
    "Rewrite the following customer question in different words, as another customer might ask it. "
    "Keep its meaning so that the same answer still fits. Reply with the rewritten question only.\n\n"
    "Question: {prompt}\nAnswer it gets: {completion}"
)


class SyntheticError(RuntimeError):
    """The endpoint could not be used at all (unreachable, refused the key, every request failed)."""


@dataclass
class SyntheticStats:
    requested: int = 0
    received: int = 0
    failed: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)


def api_key(ref: Any, secrets: Mapping[str, str] | None) -> str | None:
    """The API key: from the secrets map ("name/key") or, in the pod, from LORAPLANE_SYNTHETIC_API_KEY."""
    return from_secrets_or_env(ref, secrets, API_KEY_ENV)


def _parse(content: str, source: Example) -> Example | None:
    text = content.strip().strip('"').strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("prompt"), str) and isinstance(obj.get("completion"), str):
            if not obj["prompt"].strip() or not obj["completion"].strip():
                return None
            return Example([{"role": "user", "content": obj["prompt"].strip()},
                            {"role": "assistant", "content": obj["completion"].strip()}],
                           source.intent, list(source.tags), "synthetic", source.file, source.line)
    for prefix in ("Question:", "Rewritten question:"):
        text = text.removeprefix(prefix).strip()
    return source.with_prompt(text, "synthetic")


async def _ask(client: httpx.AsyncClient, url: str, payload: dict, cfg: Any, stats: SyntheticStats) -> str | None:
    for attempt in range(cfg.max_retries + 1):
        delay = min(BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS)
        try:
            response = await client.post(url, json=payload)
        except httpx.TransportError as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if response.status_code == 200:
                try:
                    return response.json()["choices"][0]["message"]["content"]
                except (ValueError, KeyError, IndexError, TypeError):
                    stats.errors.append("reply is not an OpenAI chat completion")
                    return None
            if response.status_code in (401, 403):
                raise SyntheticError(f"synthetic endpoint {url} refused the API key ({response.status_code})")
            if response.status_code != 429 and response.status_code < 500:
                stats.errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                return None
            reason = f"HTTP {response.status_code}"
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = min(float(retry_after), MAX_BACKOFF_SECONDS)
        if attempt == cfg.max_retries:
            stats.errors.append(f"gave up after {attempt + 1} attempt(s): {reason}")
            return None
        stats.retries += 1
        await asyncio.sleep(delay * (1 + random.random() * 0.1))
    return None


async def generate(train: list[Example], cfg: Any, *, seed: int, key: str | None = None) -> tuple[list[Example], SyntheticStats]:
    """`cfg.count` synthetic examples seeded from `train` (a SyntheticAugmentation spec)."""
    stats = SyntheticStats(requested=cfg.count)
    if not train:
        return [], stats
    order = sorted(range(len(train)), key=lambda i: stable_hash(f"{seed}:synthetic:{train[i].origin}"))
    sources = [train[order[k % len(order)]] for k in range(cfg.count)]
    template = cfg.prompt_template or DEFAULT_TEMPLATE
    url = cfg.endpoint.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limit = asyncio.Semaphore(cfg.concurrency)

    async def one(k: int, ex: Example) -> Example | None:
        payload = {
            "model": cfg.model,
            "messages": [{"role": "user", "content": template.replace("{prompt}", ex.prompt)
                          .replace("{completion}", ex.completion)}],
            "temperature": cfg.temperature,
            "seed": seed + k,
        }
        async with limit:
            content = await _ask(client, url, payload, cfg, stats)
        if content is None:
            stats.failed += 1
            return None
        made = _parse(content, ex)
        if made is None:
            stats.failed += 1
            stats.errors.append("empty reply")
        return made

    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        results = await asyncio.gather(*(one(k, ex) for k, ex in enumerate(sources)))
    made = [r for r in results if r is not None]
    stats.received = len(made)
    if not made and cfg.count:
        detail = stats.errors[-1] if stats.errors else "no reply"
        raise SyntheticError(f"synthetic endpoint {cfg.endpoint}: every request failed ({detail})")
    return made, stats
