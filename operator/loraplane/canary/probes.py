"""Probe-set exact match: known prompts sent through the router to one variant, answers compared.

The probes are requests like any other: they go through the router, pinned to the variant
by naming `<served name>:<variant>` as the model (the pin that names its chatbot, so it works
on a shared pool too) and carrying the chatbot's API key when it has one, so they test what
users get (adapter loaded, routing right).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx

from ..storage import filesystem
from .analysis import VariantFigures
from .sources import MetricsError, MetricsSource


@dataclass(frozen=True)
class Probe:
    messages: tuple[tuple[str, str], ...]  # (role, content) sent as the chat
    completion: str  # the expected answer


def _normalise(text: str) -> str:
    return " ".join(text.split())


def _chat(messages: object) -> bool:
    """A non-empty list of {"role": str, "content": str} objects."""
    return isinstance(messages, list) and bool(messages) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages)


def parse_probes(text: str, source: str = "probes") -> list[Probe]:
    """Probes from JSONL: {"prompt", "completion"} or {"messages": [..., {"role": "assistant", ...}]}."""
    probes = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise ValueError(f"{source}:{n}: not JSON: {err}") from err
        if isinstance(row, dict) and isinstance(row.get("prompt"), str) and isinstance(row.get("completion"), str):
            probes.append(Probe((("user", row["prompt"]),), row["completion"]))
        elif isinstance(row, dict) and _chat(row.get("messages")) and row["messages"][-1]["role"] == "assistant":
            msgs = tuple((m["role"], m["content"]) for m in row["messages"][:-1])
            probes.append(Probe(msgs, row["messages"][-1]["content"]))
        else:
            raise ValueError(f"{source}:{n}: a probe needs prompt and completion strings, "
                             "or messages ending with the assistant's answer")
    if not probes:
        raise ValueError(f"{source}: no probes")
    return probes


def load_probes(uri: str) -> list[Probe]:
    """Probes from a JSONL file at any fsspec URI."""
    fs, path = filesystem(uri)
    with fs.open(path, "r") as f:
        return parse_probes(f.read(), uri)


def pinned_model(served_name: str | None, variant: str) -> str:
    """The model name that pins `variant` of one chatbot: `<served name>:<variant>` (bare on a legacy router)."""
    return f"{served_name}:{variant}" if served_name else variant


async def probe_exact_match(client: httpx.AsyncClient, router_url: str, variant: str, probes: Sequence[Probe],
                            max_tokens: int = 256, *, served_name: str | None = None,
                            api_key: str | None = None) -> float:
    """Share of probes the variant answers exactly (whitespace-normalised), greedy decoding."""
    hits = 0
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for p in probes:
        body = {"model": pinned_model(served_name, variant),
                "messages": [{"role": r, "content": c} for r, c in p.messages],
                "temperature": 0, "max_tokens": max_tokens}
        try:
            resp = await client.post(f"{router_url.rstrip('/')}/v1/chat/completions", json=body, headers=headers)
            resp.raise_for_status()
            answer = resp.json()["choices"][0]["message"]["content"] or ""
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as err:
            raise MetricsError(f"probe to {variant} through {router_url} failed: {err}") from err
        hits += _normalise(answer) == _normalise(p.completion)
    return hits / len(probes)


class ProbedSource:
    """A `MetricsSource` that adds probe exact match to another source's figures, once per variant and window."""

    def __init__(self, inner: MetricsSource, router_url: str, probes: Sequence[Probe], *, timeout: float = 60.0,
                 cache: dict[tuple[str, datetime], float] | None = None, served_name: str | None = None,
                 api_key: str | None = None):
        self.inner, self.router_url, self.probes, self.timeout = inner, router_url, list(probes), timeout
        self.served_name, self._api_key = served_name, api_key
        # Results per (variant, window start): pass the same dict on every tick so a window is probed once.
        self._done = cache if cache is not None else {}

    async def baseline(self, model: str) -> dict[str, Any] | None:
        return await self.inner.baseline(model)

    async def figures(self, model: str, variants: Sequence[str], since: datetime, now: datetime,
                      baseline: Mapping[str, Any] | None) -> dict[str, VariantFigures]:
        figures = await self.inner.figures(model, variants, since, now, baseline)
        for key in [k for k in self._done if k[1] != since]:
            del self._done[key]  # an earlier window
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for v in variants:
                if (v, since) not in self._done:
                    self._done[(v, since)] = await probe_exact_match(
                        client, self.router_url, v, self.probes, served_name=self.served_name, api_key=self._api_key)
        return {v: replace(f, probe_exact_match=self._done.get((v, since))) for v, f in figures.items()}
