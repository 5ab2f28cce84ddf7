"""The operator's Prometheus metrics (prometheus-client, default registry), served on the metrics port.

Every metric the operator exports is defined here: reconciles of both controllers
(`loraplane_operator_*`), FineTuneJobs (`loraplane_finetunejob*`) and rollouts
(`loraplane_chatbotdeployment_*`). The router's own metric names are in
`loraplane.router_metrics`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .api.states import ChatbotPhase, FineTuneJobPhase

RECONCILES = Counter(
    "loraplane_operator_reconciles_total", "Reconciles run, by resource and result.", ["resource", "result"]
)
RECONCILE_ERRORS = Counter(
    "loraplane_operator_reconcile_errors_total", "Reconciles that failed, by resource and reason.", ["resource", "reason"]
)
RECONCILE_SECONDS = Histogram(
    "loraplane_operator_reconcile_duration_seconds",
    "Time spent in one reconcile, by resource.",
    ["resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FTJ_PHASE = Gauge(
    "loraplane_finetunejobs", "FineTuneJobs by phase (1 for the current phase of each job).",
    ["namespace", "name", "phase"],
)
GPU_SECONDS = Gauge(
    "loraplane_finetunejob_gpu_seconds", "GPU-seconds used by a FineTuneJob's runs.", ["namespace", "name"]
)
COST = Gauge(
    "loraplane_finetunejob_estimated_cost", "Estimated cost of a FineTuneJob's runs (GPU-hours x price).",
    ["namespace", "name"],
)
TRANSITIONS = Counter(
    "loraplane_finetunejob_transitions_total", "FineTuneJob phase transitions, by the phase entered.", ["phase"]
)

CBD_PHASE = Gauge("loraplane_chatbotdeployment_phase", "1 for the current phase of each ChatbotDeployment.",
                  ["namespace", "name", "phase"])
CANARY_WEIGHT = Gauge("loraplane_chatbotdeployment_canary_weight", "Current canary weight (percent).",
                      ["namespace", "name"])
ROLLOUTS = Counter("loraplane_chatbotdeployment_rollouts_total", "Canary outcomes: promoted, rolled back.",
                   ["namespace", "name", "result"])

ROLLOUT_RESULTS = ("promoted", "rolledBack")
FTJ_PHASES = tuple(p.value for p in FineTuneJobPhase)

_served: set[int] = set()
_lock = threading.Lock()


def serve(port: int, registry: CollectorRegistry = REGISTRY) -> None:
    """Start the /metrics HTTP endpoint once per port (restarts of the handlers keep it)."""
    with _lock:
        if port in _served:
            return
        start_http_server(port, registry=registry)
        _served.add(port)


@contextmanager
def reconcile(resource: str) -> Iterator[None]:
    """Count and time one reconcile; exceptions are counted by their class name and re-raised."""
    start = time.perf_counter()
    try:
        yield
    except Exception as err:
        RECONCILES.labels(resource, "error").inc()
        RECONCILE_ERRORS.labels(resource, type(err).__name__).inc()
        raise
    else:
        RECONCILES.labels(resource, "ok").inc()
    finally:
        RECONCILE_SECONDS.labels(resource).observe(time.perf_counter() - start)


def set_ftj_phase(namespace: str, name: str, phase: str | None) -> None:
    """One series per job is 1 (its phase), the others 0."""
    for p in FTJ_PHASES:
        FTJ_PHASE.labels(namespace, name, p).set(1 if p == phase else 0)


def forget_ftj(namespace: str, name: str) -> None:
    """Drop a deleted job's series so they do not linger."""
    for p in FTJ_PHASES:
        with suppress(KeyError):
            FTJ_PHASE.remove(namespace, name, p)
    for gauge in (GPU_SECONDS, COST):
        with suppress(KeyError):
            gauge.remove(namespace, name)


def set_cbd_phase(namespace: str, name: str, phase: str, canary_weight: int) -> None:
    for p in ChatbotPhase:
        CBD_PHASE.labels(namespace, name, p.value).set(1 if p.value == phase else 0)
    CANARY_WEIGHT.labels(namespace, name).set(canary_weight)


def init_cbd_series(namespace: str, name: str) -> None:
    """Create a ChatbotDeployment's counters at 0 when it is first seen.

    increase() and rate() need a sample before the first event: a counter born at 1 on the
    first rollback is a series whose increase is 0, and that rollback would never alert.
    """
    for result in ROLLOUT_RESULTS:
        ROLLOUTS.labels(namespace, name, result)


def forget_cbd(namespace: str, name: str) -> None:
    for result in ROLLOUT_RESULTS:
        with suppress(KeyError):
            ROLLOUTS.remove(namespace, name, result)
    for p in ChatbotPhase:
        with suppress(KeyError):
            CBD_PHASE.remove(namespace, name, p.value)
    with suppress(KeyError):
        CANARY_WEIGHT.remove(namespace, name)
