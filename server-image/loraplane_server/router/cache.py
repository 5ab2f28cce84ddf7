"""Response cache for deterministic requests: exact match on the normalised request, per variant.

Only complete, successful, non-streamed answers are stored. The key holds the
variant, so two variants never share an answer; entries expire after the TTL
and the least recently used go first when the size bound is reached.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from loraplane.routing import CacheSettings

# Fields that do not change the answer's content (or are rewritten by the router).
_IGNORED = frozenset({"model", "stream", "stream_options", "user", "request_id"})
# OpenAI's default temperature when a request gives none.
DEFAULT_TEMPERATURE = 1.0


def cache_key(variant: str, path: str, body: dict[str, Any]) -> str:
    """Key of a request: variant, endpoint and the request without fields that do not change the answer."""
    normalised = {k: v for k, v in body.items() if k not in _IGNORED and v is not None}
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{variant}\0{path}\0{text}".encode()).hexdigest()


def is_cacheable(body: dict[str, Any], settings: CacheSettings) -> bool:
    """Deterministic enough to cache: temperature within the bound, one choice, not streamed."""
    if not settings.enabled or body.get("stream"):
        return False
    if body.get("n", 1) not in (1, None):
        return False
    temperature = body.get("temperature")
    temperature = DEFAULT_TEMPERATURE if temperature is None else temperature
    return isinstance(temperature, (int, float)) and temperature <= settings.max_temperature


class ResponseCache:
    """TTL + LRU map from cache key to (status, content type, body)."""

    def __init__(self, max_entries: int, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes, str]] = OrderedDict()

    def configure(self, settings: CacheSettings) -> None:
        self.max_entries = settings.max_entries
        self.ttl = settings.ttl_seconds
        if not settings.enabled:
            self._entries.clear()
        self._evict()

    def get(self, key: str) -> tuple[bytes, str] | None:
        item = self._entries.get(key)
        if item is None:
            return None
        expires, body, content_type = item
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return body, content_type

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self._entries[key] = (self._clock() + self.ttl, body, content_type)
        self._entries.move_to_end(key)
        self._evict()

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
