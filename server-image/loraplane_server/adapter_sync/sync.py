"""The reconcile loop: make vLLM's loaded adapters equal the routing table's, verified, with backoff.

Every pass asks vLLM what it holds (a restarted vLLM has lost its adapters and
gets them back), loads what is missing or changed, and unloads adapters it
loaded earlier that the table no longer names. A failed adapter is retried with
exponential backoff; the others go on. Ready means: vLLM answers and every
adapter of the current table is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web
from loraplane.routing import RoutingTable, Variant
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ..table_watch import TableWatcher
from .fetch import AdapterRefused, fetch_adapter
from .vllm_client import VllmClient, VllmError

log = logging.getLogger(__name__)

STATES = ("pending", "loaded", "failed")


@dataclass
class AdapterState:
    name: str  # the adapter's name in vLLM: `<namespace>/<chatbot>/<variant>`
    uri: str
    sha256: str | None
    directory: Path  # where its verified copy goes: `<root>/<namespace>/<chatbot>/`
    state: str = "pending"
    message: str | None = None
    path: str | None = None
    failures: int = 0
    next_attempt: float = 0.0
    loaded_at: float | None = None

    def as_dict(self) -> dict:
        return {"name": self.name, "uri": self.uri, "state": self.state, "message": self.message,
                "path": self.path, "failures": self.failures}


@dataclass
class SyncMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.adapters = Gauge("loraplane_adapter_sync_adapters", "Desired adapters by state.", ["state"], registry=r)
        self.operations = Counter(
            "loraplane_adapter_sync_operations_total", "Adapter loads and unloads by result.",
            ["operation", "result"], registry=r,
        )
        self.ready = Gauge("loraplane_adapter_sync_ready", "1 when every desired adapter is loaded.", registry=r)
        self.reloads = Counter(
            "loraplane_adapter_sync_routing_table_reloads_total", "Routing table loads.", ["result"], registry=r
        )


class AdapterSync:
    def __init__(
        self,
        watcher: TableWatcher,
        vllm: VllmClient,
        root: Path,
        metrics: SyncMetrics | None = None,
        *,
        backoff_base: float = 2.0,
        backoff_max: float = 120.0,
        clock=time.monotonic,
    ) -> None:
        self.watcher = watcher
        self.vllm = vllm
        self.root = Path(root)
        self.metrics = metrics or SyncMetrics()
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.clock = clock
        self.adapters: dict[str, AdapterState] = {}
        self.vllm_error: str | None = None
        self.wake = asyncio.Event()

    # --- state -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return (
            self.watcher.table is not None
            and self.vllm_error is None
            and all(a.state == "loaded" for a in self.adapters.values())
        )

    def status(self) -> dict:
        return {
            "ready": self.ready,
            "vllmError": self.vllm_error,
            "routingTableError": self.watcher.last_error,
            "adapters": [a.as_dict() for a in self.adapters.values()],
        }

    def _desired(self, table: RoutingTable) -> dict[str, tuple[Variant, Path]]:
        return {table.lora_name(v): (v, self.root / table.adapter_dir(v)) for v in table.adapters()}

    def _publish_metrics(self) -> None:
        for s in STATES:
            self.metrics.adapters.labels(s).set(sum(a.state == s for a in self.adapters.values()))
        self.metrics.ready.set(1 if self.ready else 0)

    # --- one pass ----------------------------------------------------------------------------

    async def reconcile(self) -> None:
        table = self.watcher.table
        if table is None:
            return
        desired = self._desired(table)
        for name, (v, path) in desired.items():
            known = self.adapters.get(name)
            if known is None or (known.uri, known.sha256) != (v.adapter_uri, v.sha256):
                self.adapters[name] = AdapterState(name, v.adapter_uri, v.sha256, path.parent)
        for name in [n for n in self.adapters if n not in desired]:
            del self.adapters[name]
        try:
            loaded = await self.vllm.loaded_adapters()
        except (TimeoutError, aiohttp.ClientError, OSError, VllmError) as exc:
            self.vllm_error = f"vLLM at {self.vllm.url} unreachable: {exc}"
            for a in self.adapters.values():
                if a.state == "loaded":
                    a.state, a.message = "pending", "waiting for vLLM"
            self._publish_metrics()
            return
        self.vllm_error = None

        for name, path in loaded.items():
            # Only adapters this sidecar placed (under its root) are its to unload.
            if name not in desired and Path(path).is_relative_to(self.root):
                await self._unload(name)

        now = self.clock()
        for a in self.adapters.values():
            if a.state == "loaded" and loaded.get(a.name) == a.path:
                continue
            if a.next_attempt > now:
                continue
            await self._load(a, loaded)
        self._publish_metrics()

    async def _load(self, a: AdapterState, loaded: dict[str, str]) -> None:
        try:
            fetched = await asyncio.to_thread(fetch_adapter, Path(a.name).name, a.uri, a.directory, a.sha256)
            path = str(fetched.path)
            if a.name in loaded and loaded[a.name] != path:
                await self.vllm.unload(a.name)  # the same name with other weights: replace it
            if loaded.get(a.name) != path:
                await self.vllm.load(a.name, path)
        except AdapterRefused as exc:
            self._failed(a, "refused", str(exc))
            return
        except (TimeoutError, VllmError, aiohttp.ClientError, OSError) as exc:
            self._failed(a, "error", f"{a.name}: loading into vLLM failed: {exc}")
            return
        a.state, a.path, a.message, a.failures, a.loaded_at = "loaded", path, None, 0, self.clock()
        self.metrics.operations.labels("load", "ok").inc()
        log.info("adapter %s loaded from %s (verified, digest %s)", a.name, a.uri, fetched.manifest.digest[:12])

    def _failed(self, a: AdapterState, result: str, message: str) -> None:
        a.failures += 1
        delay = min(self.backoff_max, self.backoff_base * 2 ** (a.failures - 1)) * random.uniform(0.8, 1.2)
        a.state, a.message, a.next_attempt = "failed", message, self.clock() + delay
        self.metrics.operations.labels("load", result).inc()
        log.error("%s (attempt %d; next in %.0fs)", message, a.failures, delay)

    async def _unload(self, name: str) -> None:
        try:
            await self.vllm.unload(name)
        except (TimeoutError, VllmError, aiohttp.ClientError, OSError) as exc:
            self.metrics.operations.labels("unload", "error").inc()
            log.error("unloading %s failed: %s", name, exc)
            return
        self.metrics.operations.labels("unload", "ok").inc()
        log.info("adapter %s unloaded: no longer in the routing table", name)

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
        return app

    async def _readyz(self, _r: web.Request) -> web.Response:
        if self.ready and self.vllm is not None:
            await self._confirm_loaded()
        return web.json_response(self.status(), status=200 if self.ready else 503)

    async def _confirm_loaded(self) -> None:
        """Ask vLLM itself: a vLLM that restarted since the last pass has lost its adapters, and
        the replica must leave the Service now, not one reconcile interval later."""
        try:
            loaded = await asyncio.wait_for(self.vllm.loaded_adapters(), timeout=2)
        except (TimeoutError, aiohttp.ClientError, OSError, VllmError) as exc:
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
