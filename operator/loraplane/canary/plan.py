"""One reconcile of a ChatbotDeployment's rollout: which variant is stable, which is the canary, the weights.

`reconcile_rollout` is what the operator runs on every change and every tick:

1. From the resolved adapters and the previous state it works out the split without a
   canary (`spec.traffic`, or everything on the stable variant) and the *candidate*: a
   new version of a followed FineTuneJob (with `rollout.autoCanary`), or, without
   `spec.traffic`, the last adapter listed when it is not the stable one.
2. It starts a canary for a new candidate, judges a running one (`run_canary_step`),
   obeys promote / abort / pause requests, and cancels a canary whose candidate is gone.

Events to post come back as data; the caller writes children and status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..api.chatbotdeployment import BASE_VARIANT, ChatbotDeploymentSpec
from ..api.states import ProblemKind
from ..builders.routing_table import ServedVariant
from .adapters import EntryResolution
from .rollout import (
    Action,
    Retiring,
    RolloutState,
    StepOutcome,
    begin_canary,
    expire_retiring,
    promote,
    rollback,
    run_canary_step,
    shares_after,
)
from .sources import MetricsSource


@dataclass
class Plan:
    """The split without a canary and what, if anything, should be canaried."""

    stable: str | None
    base_weights: dict[str, int]
    servable: dict[str, ServedVariant]
    candidate: str | None = None
    canary_needed: bool = True
    problems: list[str] = field(default_factory=list)  # every entry that cannot be served, why
    broken: list[str] = field(default_factory=list)  # those of them that need a change (ProblemKind.BROKEN)
    known: dict[str, ServedVariant] = field(default_factory=dict)


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class RolloutResult:
    state: RolloutState
    plan: Plan
    weights: dict[str, int]
    variants: list[ServedVariant]
    retained: list[ServedVariant]
    action: Action = Action.NONE
    events: list[Event] = field(default_factory=list)


def _in_service(res: EntryResolution, prev: RolloutState, prev_weights: Mapping[str, int]) -> ServedVariant | None:
    """The version of an entry that serves its share now (a followed FineTuneJob's may lag its latest)."""
    if not res.following:
        return res.latest
    excluded = {prev.canary} if prev.canary else set()
    current = [v for v in res.versions
               if v.name not in excluded and (prev_weights.get(v.name, 0) > 0 or v.name == prev.stable)]
    return current[-1] if current else res.latest


def plan_rollout(spec: ChatbotDeploymentSpec, entries: Sequence[EntryResolution], prev: RolloutState,
                 prev_weights: Mapping[str, int]) -> Plan:
    """The split without a canary, and the candidate to canary."""
    problems = [r.problem for r in entries if r.problem]
    broken = [r.problem for r in entries if r.problem and r.problem_kind is ProblemKind.BROKEN]
    known = {v.name: v for r in entries for v in r.versions}
    in_service = {r.entry: _in_service(r, prev, prev_weights) for r in entries}
    servable = {v.name: v for v in in_service.values() if v is not None}
    base_variant = ServedVariant(BASE_VARIANT)
    by_entry = {r.entry: r for r in entries}

    if spec.traffic:
        base: dict[str, int] = {}
        unrouted = 0
        for t in spec.traffic:
            if t.adapter == BASE_VARIANT:
                name = BASE_VARIANT
            elif in_service.get(t.adapter) is not None:
                name = in_service[t.adapter].name  # type: ignore[union-attr]
            else:
                unrouted += t.weight
                continue
            base[name] = base.get(name, 0) + t.weight
        if unrouted:
            # An adapter that cannot be served gets no requests: its share goes to the largest servable one.
            heir = max(base, key=lambda n: base[n]) if base else BASE_VARIANT
            base[heir] = base.get(heir, 0) + unrouted
        stable = max(base, key=lambda n: base[n])
        result = Plan(stable, base, servable, problems=problems, broken=broken, known=known)
        for t in spec.traffic:
            res = by_entry.get(t.adapter)
            current = in_service.get(t.adapter)
            if res and res.following and current and res.latest and res.latest.name != current.name:
                result.stable, result.candidate = current.name, res.latest.name
                result.canary_needed = spec.rollout.auto_canary
                servable[res.latest.name] = res.latest
                break
        return result

    target = next((in_service[r.entry] for r in reversed(entries) if in_service[r.entry] is not None), None)
    target_entry = next((r for r in reversed(entries) if in_service[r.entry] is not None), None)
    if target_entry is not None and target_entry.following and target_entry.latest is not None:
        target = target_entry.latest
        servable[target.name] = target
    stable = prev.stable if prev.stable in known else None
    if target is None:
        name = stable or BASE_VARIANT
        return Plan(name, {name: 100}, {**servable, BASE_VARIANT: base_variant}, problems=problems, broken=broken, known=known)
    if stable is None:
        return Plan(target.name, {target.name: 100}, servable, problems=problems, broken=broken, known=known)
    servable[stable] = known[stable]
    result = Plan(stable, {stable: 100}, servable, problems=problems, broken=broken, known=known)
    if target.name != stable:
        result.candidate = target.name
        # A followed FineTuneJob's new version is canaried only with autoCanary; a spec change always is.
        same_entry = target_entry is not None and target_entry.following and stable in target_entry.version_of
        result.canary_needed = spec.rollout.auto_canary or not same_entry
    return result


async def reconcile_rollout(
    spec: ChatbotDeploymentSpec,
    entries: Sequence[EntryResolution],
    prev: RolloutState,
    prev_weights: Mapping[str, int],
    source: MetricsSource,
    now: datetime,
    *,
    model: str,
    paused: bool = False,
    promote_requested: bool = False,
    abort_requested: bool = False,
) -> RolloutResult:
    """Plan, then move the rollout one tick: start, judge, promote, roll back or cancel a canary."""
    p = plan_rollout(spec, entries, prev, prev_weights)
    rollout = spec.rollout
    state = prev
    events: list[Event] = []
    action = Action.NONE

    if state.canary is not None and (state.canary != p.candidate or state.stable != p.stable):
        if state.running:
            events.append(Event("Normal", "CanaryCancelled",
                                f"canary {state.canary} cancelled: it is no longer the candidate"))
        state = replace(state, canary=None, step=None, canary_weight=0, step_started_at=None, rolled_back=False,
                        baseline=None, analysis=[])
    if state.canary is None:
        state = replace(state, stable=p.stable)

    outcome: StepOutcome | None = None
    if p.candidate and state.canary is None:
        if p.canary_needed:
            outcome = await begin_canary(state, p.stable or BASE_VARIANT, p.candidate, rollout, now, source, model)
            if outcome.action is Action.ADVANCE:
                events.append(Event("Normal", "CanaryStarted", outcome.state.message))
        else:
            started = replace(state, canary=p.candidate)
            outcome = promote(started, rollout, now, "autoCanary is off: switched directly")
    elif state.running:
        if abort_requested:
            outcome = rollback(state, "aborted by request (loraplane abort)")
        elif promote_requested:
            outcome = promote(state, rollout, now, "promoted by request (loraplane promote)")
        else:
            outcome = await run_canary_step(rollout, state, source, now, model=model, paused=paused)
            if outcome.action is Action.ADVANCE:
                events.append(Event("Normal", "CanaryAdvanced", outcome.state.message))
    if outcome is not None:
        state, action = outcome.state, outcome.action
        if action is Action.PROMOTE:
            events.append(Event("Normal", "CanaryPromoted", state.message))
        elif action is Action.ROLLBACK:
            events.append(Event("Warning", "CanaryRolledBack", state.message))

    # Retired variants keep their URI, so they stay loaded even when gone from the spec.
    retiring = []
    for r in expire_retiring(state, now).retiring:
        v = p.known.get(r.name)
        retiring.append(Retiring(r.name, r.until, r.uri or (v.uri if v else None), r.sha256 or (v.sha256 if v else None)))
    state = replace(state, retiring=retiring)

    base = shares_after(p.base_weights, outcome, p.stable) if outcome is not None else dict(p.base_weights)
    weights = state.weights(base)
    retiring_names = {r.name for r in state.retiring}
    variants = {n: v for n, v in p.servable.items() if n not in retiring_names or weights.get(n, 0) > 0}
    for name in weights:
        if name not in variants and name in p.known:
            variants[name] = p.known[name]
    retained = [ServedVariant(r.name, r.uri, r.sha256) for r in state.retiring if r.uri and r.name not in weights]
    return RolloutResult(state, p, weights, list(variants.values()), retained, action, events)

