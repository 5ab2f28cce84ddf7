"""The periodic loop every kopf daemon of the operator runs: one pass per tick until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import kopf


async def pause(stopped: kopf.DaemonStopped, seconds: float) -> None:
    """Sleep `seconds`, waking early when the daemon is stopped.

    Python 3.11's `asyncio.wait_for` (inside kopf's `stopped.wait`) turns a cancellation that lands as its
    timeout fires into `TimeoutError` (cpython#86296). kopf cancels a daemon that outlives its
    `cancellation_timeout`, so that race is real at shutdown; the caller checks `stopped` next either way.
    """
    try:
        await stopped.wait(seconds)
    except TimeoutError:
        if not stopped:
            raise


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
