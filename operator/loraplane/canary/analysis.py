"""Judge a canary's figures against `spec.rollout.analysis`.

Every check answers passed / failed / unknown. Unknown (too few requests, no
stable figure to compare with, no feedback yet) is never success: a step passes
only when every configured check passed, and fails as soon as one check failed
on enough data. Limits are inclusive: a canary exactly at a limit passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from ..api.chatbotdeployment import AnalysisResult, CanaryAnalysis


@dataclass(frozen=True)
class VariantFigures:
    """What the analysis needs to know about one variant over one window; None means unknown."""

    requests: float = 0.0
    errors: float = 0.0
    p95_latency_seconds: float | None = None
    feedback_mean: float | None = None
    feedback_count: float = 0.0
    probe_exact_match: float | None = None
    human_win_rate: float | None = None  # from a blind human evaluation with enough ratings, else unknown
    human_note: str = ""  # why there is no human win rate yet

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests > 0 else None


class Decision(StrEnum):
    PASS = "pass"  # every check passed: the step may advance
    FAIL = "fail"  # a check failed: roll back
    WAIT = "wait"  # not enough data to decide either way


@dataclass
class Verdict:
    decision: Decision
    results: list[AnalysisResult] = field(default_factory=list)
    reason: str = ""

    @property
    def failed(self) -> list[AnalysisResult]:
        return [r for r in self.results if r.passed is False]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _result(metric: str, stable: float | None, canary: float | None, limit: float, passed: bool | None,
            message: str) -> AnalysisResult:
    return AnalysisResult(metric=metric, stable=_finite(stable), canary=_finite(canary), limit=limit,
                          passed=passed, message=message[:512])


def judge(analysis: CanaryAnalysis, stable: VariantFigures | None, canary: VariantFigures | None,
          min_requests: int) -> Verdict:
    """The analysis of one window: which checks passed, failed or lack data, and what that means."""
    stable = stable or VariantFigures()
    canary = canary or VariantFigures()
    if canary.requests < max(min_requests, 1):
        return Verdict(
            Decision.WAIT,
            [_result("requests", stable.requests, canary.requests, float(min_requests), None,
                     f"canary has {canary.requests:g} of {min_requests} requests needed")],
            f"waiting for requests: {canary.requests:g}/{min_requests}",
        )
    results = [_error_rate(analysis, stable, canary)]
    if analysis.max_p95_latency_seconds is not None:
        results.append(_p95(analysis.max_p95_latency_seconds, stable, canary))
    if analysis.max_latency_increase is not None:
        results.append(_latency_increase(analysis.max_latency_increase, stable, canary))
    if analysis.min_feedback_delta is not None:
        results.append(_feedback(analysis, stable, canary))
    if analysis.min_probe_exact_match is not None:
        results.append(_probe(analysis.min_probe_exact_match, stable, canary))
    if analysis.min_human_win_rate is not None:
        results.append(_human(analysis.min_human_win_rate, canary))
    return _decide(results)


def _decide(results: Sequence[AnalysisResult]) -> Verdict:
    failed = [r for r in results if r.passed is False]
    if failed:
        return Verdict(Decision.FAIL, list(results), "; ".join(r.message or r.metric for r in failed))
    unknown = [r for r in results if r.passed is None]
    if unknown:
        return Verdict(Decision.WAIT, list(results), "; ".join(r.message or r.metric for r in unknown))
    return Verdict(Decision.PASS, list(results), "all checks passed")


def _error_rate(a: CanaryAnalysis, stable: VariantFigures, canary: VariantFigures) -> AnalysisResult:
    rate = canary.error_rate
    assert rate is not None  # requests > 0 was checked by the caller
    passed = rate <= a.max_error_rate
    verb = "within" if passed else f"above by {rate - a.max_error_rate:.4g}"
    return _result("errorRate", stable.error_rate, rate, a.max_error_rate, passed,
                   f"errorRate {rate:.4g} {verb} limit {a.max_error_rate:g}")


def _p95(limit: float, stable: VariantFigures, canary: VariantFigures) -> AnalysisResult:
    p95 = _finite(canary.p95_latency_seconds)
    if p95 is None:
        return _result("p95Latency", stable.p95_latency_seconds, None, limit, None, "p95Latency: no latency figures")
    passed = p95 <= limit
    verb = "within" if passed else f"above by {p95 - limit:.4g}s"
    return _result("p95Latency", stable.p95_latency_seconds, p95, limit, passed,
                   f"p95Latency {p95:.4g}s {verb} limit {limit:g}s")


def _latency_increase(limit: float, stable: VariantFigures, canary: VariantFigures) -> AnalysisResult:
    s, c = _finite(stable.p95_latency_seconds), _finite(canary.p95_latency_seconds)
    if s is None or c is None or stable.requests <= 0:
        return _result("latencyIncrease", s, c, limit, None, "latencyIncrease: no stable or canary latency")
    # A stable p95 of 0 (all in the first bucket) makes any rise infinite; compare absolute values then.
    increase = (c - s) / s if s > 0 else (0.0 if c <= 0 else math.inf)
    passed = increase <= limit
    verb = "within" if passed else f"above by {increase - limit:.4g}"
    return _result("latencyIncrease", s, c, limit, passed,
                   f"latencyIncrease {increase:.4g} (p95 {c:.4g}s vs stable {s:.4g}s) {verb} limit {limit:g}")


def _feedback(a: CanaryAnalysis, stable: VariantFigures, canary: VariantFigures) -> AnalysisResult:
    limit = a.min_feedback_delta
    assert limit is not None
    s, c = _finite(stable.feedback_mean), _finite(canary.feedback_mean)
    need = max(a.min_feedback_count, 1)
    if s is None or c is None or stable.feedback_count < need or canary.feedback_count < need:
        return _result(
            "feedbackDelta", s, c, limit, None,
            f"feedbackDelta: {canary.feedback_count:g} canary and {stable.feedback_count:g} stable "
            f"scores, {need} needed each",
        )
    delta = c - s
    passed = delta >= limit
    verb = "within" if passed else f"below by {limit - delta:.4g}"
    return _result("feedbackDelta", s, c, limit, passed,
                   f"feedbackDelta {delta:.4g} (mean {c:.4g} vs stable {s:.4g}) {verb} limit {limit:g}")


def _probe(limit: float, stable: VariantFigures, canary: VariantFigures) -> AnalysisResult:
    c = _finite(canary.probe_exact_match)
    if c is None:
        return _result("probeExactMatch", stable.probe_exact_match, None, limit, None, "probeExactMatch: no probes run")
    passed = c >= limit
    verb = "within" if passed else f"below by {limit - c:.4g}"
    return _result("probeExactMatch", stable.probe_exact_match, c, limit, passed,
                   f"probeExactMatch {c:.4g} {verb} limit {limit:g}")


def _human(limit: float, canary: VariantFigures) -> AnalysisResult:
    c = _finite(canary.human_win_rate)
    if c is None:
        return _result("humanWinRate", None, None, limit, None,
                       f"humanWinRate: {canary.human_note or 'no human evaluation of the canary yet'}")
    passed = c >= limit
    verb = "within" if passed else f"below by {limit - c:.4g}"
    return _result("humanWinRate", None, c, limit, passed, f"humanWinRate {c:.4g} {verb} limit {limit:g}")
