"""Drive one canary outside a cluster: the operator's step logic, weights written through a `Router`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from ..api.chatbotdeployment import RolloutSpec
from .rollout import Action, RolloutState, Router, StepOutcome, run_canary_step, start_canary
from .sources import MetricsError, MetricsSource


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
        self.state = outcome.state
        self.history.append(outcome)
        base = dict(self.base)
        if outcome.action is Action.PROMOTE and self.stable in base:
            # The promoted canary takes over the old stable's share.
            base[self.candidate] = base.get(self.candidate, 0) + base.pop(self.stable)
            self.base = base
        await self.router.apply(self.state.weights(base), [r.name for r in self.state.retiring])
        return outcome

    async def start(self) -> StepOutcome:
        """Put the canary at its first step and route accordingly."""
        try:
            baseline = await self.source.baseline(self.model)
        except MetricsError:
            baseline = None
        outcome = start_canary(self.state, self.stable, self.candidate, self.rollout, self.clock(), baseline)
        if baseline is None and outcome.action is Action.ADVANCE:
            outcome.state.step_started_at = None  # the window starts once the metrics answer
        return await self._apply(outcome)

    async def tick(self) -> StepOutcome:
        """Judge once; weights change on advance, promotion and rollback."""
        outcome = await run_canary_step(self.rollout, self.state, self.source, self.clock(), model=self.model)
        if outcome.action in (Action.ADVANCE, Action.PROMOTE, Action.ROLLBACK):
            return await self._apply(outcome)
        self.state = outcome.state
        return outcome
