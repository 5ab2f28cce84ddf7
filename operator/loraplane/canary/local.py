"""Drive one canary outside a cluster: the operator's own start, step and outcome rules, weights through a `Router`.

Thin by design: starting (`begin_canary`), judging (`run_canary_step`) and the split
after an outcome (`shares_after`) are the functions `reconcile_rollout` uses in the
operator; this class only keeps the state in memory instead of in status.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ..api.base import parse_duration
from ..api.chatbotdeployment import RolloutSpec
from .rollout import Action, RolloutState, Router, StepOutcome, begin_canary, run_canary_step, shares_after
from .sources import MetricsSource


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LocalCanary:
    """A canary of `canary` against `stable`, judged on `source`'s figures and applied through `router`."""

    def __init__(self, rollout: RolloutSpec, *, stable: str, canary: str, model: str, source: MetricsSource,
                 router: Router, base_weights: Mapping[str, int] | None = None,
                 clock: Callable[[], datetime] = _utcnow):
        self.rollout, self.model, self.source, self.router = rollout, model, source, router
        self.stable, self.candidate = stable, canary
        self.base = dict(base_weights or {stable: 100})
        self.clock = clock
        self.state = RolloutState(stable=stable)
        self.history: list[StepOutcome] = []

    async def _apply(self, outcome: StepOutcome) -> StepOutcome:
        self.base = shares_after(self.base, outcome, self.state.stable)
        self.state = outcome.state
        self.history.append(outcome)
        await self.router.apply(self.state.weights(self.base), [r.name for r in self.state.retiring])
        return outcome

    async def start(self) -> StepOutcome:
        """Put the canary at its first step and route accordingly."""
        return await self._apply(await begin_canary(self.state, self.stable, self.candidate, self.rollout,
                                                    self.clock(), self.source, self.model))

    def interval_left(self) -> float:
        """Seconds until the current step's interval has elapsed (0 when it has, or no step runs)."""
        if self.state.step_started_at is None:
            return 0.0
        ends = self.state.step_started_at + parse_duration(self.rollout.interval)
        return max((ends - self.clock()).total_seconds(), 0.0)

    async def tick(self) -> StepOutcome:
        """Judge once; weights change on advance, promotion and rollback."""
        outcome = await run_canary_step(self.rollout, self.state, self.source, self.clock(), model=self.model)
        if outcome.action in (Action.ADVANCE, Action.PROMOTE, Action.ROLLBACK):
            return await self._apply(outcome)
        self.state = outcome.state
        return outcome
