"""The canary analysis reads exactly what the real router exports (loraplane_server.router.metrics)."""

from __future__ import annotations

import pytest
from loraplane.api.chatbotdeployment import CanaryAnalysis
from loraplane.canary import Decision, judge, parse_router_metrics, window_figures
from loraplane_server.router.metrics import RouterMetrics


def test_router_exposition_feeds_the_analysis():
    m = RouterMetrics()
    for i in range(200):
        m.requests.labels("default", "bot", "bot", "v1", "200").inc()
        m.duration.labels("default", "bot", "bot", "v1").observe(0.3)
        m.feedback.labels("default", "bot", "bot", "v1").observe(1.0 if i % 4 else 0.0)
    for i in range(100):
        m.requests.labels("default", "bot", "bot", "v2", "502" if i < 10 else "200").inc()
        m.duration.labels("default", "bot", "bot", "v2").observe(0.9)
        m.feedback.labels("default", "bot", "bot", "v2").observe(0.75)
    m.requests.labels("default", "other-bot", "other-bot", "v2", "500").inc(1000)  # another chatbot on the same router
    before = parse_router_metrics(m.exposition().decode(), "bot")
    m.requests.labels("default", "bot", "bot", "v2", "200").inc(100)
    figures = window_figures(parse_router_metrics(m.exposition().decode(), "bot"), {"v1": before["v1"]})
    v1, v2 = figures["v1"], figures["v2"]
    assert v1.requests == 0  # nothing new for v1 since its baseline
    assert v2.requests == 200 and v2.errors == 10
    assert v2.feedback_mean == pytest.approx(0.75) and v2.feedback_count == 100
    assert 0.5 < v2.p95_latency_seconds <= 1.0
    whole = window_figures(parse_router_metrics(m.exposition().decode(), "bot"), None)
    assert whole["v1"].feedback_mean == pytest.approx(0.75) and whole["v1"].p95_latency_seconds <= 0.5
    verdict = judge(CanaryAnalysis(maxErrorRate=0.01, maxLatencyIncrease=0.2), whole["v1"], whole["v2"], 100)
    assert verdict.decision is Decision.FAIL
    assert {r.metric for r in verdict.failed} == {"errorRate", "latencyIncrease"}
