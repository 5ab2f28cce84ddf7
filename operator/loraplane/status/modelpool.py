"""A ModelPool's status, from its children, the verdicts on its chatbots, its routing and its router.

Pure: `compute_pool_status(pool, observed)` returns the whole new status; the controller
writes the difference once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.modelpool import ModelPool, ReplicaResidency
from ..api.states import Reason
from ..builders.serving import endpoint
from ..routing import RoutingTable
from ..tenancy import Claim, Verdict
from .conditions import ConditionSet, kstatus


@dataclass(frozen=True)
class PoolObserved:
    """What one reconcile of one ModelPool found."""

    claims: list[Claim]
    verdicts: Mapping[tuple[str, str], Verdict]
    tables: Mapping[tuple[str, str], RoutingTable]  # the routing ConfigMap's tables, by (namespace, chatbot)
    ready_replicas: int = 0
    residency: list[ReplicaResidency] | None = None  # None: not read this pass (the last one stays)
    problems: list[str] = field(default_factory=list)
    now: datetime | None = None


def attached_chatbots(obs: PoolObserved) -> list[dict[str, Any]]:
    out = []
    for claim in sorted(obs.claims, key=lambda c: c.key):
        verdict = obs.verdicts[claim.key]
        table = obs.tables.get(claim.key)
        out.append({"namespace": claim.namespace, "name": claim.name, "servedName": claim.served_name,
                    "accepted": verdict.accepted, "reason": verdict.reason.value,
                    "adapters": len(table.adapters()) if table and verdict.accepted else 0})
    return out[:1000]


def compute_pool_status(pool: ModelPool, obs: PoolObserved) -> dict[str, Any]:
    """The complete new status of a ModelPool (camelCase, unset fields left out)."""
    spec, meta = pool.spec, pool.metadata
    chatbots = attached_chatbots(obs)
    accepted = sum(1 for c in chatbots if c["accepted"])
    adapters = sum(c["adapters"] for c in chatbots)
    replicas = spec.replicas
    ready = obs.ready_replicas
    if obs.problems:
        message, reason, ok = "; ".join(obs.problems), Reason.FAILED, False
    elif ready < max(replicas, 1):
        message, reason, ok = f"{ready}/{replicas} vLLM replicas ready", Reason.REPLICAS_NOT_READY, False
    else:
        message, reason, ok = (f"{ready} vLLM replicas serving {adapters} adapters of {accepted} chatbots",
                               Reason.CHILDREN_READY, True)
    prev = pool.status.model_dump(by_alias=True, exclude_none=True, mode="json")["conditions"] if pool.status else []
    now = obs.now.isoformat().replace("+00:00", "Z") if obs.now else None
    conds = ConditionSet(prev, generation=meta.generation, now=now)
    kstatus(conds, ready=ok, reason=reason.value, message=message[:1024], reconciling=not ok and not obs.problems,
            stalled=bool(obs.problems))
    residency = obs.residency
    if residency is None and pool.status is not None:
        residency = pool.status.residency
    status = {
        "observedGeneration": meta.generation,
        "conditions": conds.to_list(),
        "message": message[:4096],
        "replicas": replicas,
        "readyReplicas": ready,
        "attachedChatbots": accepted,
        "registeredAdapters": adapters,
        "chatbots": chatbots,
        "residency": [r.to_wire() for r in residency or []][:1000],
        "endpoint": endpoint(meta.name, meta.namespace or "default"),
    }
    return {k: v for k, v in status.items() if v is not None}
