"""Back-translation (the seed's third augmentation): each training prompt is translated into a pivot
language and back by a model behind any OpenAI-compatible endpoint, which rewords it while keeping its
meaning. The answer is never touched; like every augmentation it is filtered against the validation
set (see filter.py), so a back-translation never becomes a copy of a validation prompt."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..api_keys import from_secrets_or_env
from ..example import Example
from ..text import stable_hash
from .synthetic import SyntheticError, SyntheticStats, _ask

API_KEY_ENV = "LORAPLANE_BACKTRANSLATION_API_KEY"
TEMPLATE = "Translate the following text into {language}. Reply with the translation only, nothing else.\n\n{text}"


@dataclass
class BackTranslationStats(SyntheticStats):
    languages: dict[str, int] = field(default_factory=dict)


def api_key(ref: Any, secrets: Mapping[str, str] | None) -> str | None:
    """The API key: from the secrets map ("name/key") or, in the pod, from LORAPLANE_BACKTRANSLATION_API_KEY."""
    return from_secrets_or_env(ref, secrets, API_KEY_ENV)


def _clean(content: str | None) -> str | None:
    if content is None:
        return None
    text = content.strip().strip('"“”').strip()
    return text or None


async def back_translate(train: list[Example], cfg: Any, *, seed: int,
                         key: str | None = None) -> tuple[list[Example], BackTranslationStats]:
    """Up to `cfg.count` reworded training examples, through `cfg.pivot_languages` in turn."""
    stats = BackTranslationStats(requested=min(cfg.count, len(train) * len(cfg.pivot_languages)))
    if not train or not stats.requested:
        return [], stats
    order = sorted(range(len(train)), key=lambda i: stable_hash(f"{seed}:back-translation:{train[i].origin}"))
    jobs = [(train[order[k % len(order)]], cfg.pivot_languages[(k // len(order)) % len(cfg.pivot_languages)])
            for k in range(stats.requested)]
    url = cfg.endpoint.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limit = asyncio.Semaphore(cfg.concurrency)

    async def translate(client: httpx.AsyncClient, text: str, language: str, k: int) -> str | None:
        payload = {"model": cfg.model, "temperature": cfg.temperature, "seed": seed + k,
                   "messages": [{"role": "user", "content": TEMPLATE.format(language=language, text=text)}]}
        async with limit:
            return _clean(await _ask(client, url, payload, cfg, stats))

    async def one(client: httpx.AsyncClient, k: int, ex: Example, language: str) -> Example | None:
        there = await translate(client, ex.prompt, language, k)
        back = await translate(client, there, "English", k) if there else None
        if back is None:
            stats.failed += 1
            return None
        stats.languages[language] = stats.languages.get(language, 0) + 1
        return ex.with_prompt(back, "back-translation")

    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        results = await asyncio.gather(*(one(client, k, ex, lang) for k, (ex, lang) in enumerate(jobs)))
    made = [r for r in results if r is not None]
    stats.received = len(made)
    if not made:
        detail = stats.errors[-1] if stats.errors else "no reply"
        raise SyntheticError(f"back-translation endpoint {cfg.endpoint}: every request failed ({detail})")
    return made, stats
