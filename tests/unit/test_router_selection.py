"""Variant selection: weights, sticky consistent bucketing, pinning."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from loraplane.routing import RoutingTable
from loraplane_server.router.selection import UnknownModel, choose, sticky_variant


def table(weights: dict[str, int], **kw) -> RoutingTable:
    variants = [{"name": n, "weight": w, "adapterUri": f"file:///a/{n}"} for n, w in weights.items()]
    return RoutingTable.model_validate({"model": "bot", "baseModel": "base-llm", "variants": variants, **kw})


def test_weighted_split_follows_weights():
    t = table({"stable": 90, "canary": 10})
    rng = random.Random(7)
    counts = Counter(choose(t, "bot", None, rng).variant.name for _ in range(20_000))
    # 20,000 draws at p=0.1: sd = 42; allow 5 sd.
    assert abs(counts["canary"] - 2_000) < 5 * 42


def test_zero_weight_variant_gets_nothing_but_can_be_pinned():
    t = table({"stable": 100, "old": 0})
    rng = random.Random(1)
    assert {choose(t, "bot", None, rng).variant.name for _ in range(500)} == {"stable"}
    assert {choose(t, "bot", f"user-{i}", rng).variant.name for i in range(500)} == {"stable"}
    assert choose(t, "old", None, rng).variant.name == "old"


def test_pinning_unknown_and_disabled():
    t = table({"stable": 90, "canary": 10})
    rng = random.Random(1)
    assert choose(t, "canary", "u1", rng).how == "pinned"
    assert choose(t, None, None, rng).how == "weighted"  # no model: the public one
    with pytest.raises(UnknownModel, match="'gpt-4'"):
        choose(t, "gpt-4", None, rng)
    locked = table({"stable": 90, "canary": 10}, allowPinning=False)
    with pytest.raises(UnknownModel, match="canary"):
        choose(locked, "canary", None, rng)


def test_sticky_shares_match_weights():
    t = table({"a": 70, "b": 20, "c": 10})
    counts = Counter(sticky_variant(t.variants, f"user-{i}").name for i in range(20_000))
    for name, weight in (("a", 70), ("b", 20), ("c", 10)):
        expected = 20_000 * weight / 100
        assert abs(counts[name] - expected) < 5 * (expected * (1 - weight / 100)) ** 0.5, counts


def test_moving_ten_points_moves_about_ten_percent_of_users():
    users = [f"user-{i}" for i in range(10_000)]
    before = table({"stable": 90, "canary": 10})
    after = table({"stable": 80, "canary": 20})
    moved = [u for u in users if sticky_variant(before.variants, u).name != sticky_variant(after.variants, u).name]
    assert 0.08 < len(moved) / len(users) < 0.12
    # and only in the direction of the growing variant
    assert all(sticky_variant(after.variants, u).name == "canary" for u in moved)


@settings(max_examples=40, deadline=None)
@given(
    w=st.lists(st.integers(0, 100), min_size=3, max_size=3).filter(lambda x: sum(x) > 0),
    shift=st.integers(1, 30),
    src=st.integers(0, 2),
    dst=st.integers(0, 2),
)
def test_users_only_leave_shrinking_variants(w, shift, src, dst):
    names = ["x", "y", "z"]
    before = [int(round(100 * v / sum(w))) for v in w]
    before[0] += 100 - sum(before)
    if src == dst or before[src] == 0:
        return
    moved_weight = min(shift, before[src])
    after = list(before)
    after[src] -= moved_weight
    after[dst] += moved_weight
    t0 = table(dict(zip(names, before, strict=True)))
    t1 = table(dict(zip(names, after, strict=True)))
    users = [f"u{i}" for i in range(2_000)]
    moved = 0
    for u in users:
        a, b = sticky_variant(t0.variants, u).name, sticky_variant(t1.variants, u).name
        if a != b:
            moved += 1
            # a user only leaves the shrinking variant or joins the growing one; the third stays put
            assert a == names[src] or b == names[dst], (u, a, b)
    # at most about twice the moved weight (exactly it with two variants), binomial slack of 5 sd
    p = min(1.0, 2 * moved_weight / 100)
    assert moved <= 2_000 * p + 5 * (2_000 * p * (1 - p)) ** 0.5 + 2


def test_resolve_table_by_served_name_and_pins_that_name_their_chatbot():
    from loraplane.pool_routing import PoolRouting
    from loraplane_server.router.selection import pin_ids, resolve_table

    a = table({"stable": 100}, namespace="team-a", chatbot="alpha", model="alpha")
    b = table({"stable": 100}, namespace="team-b", chatbot="beta", model="be:ta")  # ':' in a served name
    shared = PoolRouting({"team-a.alpha.yaml": a, "team-b.beta.yaml": b})
    assert resolve_table(shared, "alpha") == (a, None)
    assert resolve_table(shared, "alpha:stable") == (a, "stable")
    assert resolve_table(shared, "be:ta") == (b, None)  # the exact served name wins over a pin
    assert resolve_table(shared, "be:ta:stable") == (b, "stable")
    for model in ("stable", None, "", "gamma:stable", "team-a/alpha/stable"):
        with pytest.raises(UnknownModel):
            resolve_table(shared, model)
    private = PoolRouting({"team-a.alpha.yaml": a})
    assert resolve_table(private, None) == (a, None)
    assert resolve_table(private, "stable") == (a, "stable")  # a bare pin on a pool of one, as before
    assert pin_ids(a, private=True) == ["stable"] and pin_ids(a, private=False) == ["alpha:stable"]
