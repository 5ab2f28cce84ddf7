"""The reconcile loop: make vLLM's adapters equal the pool's, verified, within a disk budget, with backoff.

Every pass reads every chatbot table of the pool, asks vLLM what it holds (a
restarted vLLM has lost its adapters and gets them back), registers what is on
the volume but not in vLLM, fetches and registers what is missing while it
fits the disk budget, and unregisters then deletes adapters no table names.
Registration is cheap (about 10 ms) and vLLM reloads an adapter it evicted
from its GPU slots or CPU cache from its path on the next request, so every
adapter that fits the volume is registered ahead of time.

An adapter that does not fit stays "on-demand": the first request for it makes
vLLM ask our resolver plugin (loraplane_server.vllm_resolver), which calls
`POST /resolve` here; sync makes room by deleting the least recently used idle
copies (unregistered from vLLM first), fetches and verifies the adapter, and
answers with its path; vLLM registers it and the request goes on. A failed
adapter is retried with exponential backoff; the others go on. Ready means:
vLLM answers and every adapter of the pool is registered or on-demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from loraplane.pool_routing import PoolAdapter
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ..table_watch import TableWatcher
from .disk import OnDisk, evictions
from .fetch import AdapterRefused, adapter_bytes, fetch_adapter, published_manifest
from .vllm_client import VllmClient, VllmError

log = logging.getLogger(__name__)

# pending: to fetch and register; loaded: on the volume and registered in vLLM; on-demand: over the disk
# budget, fetched on its first request; resolving: fetched for vLLM's resolver, which registers it.
STATES = ("pending", "loaded", "on-demand", "resolving", "failed")
SERVABLE = frozenset({"loaded", "on-demand", "resolving"})
# How long a copy handed to vLLM's resolver waits for vLLM to register it before sync does.
RESOLVE_GRACE_S = 60.0
# An adapter vLLM ran or queued within this many seconds (two of its stats intervals) is not evicted.
BUSY_S = 20.0
VLLM_ERRORS = (TimeoutError, aiohttp.ClientError, OSError, VllmError)


@dataclass
class AdapterState:
    name: str  # the adapter's name in vLLM: `<namespace>/<chatbot>/<variant>`
    uri: str
    sha256: str | None
    directory: Path  # where its verified copy goes: `<root>/<namespace>/<chatbot>/`
    weight: int = 0  # its traffic percent: heavier adapters are fetched first when the disk is short
    state: str = "pending"
    message: str | None = None
    path: str | None = None  # the verified copy on the volume, while there is one
    size: int | None = None  # bytes on the volume, from its manifest
    failures: int = 0
    next_attempt: float = 0.0
    loaded_at: float | None = None
    last_used: float = 0.0  # epoch seconds: vLLM's lora_requests_info, or a first request
    resolved_at: float | None = None

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def as_dict(self) -> dict:
        return {"name": self.name, "uri": self.uri, "state": self.state, "message": self.message,
                "path": self.path, "onDisk": self.on_disk, "sizeBytes": self.size,
                "lastUsed": self.last_used or None, "failures": self.failures}


@dataclass
class SyncMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.adapters = Gauge("loraplane_adapter_sync_adapters", "Desired adapters by state.", ["state"], registry=r)
        self.operations = Counter(
            "loraplane_adapter_sync_operations_total",
            "Adapter loads, unloads, evictions (disk) and first-request resolves by result.",
            ["operation", "result"], registry=r,
        )
        self.ready = Gauge("loraplane_adapter_sync_ready", "1 when every desired adapter is servable.", registry=r)
        self.reloads = Counter(
            "loraplane_adapter_sync_routing_table_reloads_total", "Routing table loads.", ["result"], registry=r
        )
        self.disk_used = Gauge("loraplane_adapter_sync_disk_used_bytes", "Verified adapter copies on the volume.",
                               registry=r)
        self.disk_budget = Gauge("loraplane_adapter_sync_disk_budget_bytes", "The volume's budget (0: unbounded).",
                                 registry=r)


class AdapterSync:
    def __init__(
        self,
        watcher: TableWatcher,
        vllm: VllmClient,
        root: Path,
        metrics: SyncMetrics | None = None,
        *,
        disk_budget: int | None = None,
        backoff_base: float = 2.0,
        backoff_max: float = 120.0,
        clock=time.monotonic,
        wall_clock=time.time,
    ) -> None:
        self.watcher = watcher
        self.vllm = vllm
        self.root = Path(root)
        self.metrics = metrics or SyncMetrics()
        self.disk_budget = disk_budget
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.wall_clock = wall_clock
        self.adapters: dict[str, AdapterState] = {}
        self.registered: dict[str, str] = {}  # what vLLM last said it holds of ours: name -> path
        self.vllm_error: str | None = None
        self.wake = asyncio.Event()
        # One change to the volume at a time: a first request's eviction and a pass's fetch must not interleave.
        self._disk = asyncio.Lock()

    # --- state -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (
            self.watcher.loaded
            and self.vllm_error is None
            and all(a.state in SERVABLE for a in self.adapters.values())
        )

    @property
    def disk_used(self) -> int:
        return sum(a.size or 0 for a in self.adapters.values() if a.on_disk)

    def status(self) -> dict:
        """What this replica holds: the copies on its volume and the adapters registered in its vLLM."""
        return {
            "ready": self.ready,
            "vllmError": self.vllm_error,
            "routingTableError": self.watcher.last_error,
            "diskBudgetBytes": self.disk_budget,
            "diskUsedBytes": self.disk_used,
            "onDisk": sorted(a.name for a in self.adapters.values() if a.on_disk),
            "registered": sorted(self.registered),
            "adapters": [a.as_dict() for a in self.adapters.values()],
        }

    def _desired(self) -> dict[str, PoolAdapter]:
        return {a.lora_name: a for a in self.watcher.pool.adapters()}

    def _publish_metrics(self) -> None:
        for s in STATES:
            self.metrics.adapters.labels(s).set(sum(a.state == s for a in self.adapters.values()))
        self.metrics.ready.set(1 if self.ready else 0)
        self.metrics.disk_used.set(self.disk_used)
        self.metrics.disk_budget.set(self.disk_budget or 0)

    def _ours(self, path: str) -> bool:
        return bool(path) and Path(path).is_relative_to(self.root)

    # --- one pass ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        if not self.watcher.loaded:
            return
        desired = self._desired()
        for name, pa in desired.items():
            v = pa.variant
            known = self.adapters.get(name)
            if known is None or (known.uri, known.sha256) != (v.adapter_uri, v.sha256):
                state = AdapterState(name, v.adapter_uri, v.sha256, self.root / pa.table.adapter_dir(v).rsplit("/", 1)[0],
                                     weight=v.weight)
                if known is not None:  # new weights under an old name: its recency stays
                    state.last_used = known.last_used
                self.adapters[name] = state
            else:
                known.weight = v.weight
        for name in [n for n in self.adapters if n not in desired]:
            del self.adapters[name]  # its copy goes in the sweep below, once vLLM no longer holds it
        try:
            loaded = await self.vllm.loaded_adapters()
        except VLLM_ERRORS as exc:
            self.vllm_error = f"vLLM at {self.vllm.url} unreachable: {exc}"
            self.registered = {}
            for a in self.adapters.values():
                if a.state == "loaded":
                    a.state, a.message = "pending", "waiting for vLLM"
            self._publish_metrics()
            return
        self.vllm_error = None
        await self._note_activity()

        for name, path in list(loaded.items()):
            # Only adapters this sidecar placed (under its root) are its to unload.
            mine = self.adapters.get(name)
            if self._ours(path) and (mine is None or (mine.path is not None and mine.path != path)):
                await self._unload(name, "no longer in the routing table" if name not in desired else "replaced")
                loaded.pop(name)
        self.registered = {n: p for n, p in loaded.items() if self._ours(p)}
        async with self._disk:  # a first request's fetch renames its copy into place under this lock
            self._sweep_volume()

        now = self.clock()
        # Copies already on the volume (a restarted sidecar) first, then, while the disk lasts,
        # recently used adapters, then the heavier traffic shares.
        order = sorted(self.adapters.values(),
                       key=lambda a: (not self._copy_exists(a), -a.last_used, -a.weight, a.name))
        for a in order:
            if a.path and loaded.get(a.name) == a.path:
                if a.state != "loaded":
                    a.state, a.message, a.loaded_at = "loaded", None, self.clock()
                continue
            if a.next_attempt > now:
                continue
            if a.state == "resolving" and a.resolved_at and now - a.resolved_at < RESOLVE_GRACE_S:
                continue  # vLLM's resolver is registering it
            await self._load(a, loaded)
        self._publish_metrics()

    def _copy_exists(self, a: AdapterState) -> bool:
        """A verified-looking copy of exactly this version is on the volume (from before a restart)."""
        return a.path is not None or bool(a.sha256 and (a.directory / f"{Path(a.name).name}-{a.sha256[:16]}").is_dir())

    async def _note_activity(self) -> None:
        try:
            activity = await self.vllm.lora_activity()
        except VLLM_ERRORS:
            return  # recency is a hint; a vLLM without metrics keeps the order it has
        for name, at in activity.items():
            if name in self.adapters:
                self.adapters[name].last_used = max(self.adapters[name].last_used, at)

    async def _load(self, a: AdapterState, loaded: dict[str, str]) -> None:
        """Fetch (when it fits the budget) and register one adapter."""
        try:
            async with self._disk:
                if not a.on_disk:
                    if a.size is not None and a.size > self._free():
                        a.state = "on-demand"  # known too big for what is free: no manifest read every pass
                        return
                    manifest = await asyncio.to_thread(published_manifest, Path(a.name).name, a.uri, a.sha256)
                    a.size = adapter_bytes(manifest)
                    if a.size > self._free():
                        a.state, a.message = "on-demand", (
                            f"over the disk budget ({self.disk_budget} bytes): fetched on its first request")
                        return
                    fetched = await asyncio.to_thread(
                        fetch_adapter, Path(a.name).name, a.uri, a.directory, a.sha256, manifest)
                    a.path = str(fetched.path)
                    log.info("adapter %s fetched from %s (verified, digest %s)", a.name, a.uri,
                             manifest.digest[:12])
            if loaded.get(a.name) != a.path:
                await self.vllm.load(a.name, a.path)
        except AdapterRefused as exc:
            self._failed(a, "refused", str(exc))
            return
        except VLLM_ERRORS as exc:
            if isinstance(exc, VllmError) and "already" in str(exc).lower():
                # vLLM's resolver registered it between our look and our call: it is loaded.
                pass
            else:
                self._failed(a, "error", f"{a.name}: loading into vLLM failed: {exc}")
                return
        a.state, a.message, a.failures, a.loaded_at = "loaded", None, 0, self.clock()
        # Registration counts as a use: a copy just registered is not the first to leave the disk.
        a.last_used = max(a.last_used, self.wall_clock())
        self.registered[a.name] = a.path
        self.metrics.operations.labels("load", "ok").inc()
        log.info("adapter %s registered in vLLM from %s", a.name, a.path)

    def _free(self) -> float:
        return float("inf") if self.disk_budget is None else self.disk_budget - self.disk_used

    # --- the volume ----------------------------------------------------------------------------

    def _delete_copy(self, a: AdapterState) -> None:
        """Delete an adapter's copy; callers unregister it from vLLM first (or vLLM no longer has it)."""
        if a.path:
            shutil.rmtree(a.path, ignore_errors=True)
        a.path = None

    def _sweep_volume(self) -> None:
        """Delete copies no adapter owns (left by an earlier run or an old version) that vLLM does not use."""
        keep = {a.path for a in self.adapters.values() if a.path} | set(self.registered.values())
        if not self.root.is_dir():
            return
        for ns in self.root.iterdir():
            for bot in ns.iterdir() if ns.is_dir() else ():
                for copy in bot.iterdir() if bot.is_dir() else ():
                    if copy.is_dir() and not copy.name.startswith(".") and str(copy) not in keep:
                        shutil.rmtree(copy, ignore_errors=True)
                        log.info("deleted %s: no adapter of the pool uses it", copy)

    async def resolve(self, name: str) -> str:
        """A first request for `name` is waiting in vLLM: put a verified copy on the volume, return its path.

        Raises KeyError when no table of the pool names it, AdapterRefused when it cannot be served.
        """
        a = self.adapters.get(name)
        if a is None:
            raise KeyError(name)
        a.last_used = self.wall_clock()
        async with self._disk:
            if a.on_disk:
                return a.path  # type: ignore[return-value]
            manifest = await asyncio.to_thread(published_manifest, Path(a.name).name, a.uri, a.sha256)
            a.size = adapter_bytes(manifest)
            await self._make_room(a)
            try:
                fetched = await asyncio.to_thread(fetch_adapter, Path(a.name).name, a.uri, a.directory, a.sha256,
                                                  manifest)
            except AdapterRefused as exc:
                self._failed(a, "refused", str(exc))
                raise
            a.path = str(fetched.path)
        a.state, a.message, a.resolved_at = "resolving", None, self.clock()
        self.metrics.operations.labels("resolve", "ok").inc()
        log.info("adapter %s fetched for its first request (%d bytes)", name, a.size)
        return a.path

    async def _make_room(self, a: AdapterState) -> None:
        await self._note_activity()
        busy = frozenset(n for n, s in self.adapters.items()
                         if s.last_used and self.wall_clock() - s.last_used < BUSY_S)
        held = [OnDisk(s.name, s.size or 0, s.last_used) for s in self.adapters.values() if s.on_disk]
        chosen = evictions(held, a.size or 0, self.disk_budget, busy - {a.name})
        if chosen is None:
            chosen = evictions(held, a.size or 0, self.disk_budget)  # busy ones too, rather than fail the request
        if chosen is None:
            raise AdapterRefused(f"{a.name}: {a.size} bytes do not fit the disk budget of {self.disk_budget} bytes")
        for victim in (self.adapters[n] for n in chosen):
            if victim.name in self.registered:
                await self._unload(victim.name, "evicted from the volume (disk budget)")
            self._delete_copy(victim)
            victim.state, victim.message = "on-demand", "evicted from the volume: fetched again on its next request"
            self.metrics.operations.labels("evict", "ok").inc()

    def _failed(self, a: AdapterState, result: str, message: str) -> None:
        a.failures += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (a.failures - 1)) * random.uniform(0.8, 1.2)
        a.state, a.message, a.next_attempt = "failed", message, self.clock() + delay
        self.metrics.operations.labels("load", result).inc()
        log.error("%s (attempt %d; next in %.0fs)", message, a.failures, delay)

    async def _unload(self, name: str, why: str) -> None:
        try:
            await self.vllm.unload(name)
        except VLLM_ERRORS as exc:
            self.metrics.operations.labels("unload", "error").inc()
            log.error("unloading %s failed: %s", name, exc)
            return
        self.registered.pop(name, None)
        self.metrics.operations.labels("unload", "ok").inc()
        log.info("adapter %s unregistered from vLLM: %s", name, why)

    async def run(self, interval: float) -> None:
        """Reconcile every `interval` seconds, and at once when the table changes."""
        while True:
            try:
                await self.reconcile()
            except Exception:  # one bad pass must not end the sidecar
                log.exception("reconcile pass failed")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval)

    # --- HTTP ---------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/resolve", self._resolve)
        return app

    async def _resolve(self, request: web.Request) -> web.Response:
        """vLLM's resolver plugin: `{"name": <lora name>}` -> `{"path": <verified copy>}`; 404 when the pool has none."""
        try:
            name = (await request.json())["name"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": 'expected {"name": "<namespace>/<chatbot>/<variant>"}'}, status=400)
        try:
            path = await self.resolve(str(name))
        except KeyError:
            return web.json_response({"error": f"no table of the pool names adapter {name}"}, status=404)
        except (AdapterRefused, OSError, VllmError) as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response({"name": name, "path": path})

    async def _readyz(self, _r: web.Request) -> web.Response:
        if self.ready and self.vllm is not None:
            await self._confirm_loaded()
        return web.json_response(self.status(), status=200 if self.ready else 503)

    async def _confirm_loaded(self) -> None:
        """Ask vLLM itself: a vLLM that restarted since the last pass has lost its adapters, and
        the replica must leave the Service now, not one reconcile interval later."""
        try:
            loaded = await asyncio.wait_for(self.vllm.loaded_adapters(), timeout=2)
        except VLLM_ERRORS as exc:
            self.vllm_error = f"vLLM at {self.vllm.url} unreachable: {exc}"
            self.wake.set()
            return
        for a in self.adapters.values():
            if a.state == "loaded" and loaded.get(a.name) != a.path:
                a.state, a.message = "pending", "vLLM no longer holds it (restarted?); reloading"
                self.wake.set()

    async def _healthz(self, _r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _status(self, _r: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _metrics(self, _r: web.Request) -> web.Response:
        self._publish_metrics()
        return web.Response(body=generate_latest(self.metrics.registry), headers={"Content-Type": "text/plain; version=0.0.4"})
