"""Canary step math: pure functions, in the spirit of Flagger's nextStepWeight."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta

_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """A Kubernetes-style duration ("90s", "10m", "1h30m", "500ms") as a timedelta."""
    parts = _DURATION_PART.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 10m, 1h30m)")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def step_weight(steps: Sequence[int], step: int) -> int:
    """Canary weight at step index `step` (clamped to the list)."""
    if not steps:
        raise ValueError("rollout.steps is empty")
    return steps[max(0, min(step, len(steps) - 1))]


def next_step(steps: Sequence[int], step: int) -> int | None:
    """Index of the step after `step`, or None when passing `step` promotes.

    A step of weight 100 is never run as a step: reaching it is the promotion itself,
    because the stable variant would get no traffic left to compare against.
    """
    following = step + 1
    if following >= len(steps) or steps[following] >= 100:
        return None
    return following


def split_weights(base: Mapping[str, int], stable: str, canary: str, canary_weight: int) -> dict[str, int]:
    """The traffic split with `canary_weight` percent of the stable variant's share moved to the canary.

    `base` is the split without a canary (e.g. spec.traffic, or {stable: 100}); other variants in
    it (a static A/B against `base`) keep their share. The result sums to what `base` sums to.
    """
    if not 0 <= canary_weight <= 100:
        raise ValueError(f"canary weight must be within 0..100, got {canary_weight}")
    weights = {name: w for name, w in base.items() if name != canary}
    share = weights.get(stable, 0) + base.get(canary, 0)
    moved = int(share * canary_weight / 100 + 0.5)
    if canary_weight > 0 and share > 0:
        moved = max(moved, 1)  # a canary that gets no requests can never be judged
    weights[stable] = share - moved
    weights[canary] = moved
    return weights
