"""The operator's rollout metrics (prometheus-client, default registry, served on the operator's metrics port)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

PHASE = Gauge("loraplane_chatbotdeployment_phase", "1 for the current phase of each ChatbotDeployment.",
              ["namespace", "name", "phase"])
CANARY_WEIGHT = Gauge("loraplane_chatbotdeployment_canary_weight", "Current canary weight (percent).",
                      ["namespace", "name"])
ROLLOUTS = Counter("loraplane_chatbotdeployment_rollouts_total", "Canary outcomes: promoted, rolled back.",
                   ["namespace", "name", "result"])

ROLLOUT_RESULTS = ("promoted", "rolledBack")


def init_series(namespace: str, name: str) -> None:
    """Create a ChatbotDeployment's counters at 0 when it is first seen.

    increase() and rate() need a sample before the first event: a counter born at 1 on the
    first rollback is a series whose increase is 0, and that rollback would never alert.
    """
    for result in ROLLOUT_RESULTS:
        ROLLOUTS.labels(namespace, name, result)


def forget_series(namespace: str, name: str) -> None:
    for result in ROLLOUT_RESULTS:
        with contextlib.suppress(KeyError):
            ROLLOUTS.remove(namespace, name, result)
