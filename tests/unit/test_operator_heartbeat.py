"""The daemons' heartbeat loop: a pass per tick, outliving a failed pass, stopping promptly and leaving no task."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from loraplane.handlers.heartbeat import STOP_POLL_SECONDS, beat, pause

LOG = logging.getLogger("test")


class Stopper:
    """kopf's `DaemonStopped` as the loop reads it: truthy once stopped."""

    def __init__(self) -> None:
        self.set = False

    def __bool__(self) -> bool:
        return self.set


def test_one_pass_per_tick_until_stopped():
    stopped, passes = Stopper(), []

    async def once():
        passes.append(1)
        if len(passes) == 3:
            stopped.set = True

    asyncio.run(beat(stopped, LOG, "test", lambda: 0.0, once))
    assert len(passes) == 3


def test_a_failed_pass_is_logged_and_the_next_tick_runs(caplog):
    stopped, passes = Stopper(), []

    async def once():
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("API down")
        stopped.set = True

    asyncio.run(beat(stopped, LOG, "test", lambda: 0.0, once))
    assert len(passes) == 2
    assert "test failed, retried on the next tick: RuntimeError: API down" in caplog.text


def test_a_stop_during_a_long_pause_is_seen_at_once():
    from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter  # the flag kopf hands a daemon

    stopper = FlagSetter()
    stopped = AsyncFlagWaiter(stopper)

    async def main():
        asyncio.get_running_loop().call_later(0.2, stopper.set)
        t0 = time.monotonic()
        await pause(stopped, 60)
        return time.monotonic() - t0

    assert asyncio.run(main()) < 0.2 + 5 * STOP_POLL_SECONDS


def test_a_cancelled_heartbeat_leaves_no_task_behind():
    """kopf re-raises the error of any task left at exit; kopf's own timed wait left one (TimeoutError)."""
    async def once():
        pass

    async def main():
        daemon = asyncio.create_task(beat(Stopper(), LOG, "test", lambda: 30.0, once))
        await asyncio.sleep(0.1)
        daemon.cancel()
        with pytest.raises(asyncio.CancelledError):
            await daemon
        await asyncio.sleep(0)
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(main()) == []
