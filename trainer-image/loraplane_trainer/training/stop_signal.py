"""SIGTERM during training: finish the current step, checkpoint it, and exit so that the Job retries.

Kubernetes sends SIGTERM on eviction, node drain or a superseding spec change, then waits the
pod's grace period (120 s for training pods) before SIGKILL. The handler only sets a flag; the
loop looks at it at each step boundary, saves a checkpoint and raises `Preempted`, an exit with
code 143 (128 + SIGTERM) that the Job counts as a retryable failure (or ignores, for a
disruption). The retried pod resumes from that checkpoint and redoes no finished step.
"""

from __future__ import annotations

import logging
import signal
import threading

from loraplane.exitcodes import PREEMPTED

from .distributed import Context, sum_scalars

log = logging.getLogger(__name__)


class Preempted(SystemExit):
    """Training stopped on SIGTERM after checkpointing `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(PREEMPTED)
        self.step = step

    def __str__(self) -> str:
        return f"stopped on SIGTERM after checkpointing step {self.step}; the retried run resumes there"


class StopSignal:
    """A SIGTERM flag for the training loop (installed only from the main thread, where signals arrive)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    @classmethod
    def install(cls) -> StopSignal:
        stop = cls()
        if threading.current_thread() is threading.main_thread():
            stop._previous = signal.signal(signal.SIGTERM, stop._handle)
        return stop

    def _handle(self, _signum, _frame) -> None:
        if not self.requested:
            log.warning("SIGTERM: stopping after the current step, with a checkpoint")
        self.requested = True

    def agreed(self, dist: Context) -> bool:
        """Whether to stop now; under several ranks, all stop at the same step if any was signalled."""
        if not dist.enabled:
            return self.requested
        return sum_scalars(dist, 1.0 if self.requested else 0.0)[0] > 0

    def restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
