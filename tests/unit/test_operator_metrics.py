"""The operator's Prometheus metrics."""

from __future__ import annotations

import pytest
from loraplane import metrics
from prometheus_client import REGISTRY


def value(metric: str, **labels) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


def test_reconciles_are_counted_timed_and_errors_named():
    before_ok = value("loraplane_operator_reconciles_total", resource="test", result="ok") or 0
    with metrics.reconcile("test"):
        pass
    with pytest.raises(KeyError), metrics.reconcile("test"):
        raise KeyError("x")
    assert value("loraplane_operator_reconciles_total", resource="test", result="ok") == before_ok + 1
    assert value("loraplane_operator_reconcile_errors_total", resource="test", reason="KeyError") >= 1
    assert value("loraplane_operator_reconcile_duration_seconds_count", resource="test") >= 2


def test_phase_gauges_follow_the_job_and_are_forgotten():
    metrics.set_ftj_phase("ns", "bot", "Training")
    metrics.GPU_SECONDS.labels("ns", "bot").set(10)
    assert value("loraplane_finetunejobs", namespace="ns", name="bot", phase="Training") == 1
    assert value("loraplane_finetunejobs", namespace="ns", name="bot", phase="Failed") == 0
    metrics.set_ftj_phase("ns", "bot", "Failed")
    assert value("loraplane_finetunejobs", namespace="ns", name="bot", phase="Training") == 0
    metrics.forget_ftj("ns", "bot")
    assert value("loraplane_finetunejobs", namespace="ns", name="bot", phase="Failed") is None
    assert value("loraplane_finetunejob_gpu_seconds", namespace="ns", name="bot") is None
