"""Per-chatbot API keys: a chatbot whose table lists `apiKeySha256` answers only requests bearing one of its keys.

The table holds only SHA-256 digests of the keys (high-entropy secrets, so a digest cannot be
reversed by guessing); the router hashes the presented bearer token and compares it with each
digest in constant time. Neither the token nor its digest is ever logged or put in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from loraplane.routing import RoutingTable

BEARER = "bearer "


def bearer_digest(headers: Mapping[str, str]) -> str | None:
    """Hex SHA-256 of the request's `Authorization: Bearer <key>` token, or None without one."""
    value = headers.get("authorization", "")
    if value[: len(BEARER)].lower() != BEARER or not value[len(BEARER):].strip():
        return None
    return hashlib.sha256(value[len(BEARER):].strip().encode()).hexdigest()


def accepts(table: RoutingTable, digest: str | None) -> bool:
    """True when `table` asks no key, or `digest` is one of its keys' (every digest compared, in constant time)."""
    if not table.api_key_sha256:
        return True
    if digest is None:
        return False
    found = False
    for expected in table.api_key_sha256:
        found |= hmac.compare_digest(expected.lower().encode(), digest.encode())
    return found


def visible_tables(tables: Iterable[RoutingTable], digest: str | None) -> list[RoutingTable]:
    """What a caller may list in /v1/models: the chatbots its key opens, else those that ask no key."""
    tables = list(tables)
    keyed = [t for t in tables if t.api_key_sha256 and accepts(t, digest)] if digest else []
    return keyed or [t for t in tables if not t.api_key_sha256]
