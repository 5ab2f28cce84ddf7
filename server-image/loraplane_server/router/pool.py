"""The vLLM replicas behind the router: least outstanding requests, bounded queues, health.

Each replica takes at most `max_in_flight` requests at once; up to `queue_size`
more wait for it in FIFO order. A request goes to the healthy replica with the
fewest outstanding (running + queued) requests. When even that one's queue is
full, every replica is full and the caller answers 429 with Retry-After rather
than letting requests time out. A replica that refuses connections is marked
unhealthy at once (passive check) and comes back when its /health answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from collections.abc import Callable, Iterable

import aiohttp

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every healthy replica is at max_in_flight with a full queue."""


class NoUpstream(Exception):
    """No healthy replica is left to try."""


class Upstream:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.in_flight = 0
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.healthy = True

    @property
    def outstanding(self) -> int:
        return self.in_flight + len(self.waiting)

    def __repr__(self) -> str:
        return f"Upstream({self.url}, in_flight={self.in_flight}, queued={len(self.waiting)}, healthy={self.healthy})"


class UpstreamPool:
    def __init__(
        self,
        urls: Iterable[str],
        *,
        max_in_flight: int = 32,
        queue_size: int = 64,
        on_queue_change: Callable[[Upstream], None] | None = None,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.queue_size = queue_size
        self.upstreams: list[Upstream] = []
        self._on_queue_change = on_queue_change or (lambda _u: None)
        self.set_urls(urls)

    def set_urls(self, urls: Iterable[str]) -> None:
        """Replace the replica list, keeping the state of replicas that stay."""
        wanted = [u.rstrip("/") for u in urls]
        known = {u.url: u for u in self.upstreams}
        self.upstreams = [known.get(url) or Upstream(url) for url in dict.fromkeys(wanted)]

    def __len__(self) -> int:
        return len(self.upstreams)

    async def acquire(self, exclude: set[str] = frozenset()) -> Upstream:  # type: ignore[assignment]
        """A replica slot; raises QueueFull (answer 429) or NoUpstream (answer 503)."""
        candidates = [u for u in self.upstreams if u.healthy and u.url not in exclude]
        if not candidates:
            raise NoUpstream("no healthy vLLM replica" + (" left to retry on" if exclude else ""))
        best = min(candidates, key=lambda u: u.outstanding)
        if best.in_flight < self.max_in_flight and not best.waiting:
            best.in_flight += 1
            return best
        if len(best.waiting) >= self.queue_size:
            raise QueueFull(f"all {len(candidates)} replicas busy with full queues")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        best.waiting.append(fut)
        self._on_queue_change(best)
        try:
            await fut  # release() hands its slot over, in_flight unchanged
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(best)  # the slot was granted just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    best.waiting.remove(fut)
                self._on_queue_change(best)
            raise
        return best

    def release(self, upstream: Upstream) -> None:
        while upstream.waiting:
            fut = upstream.waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                self._on_queue_change(upstream)
                return
        upstream.in_flight -= 1
        self._on_queue_change(upstream)

    def mark_failed(self, upstream: Upstream, reason: str) -> None:
        if upstream.healthy:
            log.warning("upstream %s marked unhealthy: %s", upstream.url, reason)
        upstream.healthy = False

    async def check_health(self, session: aiohttp.ClientSession, timeout: float = 2.0) -> None:
        """One round of active health checks (GET /health on every replica)."""

        async def one(u: Upstream) -> None:
            try:
                async with session.get(f"{u.url}/health", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    ok = r.status == 200
            except (TimeoutError, aiohttp.ClientError, OSError):
                ok = False
            if ok != u.healthy:
                log.info("upstream %s is %s", u.url, "healthy" if ok else "unhealthy")
            u.healthy = ok

        await asyncio.gather(*(one(u) for u in self.upstreams))

    async def health_loop(self, session: aiohttp.ClientSession, interval: float) -> None:
        while True:
            await self.check_health(session)
            await asyncio.sleep(interval)


async def resolve_dns(target: str) -> list[str]:
    """http://<ip>:<port> for every address of HOST:PORT (a headless Service names every vLLM pod)."""
    host, _, port = target.rpartition(":")
    infos = await asyncio.get_running_loop().getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos})
    return [f"http://[{a}]:{port}" if ":" in a else f"http://{a}:{port}" for a in addresses]


async def dns_loop(pool: UpstreamPool, targets: list[str], static: list[str], interval: float) -> None:
    """Re-resolve the DNS targets periodically; a failed lookup keeps the previous list."""
    while True:
        urls = list(static)
        try:
            for target in targets:
                urls += await resolve_dns(target)
        except OSError as exc:
            log.warning("cannot resolve upstreams %s: %s; keeping %d known", targets, exc, len(pool))
        else:
            pool.set_urls(urls)
        await asyncio.sleep(interval)
