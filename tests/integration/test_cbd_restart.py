"""A restarted operator carries a canary on from its status: same step window, no second start."""

from __future__ import annotations

from tests.integration.test_cbd_operator import (
    API,
    CBD,
    NS,
    Traffic,
    chatbot,
    status,
    table_weights,
    write_adapter,
)
from tests.support.canary_metrics import RouterMetrics


def reasons(cluster) -> list[str]:
    return [e.get("reason") for e in cluster.events(NS, "restart")]


def test_canary_survives_an_operator_restart(cluster, tmp_path):
    cluster.ensure_namespace(NS)
    metrics = RouterMetrics("restart", namespace=NS)
    metrics.start()
    uris = {v: write_adapter(tmp_path / v, v) for v in ("v1", "v2")}
    try:
        with cluster.operator(NS, canary_tick_seconds=0.3):
            cluster.create({**chatbot(
                "restart", adapters=[{"name": "v1", "uri": uris["v1"]}],
                rollout={"steps": [20, 50], "interval": "1s", "minRequests": 20, "analysis": {"maxErrorRate": 0.05}},
            ), "metadata": {"name": "restart", "namespace": NS,
                            "annotations": {"loraplane.io/metrics-url": metrics.url}}})
            cluster.wait_for(lambda: status(cluster, "restart").get("stable") == "v1", message="stable v1")
            cluster.patch(API, CBD, NS, "restart", {"spec": {"adapters": [{"name": "v1", "uri": uris["v1"]},
                                                                          {"name": "v2", "uri": uris["v2"]}]}})
            st = cluster.wait_for(lambda: status(cluster, "restart").get("canary") == "v2" and status(cluster, "restart"),
                                  message="canary v2")
            # kopf posts events after the status patch, from a queue that an operator drops when it stops: this
            # one's start event is in before it stops (the test asks that the restart posts no second one).
            cluster.wait_for(lambda: "CanaryStarted" in reasons(cluster), message="the CanaryStarted event")
        assert st["step"] == 0 and "stepBaseline" in st and st["stepStartedAt"]

        # Traffic while no operator runs: the step's window (kept in status) counts it.
        metrics.serve("v1", 100)
        metrics.serve("v2", 30)
        with cluster.operator(NS, canary_tick_seconds=0.3), Traffic(metrics) as traffic:
            traffic.plan = {"v1": {"n": 10}, "v2": {"n": 5}}
            st = cluster.wait_for(lambda: status(cluster, "restart").get("stable") == "v2" and status(cluster, "restart"),
                                  timeout=60, message="promotion after the restart")
        assert table_weights(cluster, "restart") == {"v2": 100}
        posted = reasons(cluster)
        assert posted.count("CanaryStarted") == 1 and "CanaryPromoted" in posted
    finally:
        metrics.stop()
