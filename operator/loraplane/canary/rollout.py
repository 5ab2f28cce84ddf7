"""The canary state machine: start, judge a step, advance, promote, roll back. Pure but for the metrics read.

The state lives in the ChatbotDeployment's status (`RolloutState.from_status` /
`to_status`), so a restarted operator carries on where it stopped. The same code
drives a canary outside a cluster: build a `RolloutState`, call `run_canary_step`
with a `MetricsSource` (e.g. the router's /metrics URL) and apply the weights it
returns through a `Router` (e.g. `RoutingFileRouter` writing routing.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from ..api.chatbotdeployment import AnalysisResult, RolloutSpec, RolloutStatus
from ..api.states import ChatbotPhase, RolloutPhase
from .analysis import Decision, Verdict, judge
from .sources import MetricsError, MetricsSource
from .steps import next_step, parse_duration, split_weights, step_weight

# Manual control, set by `loraplane promote|abort|pause|resume` and read by the operator.
ANN_PROMOTE = "loraplane.io/promote"  # promote the running canary now
ANN_ABORT = "loraplane.io/abort"  # roll the running canary back now
ANN_PAUSED = "loraplane.io/paused"  # hold the canary at its step


Phase = ChatbotPhase  # the display phase, derived from a RolloutState (never read back)


class Action(StrEnum):
    WAIT = "Wait"  # the step goes on
    ADVANCE = "Advance"  # the step passed: next weight
    PROMOTE = "Promote"  # the last step passed: the canary is the new stable
    ROLLBACK = "Rollback"  # a check failed: canary weight 0
    PAUSED = "Paused"  # held by spec.rollout.paused or the pause annotation
    NONE = "None"  # no canary runs


class Router(Protocol):
    """Where the weights of a decision go: the routing-table ConfigMap in a cluster, routing.yaml locally."""

    async def apply(self, weights: Mapping[str, int], retained: Sequence[str]) -> None:
        """Route by `weights`; keep `retained` variants loaded without traffic."""


@dataclass
class Retiring:
    """An old stable kept loaded (no traffic) until `until`, so in-flight and pinned requests finish."""

    name: str
    until: datetime
    uri: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "until": _iso(self.until)}
        if self.uri:
            out["uri"] = self.uri
        if self.sha256:
            out["sha256"] = self.sha256
        return out


@dataclass
class RolloutState:
    """Where a rollout stands; round-trips through ChatbotDeployment status."""

    stable: str | None = None
    canary: str | None = None
    step: int | None = None
    canary_weight: int = 0
    step_started_at: datetime | None = None
    rolled_back: bool = False
    analysis: list[AnalysisResult] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    retiring: list[Retiring] = field(default_factory=list)
    message: str = ""

    @property
    def running(self) -> bool:
        """A canary takes (or is about to take) traffic."""
        return self.canary is not None and not self.rolled_back

    @property
    def phase(self) -> RolloutPhase:
        if self.canary is None:
            return RolloutPhase.IDLE
        return RolloutPhase.ROLLED_BACK if self.rolled_back else RolloutPhase.RUNNING

    def weights(self, base: Mapping[str, int]) -> dict[str, int]:
        """The split to route: `base` (the split without canary) with the canary's share moved to it."""
        if self.canary is None or self.stable is None:
            return dict(base)
        return split_weights(base, self.stable, self.canary, self.canary_weight if self.running else 0)

    @classmethod
    def from_status(cls, status: Mapping[str, Any] | None) -> RolloutState:
        """The state written by `to_status`: status.rollout, plus the analysis and retiring lists."""
        s = status or {}
        if s.get("rollout") is None:
            return cls._from_legacy_status(s)
        r = RolloutStatus.model_validate(s["rollout"])
        return cls(
            stable=r.stable,
            canary=r.canary if r.state is not RolloutPhase.IDLE else None,
            step=r.step,
            canary_weight=r.canary_weight,
            step_started_at=r.step_started_at,
            rolled_back=r.state is RolloutPhase.ROLLED_BACK,
            analysis=_analysis(s),
            baseline=r.baseline,
            retiring=_retiring(s),
            message=s.get("message") or "",
        )

    @classmethod
    def _from_legacy_status(cls, s: Mapping[str, Any]) -> RolloutState:
        """A status written before status.rollout existed: the flat fields, rolled back told by the phase."""
        return cls(
            stable=s.get("stable"),
            canary=s.get("canary"),
            step=s.get("step"),
            canary_weight=int(s.get("canaryWeight") or 0),
            step_started_at=_parse_time(s.get("stepStartedAt")),
            rolled_back=s.get("phase") == ChatbotPhase.ROLLED_BACK.value and s.get("canary") is not None,
            analysis=_analysis(s),
            baseline=s.get("stepBaseline"),
            retiring=_retiring(s),
            message=s.get("message") or "",
        )

    def to_status(self) -> dict[str, Any]:
        """The rollout part of status (camelCase): status.rollout and the flat fields shown to users."""
        rollout = RolloutStatus(state=self.phase, stable=self.stable, canary=self.canary,
                                canary_weight=self.canary_weight if self.canary is not None else 0,
                                step=self.step, step_started_at=self.step_started_at, baseline=self.baseline)
        return {
            "rollout": rollout.to_wire(),
            "stable": self.stable,
            "canary": self.canary,
            "canaryWeight": self.canary_weight if self.canary is not None else None,
            "step": self.step,
            "stepStartedAt": _iso(self.step_started_at) if self.step_started_at else None,
            "analysis": [a.model_dump(by_alias=True, exclude_none=True, mode="json") for a in self.analysis],
            "stepBaseline": self.baseline,  # kept for readers of older statuses; the state reads rollout.baseline
            "retiring": [r.to_dict() for r in self.retiring],
            "message": self.message or None,
        }


