"""The vLLM replicas behind the router: placement, fair per-chatbot shares, bounded queues, health.

Each replica takes at most `max_in_flight` requests at once; up to `queue_size`
more wait for it. A request goes to the replica `placement.place` picks: by load
alone for the base model, or for an adapter its least-loaded home replica within
the load bound (adapter affinity), else the least-loaded one. On a pool shared by
several chatbots each one holds at most its share of the slots and of the queue
while others are active (`fair_share`); a freed slot goes to the waiting chatbot
furthest below its share. A request with no place answers 429 with Retry-After
rather than timing out. A replica that refuses connections is marked unhealthy at
once (passive check). Active checks (GET /health) take a replica out only after
`failure_threshold` failures in a row, as a Kubernetes readiness probe does: one
slow or lost check does not fail every request sent in the next interval. One
passing check brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp

from .fair_share import DEFAULT_ACTIVE_WINDOW, next_tenant, share_limit
from .placement import DEFAULT_AFFINITY_REPLICAS, DEFAULT_LOAD_FACTOR, place

log = logging.getLogger(__name__)

# The tenant of callers that name none (a private pool's one chatbot, tests).
DEFAULT_TENANT = ""
# Failed /health checks in a row before a replica leaves the pool (a readiness probe's failureThreshold).
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_HEALTH_TIMEOUT = 2.0


class QueueFull(Exception):
    """No slot and no queue place for this request (every replica full, or its chatbot over its share)."""

    def __init__(self, message: str, reason: str = "queue_full") -> None:
        super().__init__(message)
        self.reason = reason


class NoUpstream(Exception):
    """No healthy replica is left to try."""


@dataclass(eq=False)
class Waiter:
    tenant: str
    future: asyncio.Future[None]


@dataclass
class Tenant:
    """One chatbot's use of the pool."""

    weight: int = 1
    in_flight: int = 0
    queued: int = 0
    last_seen: float = 0.0


