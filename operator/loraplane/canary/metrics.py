"""The operator's rollout metrics (prometheus-client, default registry, served on the operator's metrics port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PHASE = Gauge("loraplane_chatbotdeployment_phase", "1 for the current phase of each ChatbotDeployment.",
              ["namespace", "name", "phase"])
CANARY_WEIGHT = Gauge("loraplane_chatbotdeployment_canary_weight", "Current canary weight (percent).",
                      ["namespace", "name"])
ROLLOUTS = Counter("loraplane_chatbotdeployment_rollouts_total", "Canary outcomes: promoted, rolled back.",
                   ["namespace", "name", "result"])
