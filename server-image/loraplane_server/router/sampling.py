"""Opt-in sampling of live prompts and answers (spec.sampling), kept per chatbot for evaluation sessions.

Off unless a chatbot's routing table has `sampling`. A request is eligible when its client sent
`x-loraplane-sample-consent: yes` (consent Header) or always (consent Declared: the chatbot's
owner declares its users consented); eligible requests are kept at `rate`. A kept request's
answer is collected as it is relayed (whole or event by event) and stored when it ended well.

Everything is keyed by the chatbot's table `key` (`<namespace>.<chatbot>`), never by the served
name alone: on a shared pool two namespaces may each have a chatbot `bot`, and a served name can
move to another chatbot. The store is bounded: at most `maxSamples` per chatbot, none older than
the retention, none longer than MAX_SAMPLE_CHARS; turning sampling off, or the chatbot leaving
the pool, drops its samples. Feedback on a kept request is joined to it; feedback on any request
of a sampled chatbot is also logged by id (no text), so an export merged from every replica joins
feedback another replica took. Request ids name their chatbot (router/feedback.py), so feedback
is only ever joined within the chatbot that answered.

`GET /v1/samples?chatbot=<namespace>.<chatbot>` (admin port) exports one chatbot's samples and
feedback log to the bearer of that chatbot's samples token
(`loraplane.evaluation.traffic.samples_token`), and to nobody else.
"""

from __future__ import annotations

import hmac
import json
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from loraplane.api.chatbotdeployment import SamplingConsent
from loraplane.evaluation.traffic import (
    CONSENT_HEADER,
    CONSENT_VALUES,
    MAX_SAMPLE_CHARS,
    TrafficSample,
    samples_token,
)
from loraplane.pool_routing import PoolRouting
from loraplane.routing import RoutingTable, SamplingSettings