@dataclass(eq=False)
class Upstream:
    url: str
    in_flight: int = 0
    waiting: deque[Waiter] = field(default_factory=deque)
    healthy: bool = True
    failed_checks: int = 0  # active health checks failed in a row

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")

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
        affinity_replicas: int = DEFAULT_AFFINITY_REPLICAS,
        load_factor: float = DEFAULT_LOAD_FACTOR,
        active_window: float = DEFAULT_ACTIVE_WINDOW,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_in_flight = max_in_flight
        self.failure_threshold = failure_threshold
        self.queue_size = queue_size
        self.affinity_replicas = affinity_replicas
        self.load_factor = load_factor
        self.active_window = active_window
        self.upstreams: list[Upstream] = []
        self.tenants: dict[str, Tenant] = {}
        self._clock = clock
        # The placement policy (a benchmark swaps in a random one as its baseline).
        self.place = place
        self._redispatch: asyncio.TimerHandle | None = None
        self._on_queue_change = on_queue_change or (lambda _u: None)
        self.set_urls(urls)

    def set_urls(self, urls: Iterable[str]) -> None:
        """Replace the replica list, keeping the state of replicas that stay."""
        wanted = [u.rstrip("/") for u in urls]
        known = {u.url: u for u in self.upstreams}
        self.upstreams = [known.get(url) or Upstream(url) for url in dict.fromkeys(wanted)]

    def __len__(self) -> int:
        return len(self.upstreams)

    # --- shares --------------------------------------------------------------------------------

    def _active_weights(self, now: float) -> dict[str, int]:
        return {k: t.weight for k, t in self.tenants.items()
                if t.in_flight or t.queued or now - t.last_seen <= self.active_window}

    def limits(self, tenant: str, active: dict[str, int] | None = None) -> tuple[int, int]:
        """(slots, queue places) `tenant` may hold now (`active`: the active weights, when already known)."""
        healthy = sum(1 for u in self.upstreams if u.healthy) or 1
        active = dict(self._active_weights(self._clock()) if active is None else active)
        weight = self.tenants[tenant].weight if tenant in self.tenants else 1
        active.setdefault(tenant, weight)
        return (share_limit(self.max_in_flight * healthy, weight, active),
                share_limit(self.queue_size * healthy, weight, active))

    # --- slots ---------------------------------------------------------------------------------

    async def acquire(self, exclude: set[str] = frozenset(), *, tenant: str = DEFAULT_TENANT,  # type: ignore[assignment]
                      weight: int = 1, adapter: str | None = None) -> Upstream:
        """A replica slot for one request of `tenant` (for `adapter`, None: the base model).

        Raises QueueFull (answer 429) or NoUpstream (answer 503).
        """
        candidates = {u.url: u for u in self.upstreams if u.healthy and u.url not in exclude}
        if not candidates:
            raise NoUpstream("no healthy vLLM replica" + (" left to retry on" if exclude else ""))
        state = self.tenants.setdefault(tenant, Tenant())
        state.weight, state.last_seen = weight, self._clock()
        slots, places = self.limits(tenant)
        best = candidates[self.place(adapter, {url: u.outstanding for url, u in candidates.items()},
                                     self.affinity_replicas, self.load_factor, self.max_in_flight)]
        if best.in_flight < self.max_in_flight and state.in_flight < slots:
            # Waiters still queued here are held back by their own shares (dispatch runs on every change).
            self._grant(best, state)
            return best
        if state.queued >= places and len(self._active_weights(self._clock())) > 1:
            raise QueueFull(f"this chatbot holds its share of the pool ({slots} running, {places} queued)",
                            "over_share")
        if len(best.waiting) >= self.queue_size or state.queued >= places:
            raise QueueFull(f"all {len(candidates)} replicas busy with full queues")
        waiter = Waiter(tenant, asyncio.get_running_loop().create_future())
        best.waiting.append(waiter)
        state.queued += 1
        self._on_queue_change(best)
        self._dispatch_all()
        try:
            await waiter.future  # a slot was granted by _dispatch: in_flight already counts it
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(best, tenant)  # the slot was granted just as we were cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):
                    best.waiting.remove(waiter)
                    state.queued -= 1
                self._on_queue_change(best)
            raise
        return best

    def _grant(self, upstream: Upstream, state: Tenant) -> None:
        upstream.in_flight += 1
        state.in_flight += 1

    def release(self, upstream: Upstream, tenant: str = DEFAULT_TENANT) -> None:
        upstream.in_flight -= 1
        state = self.tenants.get(tenant)
        if state is not None:
            state.in_flight -= 1
        self._dispatch_all()
        self._on_queue_change(upstream)

    def _dispatch_all(self) -> None:
        """Hand free slots to waiters, fairly; when a share alone holds waiters back, look again later."""
        held_back = False
        if any(u.waiting for u in self.upstreams):
            active = self._active_weights(self._clock())
            for upstream in self.upstreams:
                held_back |= self._dispatch(upstream, active)
        if held_back and self._redispatch is None:
            with contextlib.suppress(RuntimeError):  # no running loop: nothing can be waiting
                loop = asyncio.get_running_loop()
                self._redispatch = loop.call_later(self.active_window, self._redispatch_now)

    def _redispatch_now(self) -> None:
        self._redispatch = None
        self._dispatch_all()

    def _dispatch(self, upstream: Upstream, active: dict[str, int]) -> bool:
        """Fill `upstream`'s free slots from its queue; True when waiters stay only because of their shares."""
        while upstream.waiting and upstream.in_flight < self.max_in_flight:
            # A cancelled waiter is skipped here and removed (and uncounted) by its own acquire.
            live = [w for w in upstream.waiting if not w.future.done()]
            eligible: dict[str, int] = {}
            for w in live:
                if w.tenant not in eligible:
                    state = self.tenants[w.tenant]
                    eligible[w.tenant] = int(state.in_flight < self.limits(w.tenant, active)[0])
            chosen = next_tenant(eligible, {k: t.in_flight for k, t in self.tenants.items()},
                                 {k: t.weight for k, t in self.tenants.items()})
            if chosen is None:
                return bool(live)
            waiter = next(w for w in live if w.tenant == chosen)
            upstream.waiting.remove(waiter)
            state = self.tenants[chosen]
            state.queued -= 1
            self._grant(upstream, state)
            waiter.future.set_result(None)
        return False

    def mark_failed(self, upstream: Upstream, reason: str) -> None:
        if upstream.healthy:
            log.warning("upstream %s marked unhealthy: %s", upstream.url, reason)
        upstream.healthy = False

    async def check_health(self, session: aiohttp.ClientSession, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> None:
        """One round of active health checks (GET /health on every replica)."""

        async def one(u: Upstream) -> None:
            try:
                async with session.get(f"{u.url}/health", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    ok = r.status == 200
                    reason = f"HTTP {r.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                ok, reason = False, type(exc).__name__
            self.health_checked(u, ok, reason)

        await asyncio.gather(*(one(u) for u in self.upstreams))

    def health_checked(self, upstream: Upstream, ok: bool, reason: str = "") -> None:
        """Count one active check: out after `failure_threshold` failures in a row, back after one pass."""
        upstream.failed_checks = 0 if ok else upstream.failed_checks + 1
        healthy = ok or (upstream.healthy and upstream.failed_checks < self.failure_threshold)
        if healthy != upstream.healthy:
            log.info("upstream %s is %s%s", upstream.url, "healthy" if healthy else "unhealthy",
                     "" if healthy else f" ({upstream.failed_checks} health checks failed in a row: {reason})")
        upstream.healthy = healthy

    async def health_loop(self, session: aiohttp.ClientSession, interval: float,
                          timeout: float = DEFAULT_HEALTH_TIMEOUT) -> None:
        while True:
            await self.check_health(session, timeout)
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
