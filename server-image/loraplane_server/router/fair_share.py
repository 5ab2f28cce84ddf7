"""Fair sharing of a pool's vLLM slots between chatbots (pure functions).

Each chatbot has a weight (`share`, from its `spec.priority`). While several chatbots
are active (a request in the last `active_window` seconds), chatbot i may hold at most
floor(slots * w_i / sum of active weights) slots (at least one) and queue at most its
share of the queue; a request beyond both answers 429 with Retry-After. A chatbot alone
may use the whole pool (work-conserving); when another becomes active the first one's
new requests wait until it is back within its share, and slots are handed to the
waiting chatbot furthest below its share. Capping slots, not only queue places, is what
keeps the others' latency: their requests find a free slot instead of queueing behind
the flood.
"""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_ACTIVE_WINDOW = 2.0


def share_limit(capacity: int, weight: int, active_weights: Mapping[str, int]) -> int:
    """Slots (or queue places) one chatbot of `weight` may hold while the `active_weights` chatbots are active."""
    total = sum(active_weights.values())
    if total <= 0 or capacity <= 0:
        return max(capacity, 0)
    return max(1, (capacity * weight) // total)


def next_tenant(waiting: Mapping[str, int], in_flight: Mapping[str, int], weights: Mapping[str, int]) -> str | None:
    """Which waiting chatbot gets a freed slot: the lowest in-flight per unit of weight (then by name)."""
    ready = [t for t, n in waiting.items() if n > 0]
    if not ready:
        return None
    return min(ready, key=lambda t: (in_flight.get(t, 0) / max(weights.get(t, 1), 1), t))