def _text(content: object) -> str | None:
    """A message's text: a string, or the text parts of a content list; None for anything else."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        parts = [p.get("text") for p in content if p.get("type") == "text"]
        return "".join(parts) if all(isinstance(t, str) for t in parts) else None
    return None


def asked(body: dict) -> tuple[list[dict[str, str]], str | None] | None:
    """(messages, prompt) of a request worth keeping; None when it is not plain text or too long."""
    messages = body.get("messages")
    if isinstance(messages, list):
        turns = []
        for m in messages:
            text = _text(m.get("content")) if isinstance(m, dict) else None
            if text is None or not isinstance(m.get("role"), str):
                return None
            turns.append({"role": m["role"][:32], "content": text})
        size = sum(len(t["content"]) for t in turns)
        return (turns, None) if turns and size <= MAX_SAMPLE_CHARS else None
    prompt = body.get("prompt")
    if isinstance(prompt, str) and len(prompt) <= MAX_SAMPLE_CHARS:
        return [], prompt
    return None


def _choice_text(data: dict, *keys: str) -> str:
    choice = (data.get("choices") or [{}])[0]
    for key in keys:
        value = choice.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            return value
    return ""


class PendingSample:
    """A kept request on its way: the answer is collected as it is relayed."""

    def __init__(self, chatbot: str, model: str, variant: str, request_id: str, messages: list,
                 prompt: str | None) -> None:
        self.chatbot, self.model, self.variant, self.request_id = chatbot, model, variant, request_id
        self.messages, self.prompt = messages, prompt
        self.parts: list[str] = []
        self.size = 0
        self.too_long = False

    def _add(self, text: str) -> None:
        self.size += len(text)
        self.too_long = self.too_long or self.size > MAX_SAMPLE_CHARS
        if not self.too_long:
            self.parts.append(text)

    def whole(self, data: bytes) -> None:
        """A whole JSON answer."""
        try:
            self._add(_choice_text(json.loads(data), "message", "text"))
        except (ValueError, AttributeError, IndexError, TypeError):
            self.too_long = True  # unreadable: not kept

    def events(self, events: bytes) -> None:
        """Complete SSE events of a streamed answer."""
        for event in events.split(b"\n\n"):
            event = event.strip()
            if not event.startswith(b"data: {"):
                continue
            try:
                self._add(_choice_text(json.loads(event[6:]), "delta", "text"))
            except (ValueError, AttributeError, IndexError, TypeError):
                continue


class Sampling:
    """The bounded per-chatbot store of samples and feedback, and its export endpoint."""

    def __init__(self, key: bytes, pool: Callable[[], PoolRouting], rng: random.Random | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._key, self._pool, self._rng, self._clock = key, pool, rng or random.Random(), clock
        # Both keyed by the chatbot's table key.
        self._samples: dict[str, OrderedDict[str, TrafficSample]] = {}
        self._feedback: dict[str, OrderedDict[str, float]] = {}

    def _table(self, chatbot: str) -> RoutingTable | None:
        return next((t for t in self._pool().served() if t.key == chatbot), None)

    def _settings(self, chatbot: str) -> SamplingSettings | None:
        table = self._table(chatbot)
        return table.sampling if table is not None else None

    def _drop(self, chatbot: str) -> None:
        self._samples.pop(chatbot, None)
        self._feedback.pop(chatbot, None)

    def on_table(self, pool: PoolRouting) -> None:
        """A new pool routing: chatbots that left it, or turned sampling off, lose what was kept."""
        sampled = {t.key for t in pool.served() if t.sampling is not None}
        for chatbot in {*self._samples, *self._feedback} - sampled:
            self._drop(chatbot)

    def begin(self, request: web.Request, table: RoutingTable, body: dict, request_id: str,
              variant: str) -> PendingSample | None:
        """A PendingSample when this request is kept, else None."""
        settings = table.sampling
        if settings is None:
            if table.key in self._samples:
                self._drop(table.key)  # sampling turned off: what was kept goes too
            return None
        if settings.consent is SamplingConsent.HEADER and \
                request.headers.get(CONSENT_HEADER, "").strip().lower() not in CONSENT_VALUES:
            return None
        if self._rng.random() >= settings.rate:
            return None
        found = asked(body)
        if found is None:
            return None
        return PendingSample(table.key, table.model, variant, request_id, *found)

    def _expire(self, chatbot: str, settings: SamplingSettings) -> OrderedDict[str, TrafficSample]:
        kept = self._samples.setdefault(chatbot, OrderedDict())
        oldest = self._clock() - settings.retention_seconds
        while kept and (len(kept) > settings.max_samples or next(iter(kept.values())).at.timestamp() < oldest):
            kept.popitem(last=False)
        return kept

    def finish(self, pending: PendingSample | None, code: str) -> None:
        """Store a kept request whose answer was relayed in full."""
        if pending is None or code != "200" or pending.too_long or not pending.parts:
            return
        settings = self._settings(pending.chatbot)
        if settings is None:
            return
        kept = self._samples.setdefault(pending.chatbot, OrderedDict())
        kept[pending.request_id] = TrafficSample(
            request_id=pending.request_id, chatbot=pending.chatbot, model=pending.model, variant=pending.variant,
            at=datetime.fromtimestamp(self._clock(), UTC), messages=pending.messages, prompt=pending.prompt,
            answer="".join(pending.parts))
        self._expire(pending.chatbot, settings)

    def feedback(self, table: RoutingTable, request_id: str, score: float) -> None:
        """Join feedback to its sample; log it by id while the chatbot is sampled. `table` is the chatbot
        the request id was issued for (the router verified it)."""
        settings = table.sampling
        if settings is None:
            return
        sample = self._samples.get(table.key, {}).get(request_id)
        if sample is not None:
            sample.feedback = score
        log = self._feedback.setdefault(table.key, OrderedDict())
        log[request_id] = score
        while len(log) > 4 * settings.max_samples:
            log.popitem(last=False)

    async def export(self, request: web.Request) -> web.Response:
        """GET /v1/samples?chatbot=<namespace>.<chatbot>: its samples and feedback log, to its token's bearer.

        Without `chatbot`, a private pool's only chatbot. The token is checked before anything else, so
        another token learns nothing, not even whether that chatbot exists or samples."""
        headers = {"Cache-Control": "no-store"}
        only = self._pool().only
        chatbot = request.query.get("chatbot") or (only.key if only else "")
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        if not token:
            return web.json_response({"error": {"message": "a bearer token is required", "type": "unauthorized"}},
                                     status=401, headers={**headers, "WWW-Authenticate": "Bearer"})
        if not chatbot or not hmac.compare_digest(token, samples_token(self._key, chatbot)):
            return web.json_response({"error": {"message": f"this token does not read {chatbot[:100]!r}'s samples",
                                                "type": "forbidden"}}, status=403, headers=headers)
        settings = self._settings(chatbot)
        if settings is None:
            self._drop(chatbot)
            return web.json_response({"error": {"message": f"sampling is off for {chatbot[:100]!r}",
                                                "type": "not_found"}}, status=404, headers=headers)
        kept = self._expire(chatbot, settings)
        body = {"chatbot": chatbot, "model": self._table(chatbot).model,
                "samples": [s.model_dump(by_alias=True, mode="json") for s in kept.values()],
                "feedback": [{"requestId": i, "score": v} for i, v in self._feedback.get(chatbot, {}).items()]}
        return web.json_response(body, headers=headers)
