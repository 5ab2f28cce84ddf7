"""A ChatbotDeployment's status, computed from its resolved adapters, the rollout tick and its vLLM pods.

Pure: `compute_status(cbd, observed)` returns the whole new status; the controller
writes the difference (`status_diff`) once. The display phase is derived from the
rollout's own state (`RolloutState`) and the kinds of resolution problems, never
the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.chatbotdeployment import ChatbotDeployment
from ..api.states import ChatbotPhase, ConditionType, Reason
from ..builders.serving import endpoint
from ..canary import Action, EntryResolution, RolloutResult
from ..tenancy import Verdict
from .conditions import ConditionSet, kstatus


@dataclass(frozen=True)
class Observed:
    """What one reconcile of one ChatbotDeployment found and decided."""

    entries: list[EntryResolution]
    result: RolloutResult
    ready_replicas: int = 0
    problems: list[str] = field(default_factory=list)  # children not applied, analysis not set up
    now: datetime | None = None
    # On a ModelPool: the pool's verdict, its desired replicas and its router's endpoint.
    verdict: Verdict | None = None
    replicas: int | None = None
    endpoint: str | None = None


def display_phase(result: RolloutResult, ready: int, replicas: int) -> tuple[ChatbotPhase, str]:
    """(phase, message): the rollout first, then broken adapters, then anything still on its way."""
    state = result.state
    if state.running:
        return ChatbotPhase.CANARY, state.message
    if state.rolled_back:
        return ChatbotPhase.ROLLED_BACK, state.message
    if result.plan.broken:
        return ChatbotPhase.DEGRADED, "; ".join(result.plan.broken)
    waiting = result.plan.problems
    if waiting or ready < replicas:
        parts = [*waiting, f"{ready}/{replicas} vLLM replicas ready"] if ready < replicas else waiting
        return ChatbotPhase.PROGRESSING, "; ".join(parts)
    msg = f"serving {state.stable or 'base'}" + (f" ({state.message})" if state.message else "")
    return ChatbotPhase.HEALTHY, msg


def resolved_adapters(entries: list[EntryResolution], result: RolloutResult) -> list[dict[str, Any]]:
    """status.adapters: every routed or retained variant, and each entry that cannot be served."""
    out = []
    routed = {v.name for v in result.variants} | {v.name for v in result.retained}
    for r in entries:
        shown = [v for v in r.versions if v.name in routed] or ([] if r.versions else [None])
        for v in shown:
            if v is None:
                out.append({"name": r.entry, "ready": False, "message": (r.problem or "")[:512]})
            else:
                item = {"name": v.name, "uri": v.uri, "version": r.version_of.get(v.name), "sha256": v.sha256,
                        "ready": True}
                out.append({k: val for k, val in item.items() if val is not None})
    return out[:32]


def _conditions(cbd: ChatbotDeployment, obs: Observed, phase: ChatbotPhase, message: str) -> list[dict[str, Any]]:
    prev = cbd.status.model_dump(by_alias=True, exclude_none=True, mode="json")["conditions"] if cbd.status else []
    now = obs.now.isoformat().replace("+00:00", "Z") if obs.now else None
    conds = ConditionSet(prev, generation=cbd.metadata.generation, now=now)
    kstatus(conds, ready=phase is ChatbotPhase.HEALTHY, reason=phase.value, message=message[:1024],
            reconciling=phase in (ChatbotPhase.PROGRESSING, ChatbotPhase.CANARY, ChatbotPhase.PENDING),
            stalled=phase is ChatbotPhase.DEGRADED)
    plan, state = obs.result.plan, obs.result.state
    if plan.problems:
        conds.set(ConditionType.ADAPTERS_RESOLVED, False, Reason.ADAPTER_NOT_SERVABLE, "; ".join(plan.problems)[:1024])
    else:
        conds.set(ConditionType.ADAPTERS_RESOLVED, True, Reason.RESOLVED, f"{len(obs.entries)} adapter entries servable")
    if state.running:
        conds.set(ConditionType.CANARY_ANALYSIS, "Unknown", Reason.ANALYSING, state.message)
    elif state.rolled_back:
        failed = [a for a in state.analysis if a.passed is False]
        detail = "; ".join(a.message or a.metric for a in failed) or state.message
        conds.set(ConditionType.CANARY_ANALYSIS, False, Reason.ROLLED_BACK,
                  f"canary {state.canary} rolled back: {detail}"[:1024])
    elif obs.result.action is Action.PROMOTE:
        conds.set(ConditionType.CANARY_ANALYSIS, True, Reason.PROMOTED, state.message)
    if obs.verdict is not None:
        conds.set(ConditionType.ACCEPTED, obs.verdict.accepted, obs.verdict.reason, obs.verdict.message[:1024])
    return conds.to_list()


def compute_status(cbd: ChatbotDeployment, obs: Observed) -> dict[str, Any]:
    """The complete new status of a ChatbotDeployment (camelCase, unset fields left out)."""
    spec, result = cbd.spec, obs.result
    replicas = spec.replicas if obs.replicas is None else obs.replicas
    phase, message = display_phase(result, obs.ready_replicas, replicas)
    if obs.verdict is not None and not obs.verdict.accepted:
        phase, message = ChatbotPhase.DEGRADED, obs.verdict.message  # not routed: nothing else matters yet
    if obs.problems:
        message = "; ".join([message, *obs.problems]) if message else "; ".join(obs.problems)
    status = {
        "phase": phase.value,
        "observedGeneration": cbd.metadata.generation,
        "conditions": _conditions(cbd, obs, phase, message),
        "message": message[:4096],
        **{k: v for k, v in result.state.to_status().items() if k != "message"},
        "weights": result.weights,
        "adapters": resolved_adapters(obs.entries, result),
        "replicas": replicas,
        "readyReplicas": obs.ready_replicas,
        "endpoint": obs.endpoint or endpoint(cbd.metadata.name, cbd.metadata.namespace or "default"),
    }
    return {k: v for k, v in status.items() if v is not None}
