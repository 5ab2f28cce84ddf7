"""The periodic loop every kopf daemon of the operator runs: one pass per tick until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import kopf

# How often a pausing daemon looks at its stop flag.
STOP_POLL_SECONDS = 0.1


async def pause(stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep `seconds`, waking within STOP_POLL_SECONDS once the daemon is stopped.

    Not `await stopped.wait(seconds)`: kopf runs that wait as a task of its own, which a cancellation
    of the daemon (kopf's escalation at shutdown) leaves behind to end in `TimeoutError`, and kopf then
    re-raises that from every task left at exit. Plain sleeps leave nothing behind.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not stopped and (left := deadline - loop.time()) > 0:
        await asyncio.sleep(min(left, STOP_POLL_SECONDS))


async def beat(stopped: kopf.DaemonStopped, logger: kopf.Logger, what: str,
               interval: Callable[[], float], reconcile_once: Callable[[], Awaitable[object]]) -> None:
    """Run `reconcile_once` every `interval()` seconds (read again each tick) until stopped.

    A failed pass is logged and retried on the next tick: the heartbeat must outlive any one of them.
    """
    while not stopped:
        await pause(stopped, interval())
        if stopped:
            break
        try:
            await reconcile_once()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001
            if stopped:
                break
            logger.warning("%s failed, retried on the next tick: %s: %s", what, type(err).__name__, err)
