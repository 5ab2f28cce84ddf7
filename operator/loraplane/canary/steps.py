"""Canary step math: pure functions, in the spirit of Flagger's nextStepWeight."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..api.base import parse_duration

__all__ = ["next_step", "parse_duration", "split_weights", "step_weight"]


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