@dataclass
class StepOutcome:
    action: Action
    state: RolloutState
    verdict: Verdict | None = None
    reason: str = ""


def _analysis(s: Mapping[str, Any]) -> list[AnalysisResult]:
    return [AnalysisResult.model_validate(a) for a in s.get("analysis") or []]


def _retiring(s: Mapping[str, Any]) -> list[Retiring]:
    return [Retiring(r["name"], _parse_time(r.get("until")) or datetime.min, r.get("uri"), r.get("sha256"))
            for r in s.get("retiring") or [] if r.get("name")]


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------- transitions (pure)


def start_canary(state: RolloutState, stable: str, canary: str, rollout: RolloutSpec, now: datetime,
                 baseline: dict[str, Any] | None = None) -> StepOutcome:
    """Begin a canary of `canary` against `stable` at the first step (or promote at once for [100])."""
    started = replace(state, stable=stable, canary=canary, step=0, canary_weight=step_weight(rollout.steps, 0),
                      step_started_at=now, rolled_back=False, analysis=[], baseline=baseline,
                      message=f"canary {canary} started at {step_weight(rollout.steps, 0)}%")
    if started.canary_weight >= 100:
        return promote(started, rollout, now, "the first step is 100%")
    return StepOutcome(Action.ADVANCE, started, reason=started.message)


def advance(state: RolloutState, rollout: RolloutSpec, now: datetime, baseline: dict[str, Any] | None,
            verdict: Verdict | None = None) -> StepOutcome:
    """The current step passed: go to the next one, or promote after the last."""
    following = next_step(rollout.steps, state.step or 0)
    if following is None:
        return promote(state, rollout, now, "every step passed", verdict)
    weight = step_weight(rollout.steps, following)
    new = replace(state, step=following, canary_weight=weight, step_started_at=now, baseline=baseline,
                  analysis=verdict.results if verdict else state.analysis,
                  message=f"canary {state.canary} advanced to step {following + 1}/{len(rollout.steps)} at {weight}%")
    return StepOutcome(Action.ADVANCE, new, verdict, new.message)


def promote(state: RolloutState, rollout: RolloutSpec, now: datetime, why: str,
            verdict: Verdict | None = None, old_stable_uri: str | None = None) -> StepOutcome:
    """The canary becomes stable; the old stable is retired after the grace period."""
    if state.canary is None:
        return StepOutcome(Action.NONE, state, verdict, "no canary to promote")
    retiring = [r for r in state.retiring if r.name != state.canary]
    if state.stable and state.stable != state.canary:
        grace = parse_duration(rollout.promotion_grace_period)
        retiring.append(Retiring(state.stable, now + grace, old_stable_uri))
    new = RolloutState(stable=state.canary, retiring=retiring,
                       analysis=verdict.results if verdict else state.analysis,
                       message=f"{state.canary} promoted to stable ({why})")
    return StepOutcome(Action.PROMOTE, new, verdict, new.message)


