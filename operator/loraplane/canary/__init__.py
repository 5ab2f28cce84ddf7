"""Canary rollouts: step math, analysis, metrics sources and the state machine, free of Kubernetes.

`loraplane.handlers.chatbotdeployment` wires `reconcile_rollout` to kopf; the local
demo drives `LocalCanary`, a thin adapter over the same start/step/outcome functions,
with a `RouterMetricsSource` and a `RoutingFileRouter`.
"""

from .adapters import EntryResolution, resolve, resolve_entry, variant_name
from .analysis import Decision, VariantFigures, Verdict, judge
from .local import LocalCanary
from .plan import Event, Plan, RolloutResult, plan_rollout, reconcile_rollout
from .probes import Probe, ProbedSource, load_probes, parse_probes, probe_exact_match
from .quantile import histogram_quantile
from .rollout import (
    Action,
    Phase,
    Retiring,
    RolloutState,
    Router,
    StepOutcome,
    advance,
    begin_canary,
    expire_retiring,
    promote,
    rollback,
    run_canary_step,
    shares_after,
    start_canary,
)
from .routing_file import RoutingFileRouter, reweight, write_routing_file
from .sources import (
    MetricsError,
    MetricsSource,
    PrometheusSource,
    RouterMetricsSource,
    merge_scrapes,
    parse_router_metrics,
    window_figures,
)
from .steps import next_step, parse_duration, split_weights, step_weight

__all__ = [
    "Probe",
    "ProbedSource",
    "load_probes",
    "parse_probes",
    "probe_exact_match",
    "LocalCanary",
    "EntryResolution",
    "Event",
    "Plan",
    "RolloutResult",
    "plan_rollout",
    "reconcile_rollout",
    "resolve",
    "resolve_entry",
    "variant_name",
    "Action",
    "Decision",
    "MetricsError",
    "MetricsSource",
    "Phase",
    "PrometheusSource",
    "Retiring",
    "RolloutState",
    "Router",
    "RouterMetricsSource",
    "RoutingFileRouter",
    "StepOutcome",
    "VariantFigures",
    "Verdict",
    "advance",
    "begin_canary",
    "expire_retiring",
    "histogram_quantile",
    "judge",
    "merge_scrapes",
    "next_step",
    "parse_duration",
    "parse_router_metrics",
    "promote",
    "reweight",
    "rollback",
    "run_canary_step",
    "shares_after",
    "split_weights",
    "start_canary",
    "step_weight",
    "window_figures",
    "write_routing_file",
]
