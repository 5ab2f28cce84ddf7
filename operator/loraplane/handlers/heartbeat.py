"""The per-object heartbeat both serving controllers run as a kopf daemon."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import kopf

from .. import config


async def beat(stopped: kopf.DaemonStopped, logger: kopf.Logger, what: str,
               reconcile_once: Callable[[], Awaitable[object]]) -> None:
    """Run `reconcile_once` every tick (read from the configuration each time) until stopped.

    A failed pass is logged and retried on the next tick: the heartbeat must outlive any one of them.
    """
    while not stopped:
        await stopped.wait(config.current().canary_tick_seconds)
        if stopped:
            break
        try:
            await reconcile_once()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001
            logger.warning("%s failed, retried on the next tick: %s: %s", what, type(err).__name__, err)