def rollback(state: RolloutState, reason: str, verdict: Verdict | None = None) -> StepOutcome:
    """Canary weight 0 at once; the canary stays named in status so it is not started again."""
    new = replace(state, canary_weight=0, rolled_back=True, baseline=None,
                  analysis=verdict.results if verdict else state.analysis,
                  message=f"canary {state.canary} rolled back: {reason}")
    return StepOutcome(Action.ROLLBACK, new, verdict, reason)


def expire_retiring(state: RolloutState, now: datetime) -> RolloutState:
    """Drop retired variants whose grace period is over (adapter sync then unloads them)."""
    keep = [r for r in state.retiring if r.until > now]
    return state if len(keep) == len(state.retiring) else replace(state, retiring=keep)


def shares_after(base: Mapping[str, int], outcome: StepOutcome, previous_stable: str | None) -> dict[str, int]:
    """The split without a canary after an outcome: a promoted canary takes over the old stable's share."""
    out = dict(base)
    new_stable = outcome.state.stable
    if outcome.action is Action.PROMOTE and new_stable and previous_stable in out and previous_stable != new_stable:
        out[new_stable] = out.get(new_stable, 0) + out.pop(previous_stable)
    return out


async def begin_canary(state: RolloutState, stable: str, canary: str, rollout: RolloutSpec, now: datetime,
                       source: MetricsSource, model: str) -> StepOutcome:
    """Start a canary with the router's counters as its first window's baseline.

    Unreachable metrics do not block the start; the step then has no start time, and
    `run_canary_step` opens its window once the metrics answer.
    """
    try:
        baseline = await source.baseline(model)
    except MetricsError:
        baseline = None
    outcome = start_canary(state, stable, canary, rollout, now, baseline)
    if baseline is None and outcome.action is Action.ADVANCE:
        outcome.state.step_started_at = None
    return outcome


# ---------------------------------------------------------------- one analysis tick


async def run_canary_step(rollout: RolloutSpec, state: RolloutState, source: MetricsSource, now: datetime,
                          *, model: str, paused: bool = False) -> StepOutcome:
    """Judge the running canary once and decide: wait, advance, promote or roll back.

    A failed check rolls back at once, as soon as the canary has `minRequests` requests
    in this step; passing needs every check passed *and* the step's interval elapsed.
    Missing figures (unreachable metrics, too few requests or feedback) never pass.
    """
    if not state.running:
        return StepOutcome(Action.NONE, state, reason="no canary running")
    if paused or rollout.paused:
        return StepOutcome(Action.PAUSED, replace(state, message=f"canary {state.canary} paused at "
                                                  f"{state.canary_weight}%"), reason="paused")
    since = state.step_started_at or now
    if state.baseline is None and state.step_started_at is None:
        # A step without a start (an older status): start its window now.
        try:
            baseline = await source.baseline(model)
        except MetricsError as err:
            return StepOutcome(Action.WAIT, replace(state, message=str(err)), reason=str(err))
        return StepOutcome(Action.WAIT, replace(state, step_started_at=now, baseline=baseline), reason="window started")
    try:
        figures = await source.figures(model, [state.stable, state.canary], since, now, state.baseline)
    except MetricsError as err:
        msg = f"no analysis: {err}"
        return StepOutcome(Action.WAIT, replace(state, message=msg[:4096]), reason=msg)
    verdict = judge(rollout.analysis, figures.get(state.stable or ""), figures.get(state.canary),
                    rollout.min_requests)
    if verdict.decision is Decision.FAIL:
        return rollback(state, verdict.reason, verdict)
    interval = parse_duration(rollout.interval)
    if verdict.decision is Decision.PASS and now - since >= interval:
        try:
            baseline = await source.baseline(model)
        except MetricsError as err:
            msg = f"step passed, but the next window cannot start: {err}"
            return StepOutcome(Action.WAIT, replace(state, analysis=verdict.results, message=msg), verdict, msg)
        return advance(state, rollout, now, baseline, verdict)
    left = max(interval - (now - since), timedelta(0))
    why = verdict.reason if verdict.decision is Decision.WAIT else f"checks pass, {int(left.total_seconds())}s left"
    msg = f"canary {state.canary} at {state.canary_weight}%: {why}"
    return StepOutcome(Action.WAIT, replace(state, analysis=verdict.results, message=msg[:4096]), verdict, why)
