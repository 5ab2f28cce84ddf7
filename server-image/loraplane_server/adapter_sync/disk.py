"""The adapter volume's budget: sizes, and which adapters leave the disk to make room (pure decisions).

Adapter sync keeps verified copies on a bounded local volume. When a new
adapter needs room, the least recently used ones leave first; an adapter vLLM
is running or queueing right now never does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kMGT]i?|)\s*$")


def parse_size(text: str) -> int:
    """Bytes of a Kubernetes-style quantity: `500Mi`, `2Gi`, `1G`, `1048576`; ValueError otherwise."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r} (write bytes, or a number with k, M, G, Ki, Mi or Gi)")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


@dataclass(frozen=True)
class OnDisk:
    """One verified adapter copy on the volume."""

    name: str
    size: int
    last_used: float  # seconds since the epoch; 0 when never seen in use


def evictions(on_disk: Iterable[OnDisk], need: int, budget: int | None, busy: frozenset[str] = frozenset()
              ) -> list[str] | None:
    """The adapters to delete, least recently used first, so `need` more bytes fit the budget.

    None when they cannot fit even with every idle adapter gone (the adapter is larger than the
    budget, or the busy ones fill it). An empty list: it fits as things are.
    """
    if budget is None:
        return []
    held = list(on_disk)
    free = budget - sum(a.size for a in held)
    chosen: list[str] = []
    for a in sorted((a for a in held if a.name not in busy), key=lambda a: (a.last_used, a.name)):
        if free >= need:
            break
        chosen.append(a.name)
        free += a.size
    return chosen if free >= need else None
