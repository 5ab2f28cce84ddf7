"""The daemons' heartbeat loop: passes per tick, outlives a failed pass, stops cleanly even through 3.11's race."""

from __future__ import annotations

import asyncio
import logging

import pytest
from loraplane.handlers.heartbeat import beat


class Stopper:
    """kopf's `DaemonStopped` as the loop uses it: truthy once stopped, `await wait(seconds)`."""

    def __init__(self, stop_after_waits: int, raise_on_stop: bool = False) -> None:
        self.waits = 0
        self.stop_after_waits = stop_after_waits
        self.raise_on_stop = raise_on_stop

    def __bool__(self) -> bool:
        return self.waits >= self.stop_after_waits

    def wait(self, seconds: float):
        async def waited():
            self.waits += 1
            if self and self.raise_on_stop:
                # What asyncio.wait_for raises when kopf's cancellation lands as the timeout fires (cpython#86296).
                raise TimeoutError
            return self
        return waited()


LOG = logging.getLogger("test")


def test_one_pass_per_tick_until_stopped():
    passes = []

    async def once():
        passes.append(1)

    asyncio.run(beat(Stopper(4), LOG, "test", lambda: 0.0, once))
    assert len(passes) == 3


def test_a_failed_pass_is_logged_and_the_next_tick_runs(caplog):
    passes = []

    async def once():
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("API down")

    asyncio.run(beat(Stopper(3), LOG, "test", lambda: 0.0, once))
    assert len(passes) == 2
    assert "test failed, retried on the next tick: RuntimeError: API down" in caplog.text


def test_the_cancellation_turned_timeout_at_shutdown_ends_the_loop_quietly():
    async def once():
        pass

    asyncio.run(beat(Stopper(2, raise_on_stop=True), LOG, "test", lambda: 0.0, once))


def test_a_timeout_while_running_is_not_swallowed():
    class Raising(Stopper):
        def wait(self, seconds):
            async def waited():
                raise TimeoutError
            return waited()

    async def once():
        pass

    with pytest.raises(TimeoutError):
        asyncio.run(beat(Raising(10), LOG, "test", lambda: 0.0, once))
