"""Which variant serves a request: pinning, sticky consistent bucketing, or a weighted draw.

Sticky users are placed by weighted rendezvous hashing: each variant scores
`-weight / ln(u)` with `u` a hash of (variant, user) in (0, 1), and the highest
score wins. Each variant gets its weight's share of users, and when weights
move, only users of shrinking variants move (to growing ones): moving 10 points
moves about 10% of users, whatever the number or order of variants.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from loraplane.routing import RoutingTable, Variant


class UnknownModel(LookupError):
    """The request named a model this router does not serve (or may not pin)."""


@dataclass(frozen=True)
class Choice:
    variant: Variant
    how: str  # "pinned" | "sticky" | "weighted"


def unit_hash(variant: str, key: str) -> float:
    """A stable hash of (variant, key) mapped into the open interval (0, 1)."""
    digest = hashlib.blake2b(f"{variant}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def sticky_variant(variants: list[Variant], key: str) -> Variant:
    """The variant a user key lands on (weighted rendezvous hashing)."""
    best: Variant | None = None
    best_score = -math.inf
    for v in variants:
        if v.weight <= 0:
            continue
        score = -v.weight / math.log(unit_hash(v.name, key))
        if score > best_score:
            best, best_score = v, score
    if best is None:
        raise ValueError("no variant has weight")
    return best


def weighted_variant(variants: list[Variant], rng: random.Random) -> Variant:
    """A draw by weight (weights are integer percents summing to 100)."""
    point = rng.random() * 100
    for v in variants:
        point -= v.weight
        if point < 0 and v.weight > 0:
            return v
    return next(v for v in reversed(variants) if v.weight > 0)  # float rounding at the very top


def choose(table: RoutingTable, model: str | None, sticky_key: str | None, rng: random.Random) -> Choice:
    """Resolve the request's `model` to a variant; raises UnknownModel when it names nothing served."""
    if model and model != table.model:
        pinned = table.variant(model)
        if pinned is None or not table.allow_pinning:
            allowed = [table.model] + ([v.name for v in table.variants] if table.allow_pinning else [])
            raise UnknownModel(f"model {model!r} is not served here; use one of: {', '.join(allowed)}")
        return Choice(pinned, "pinned")
    if sticky_key:
        return Choice(sticky_variant(table.variants, sticky_key), "sticky")
    return Choice(weighted_variant(table.variants, rng), "weighted")
