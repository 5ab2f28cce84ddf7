"""Canary step math and analysis: unit and property tests."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from loraplane.api.chatbotdeployment import CanaryAnalysis
from loraplane.canary import (
    Decision,
    VariantFigures,
    histogram_quantile,
    judge,
    next_step,
    parse_duration,
    split_weights,
    step_weight,
)

steps_st = st.lists(st.integers(1, 100), min_size=1, max_size=20, unique=True).map(sorted)
figures_st = st.builds(
    VariantFigures,
    requests=st.integers(0, 10_000).map(float),
    errors=st.just(0.0),
    p95_latency_seconds=st.one_of(st.none(), st.floats(0, 60)),
    feedback_mean=st.one_of(st.none(), st.floats(0, 1)),
    feedback_count=st.integers(0, 1000).map(float),
)


def test_parse_duration():
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    for bad in ("", "10", "m", "10x", "1h 30m"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)


def test_next_step_treats_100_as_promotion():
    steps = [5, 25, 50, 100]
    assert [step_weight(steps, i) for i in range(4)] == steps
    assert next_step(steps, 0) == 1
    assert next_step(steps, 1) == 2
    assert next_step(steps, 2) is None  # 100 is the promotion, not a step
    assert next_step([10, 50], 1) is None
    assert next_step([10, 50], 0) == 1


@given(steps_st)
def test_walking_the_steps_ends_in_promotion_with_rising_weights(steps):
    i, seen = 0, [step_weight(steps, 0)]
    while (n := next_step(steps, i)) is not None:
        assert step_weight(steps, n) > step_weight(steps, i)
        assert step_weight(steps, n) < 100
        i = n
        seen.append(step_weight(steps, i))
    assert len(seen) <= len(steps)


def test_split_weights_moves_the_stable_share_only():
    assert split_weights({"v2": 100}, "v2", "v3", 25) == {"v2": 75, "v3": 25}
    # A static A/B against base keeps base's share; the canary takes from the stable's.
    assert split_weights({"v2": 80, "base": 20}, "v2", "v3", 50) == {"v2": 40, "base": 20, "v3": 40}
    # A tiny share still sends the canary something, or it could never be judged.
    assert split_weights({"v2": 2, "base": 98}, "v2", "v3", 5) == {"v2": 1, "base": 98, "v3": 1}
    assert split_weights({"v2": 100}, "v2", "v3", 0) == {"v2": 100, "v3": 0}


@given(
    st.dictionaries(st.sampled_from(["a", "b", "c", "base"]), st.integers(0, 100), min_size=1),
    st.integers(0, 100),
)
def test_split_weights_conserves_the_total(base, weight):
    stable = next(iter(base))
    out = split_weights(base, stable, "canary", weight)
    assert sum(out.values()) == sum(base.values())
    assert all(w >= 0 for w in out.values())
    assert out["canary"] <= base[stable]


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.95, {0.1: 0.0, math.inf: 0.0}) is None
    # Rank in the +Inf bucket answers the highest finite bound.
    assert histogram_quantile(0.95, {0.1: 1.0, 1.0: 1.0, math.inf: 10.0}) == 1.0


# ---------------------------------------------------------------- judge

ANALYSIS = CanaryAnalysis(max_error_rate=0.01, max_p95_latency_seconds=2.0, max_latency_increase=0.2,
                          min_feedback_delta=-0.1, min_feedback_count=10)
GOOD = VariantFigures(requests=1000, errors=1, p95_latency_seconds=0.5, feedback_mean=0.8, feedback_count=50)


def test_good_canary_passes_every_check():
    v = judge(ANALYSIS, GOOD, GOOD, min_requests=100)
    assert v.decision is Decision.PASS
    assert {r.metric for r in v.results} == {"errorRate", "p95Latency", "latencyIncrease", "feedbackDelta"}
    assert all(r.passed for r in v.results)


def test_error_rate_failure_names_metric_and_margin():
    bad = VariantFigures(requests=200, errors=20, p95_latency_seconds=0.5, feedback_mean=0.8, feedback_count=50)
    v = judge(ANALYSIS, GOOD, bad, min_requests=100)
    assert v.decision is Decision.FAIL
    (failed,) = v.failed
    assert failed.metric == "errorRate" and failed.canary == pytest.approx(0.1) and failed.limit == 0.01
    assert "errorRate 0.1 above by 0.09" in v.reason


def test_latency_increase_and_feedback_drop_fail():
    slow = VariantFigures(requests=500, p95_latency_seconds=0.7, feedback_mean=0.8, feedback_count=50)
    v = judge(ANALYSIS, GOOD, slow, min_requests=100)
    assert v.decision is Decision.FAIL and [r.metric for r in v.failed] == ["latencyIncrease"]
    disliked = VariantFigures(requests=500, p95_latency_seconds=0.5, feedback_mean=0.6, feedback_count=50)
    v = judge(ANALYSIS, GOOD, disliked, min_requests=100)
    assert v.decision is Decision.FAIL and [r.metric for r in v.failed] == ["feedbackDelta"]


def test_missing_figures_mean_no_decision_not_success():
    no_latency = VariantFigures(requests=500, feedback_mean=0.8, feedback_count=50)
    assert judge(ANALYSIS, GOOD, no_latency, 100).decision is Decision.WAIT
    little_feedback = VariantFigures(requests=500, p95_latency_seconds=0.5, feedback_mean=0.9, feedback_count=3)
    assert judge(ANALYSIS, GOOD, little_feedback, 100).decision is Decision.WAIT
    assert judge(ANALYSIS, None, GOOD, 100).decision is Decision.WAIT  # nothing to compare with
    assert judge(ANALYSIS, GOOD, None, 100).decision is Decision.WAIT
    probe = CanaryAnalysis(min_probe_exact_match=0.5)
    assert judge(probe, GOOD, GOOD, 100).decision is Decision.WAIT


def test_ties_at_the_limit_pass():
    analysis = CanaryAnalysis(max_error_rate=0.01, max_p95_latency_seconds=0.5, max_latency_increase=0.0,
                              min_feedback_delta=0.0, min_feedback_count=1)
    canary = VariantFigures(requests=100, errors=1, p95_latency_seconds=0.5, feedback_mean=0.8, feedback_count=50)
    assert judge(analysis, GOOD, canary, 100).decision is Decision.PASS


@given(stable=figures_st, canary=figures_st, min_requests=st.integers(0, 5000),
       errors=st.floats(0, 1))
def test_no_decision_below_min_requests_and_pass_only_when_all_passed(stable, canary, min_requests, errors):
    canary = VariantFigures(requests=canary.requests, errors=math.floor(canary.requests * errors),
                            p95_latency_seconds=canary.p95_latency_seconds, feedback_mean=canary.feedback_mean,
                            feedback_count=canary.feedback_count)
    v = judge(ANALYSIS, stable, canary, min_requests)
    if canary.requests < max(min_requests, 1):
        assert v.decision is Decision.WAIT
        return
    if v.decision is Decision.PASS:
        assert v.results and all(r.passed is True for r in v.results)
    elif v.decision is Decision.FAIL:
        assert any(r.passed is False for r in v.results)
    else:
        assert any(r.passed is None for r in v.results) and not any(r.passed is False for r in v.results)


@given(canary=figures_st)
def test_identical_variants_never_fail_relative_checks(canary):
    """A canary equal to its stable ties on every relative check, and ties pass."""
    analysis = CanaryAnalysis(max_error_rate=1.0, max_latency_increase=0.0, min_feedback_delta=0.0)
    v = judge(analysis, canary, canary, 0)
    assert v.decision is not Decision.FAIL
