"""Adapter affinity: which replica serves a request for a LoRA adapter (pure functions).

vLLM keeps `--max-loras` adapters in GPU slots per replica; a request for an adapter
that is not in a slot waits for a swap. Spreading an adapter's requests over every
replica makes each replica hold every adapter in turn. So each adapter is rendezvous-
hashed to `k` home replicas (highest-random-weight: adding or removing a replica moves
only the adapters homed there), and a request goes to its least-loaded home while that
one has a free slot (`capacity`) or is within `load_factor` times the pool's mean load
(bounded-load consistent hashing, Mirrokni et al.); only then, under pressure, does it
fall back to the least-loaded replica. The free-slot rule matters at low load: with few
requests outstanding, 1.25x the mean rounds to the mean itself and would spread every
adapter over every replica, which is what affinity is for avoiding.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

DEFAULT_AFFINITY_REPLICAS = 2
DEFAULT_LOAD_FACTOR = 1.25


def _score(adapter: str, replica: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{adapter}\0{replica}".encode(), digest_size=8).digest(), "big")


def home_replicas(adapter: str, replicas: Sequence[str], k: int) -> list[str]:
    """The `k` replicas an adapter is homed on, best first (rendezvous hashing)."""
    return sorted(replicas, key=lambda r: (_score(adapter, r), r), reverse=True)[: max(k, 0)]


def load_bound(loads: Mapping[str, int], load_factor: float) -> int:
    """Most outstanding requests a home replica may hold for a new request to still go there."""
    mean = (sum(loads.values()) + 1) / max(len(loads), 1)
    return max(1, math.ceil(load_factor * mean))


def place(adapter: str | None, loads: Mapping[str, int], k: int = DEFAULT_AFFINITY_REPLICAS,
          load_factor: float = DEFAULT_LOAD_FACTOR, capacity: int = 0) -> str:
    """The replica for one request: the least-loaded home of `adapter` within the load bound, else the least loaded.

    `loads` maps each candidate replica to its outstanding requests, `capacity` is the requests a
    replica runs at once (0: only the load bound counts); `adapter` None (the base
    model) or `k` 0 places by load alone. Ties go to the home ranked first, else to the order of `loads`.
    """
    if not loads:
        raise ValueError("no replica to place on")
    least = min(loads, key=lambda r: loads[r])
    if adapter is None or k <= 0 or len(loads) == 1:
        return least
    bound = max(load_bound(loads, load_factor), capacity)
    homes = [r for r in home_replicas(adapter, list(loads), k) if loads[r] < bound]
    if not homes:
        return least
    return min(homes, key=lambda r: loads[r])  # min keeps the first (best-ranked) of equal loads
