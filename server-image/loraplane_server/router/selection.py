"""Which chatbot and variant serve a request: pinning, sticky consistent bucketing, or a weighted draw.

A request names its chatbot by `model` = the chatbot's served name (exact match); nothing
else (no header, no key) picks a chatbot. A pin names its chatbot too:
`model: "<served name>:<variant>"` resolves the variant only inside that chatbot. The bare
variant (`model: "<variant>"`) still pins on a pool that serves one chatbot (a private
pool), where it cannot be ambiguous; on a shared pool it is refused. So no model name
reaches another chatbot's variants.

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

from loraplane.pool_routing import PoolRouting
from loraplane.routing import RoutingTable, Variant

PIN_SEPARATOR = ":"


class UnknownModel(LookupError):
    """The request named a model this router does not serve (or may not pin)."""


@dataclass(frozen=True)
class Choice:
    variant: Variant
    how: str  # "pinned" | "sticky" | "weighted"
    # The model name the client asked for, which the answer carries back when pinned.
    asked: str | None = None


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


def pin_ids(table: RoutingTable, private: bool) -> list[str]:
    """The model ids that pin a variant of this chatbot (bare variant names only on a private pool)."""
    if not table.allow_pinning:
        return []
    names = [v.name for v in [*table.variants, *table.retained]]
    return names if private else [f"{table.model}{PIN_SEPARATOR}{n}" for n in names]


def resolve_table(pool: PoolRouting, model: str | None) -> tuple[RoutingTable, str | None]:
    """The chatbot a request's `model` names, and the variant it pins (None: not pinned).

    Raises UnknownModel when the name is no served name, `<served name>:<variant>`, or (on a
    private pool only) a bare variant. A served name that itself holds ':' matches exactly first.
    """
    only = pool.only
    if not model:
        if only is not None:
            return only, None
        raise UnknownModel("model is required on this router: it serves several chatbots")
    table = pool.by_served_name(model)
    if table is not None:
        return table, None
    served, sep, pin = model.rpartition(PIN_SEPARATOR)
    if sep and (table := pool.by_served_name(served)) is not None:
        return table, pin
    if only is not None:
        return only, model
    raise UnknownModel(f"model {model[:100]!r} is not served here")


def choose(table: RoutingTable, model: str | None, sticky_key: str | None, rng: random.Random,
           pin: str | None = None) -> Choice:
    """The variant of `table` for a request; `pin` (or a `model` other than the served name) pins one.

    Raises UnknownModel when the pin names nothing this chatbot serves or pinning is off.
    """
    if pin is None and model and model != table.model:
        pin = model
    if pin is not None:
        pinned = table.variant(pin)
        if pinned is None or not table.allow_pinning:
            allowed = [table.model, *pin_ids(table, private=model in (None, pin))]
            raise UnknownModel(f"model {(model or pin)[:100]!r} is not served here; use one of: {', '.join(allowed)}")
        return Choice(pinned, "pinned", model)
    if sticky_key:
        return Choice(sticky_variant(table.variants, sticky_key), "sticky")
    return Choice(weighted_variant(table.variants, rng), "weighted")
