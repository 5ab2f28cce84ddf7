"""Live reload of a pool's routing tables, shared by the router and adapter sync.

The operator mounts the tables from a ConfigMap (a directory, one file per
chatbot; a single routing.yaml works too); the kubelet swaps the files (a
symlink flip) when the ConfigMap changes, so they are polled by content, not
watched with inotify (which misses symlink flips). A table that fails
validation is logged with its reason and its last good version stays in force;
the other chatbots' tables are untouched.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from loraplane.pool_routing import PoolRouting, load_pool_routing, table_files
from loraplane.routing import RoutingTable

log = logging.getLogger(__name__)


class TableWatcher:
    """Holds the pool's current good tables and reloads them when the files' content changes."""

    def __init__(
        self,
        path: str | Path,
        *,
        on_change: Callable[[PoolRouting], None] | None = None,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.pool = PoolRouting()
        self.last_error: str | None = None
        self._digest: str | None = None
        self._loaded = False
        self._on_change = on_change
        self._on_result = on_result

    @property
    def table(self) -> RoutingTable | None:
        """The one table of a private pool (None before the first good load or on a shared pool)."""
        return self.pool.only

    @property
    def loaded(self) -> bool:
        """True once some good table is in force."""
        return self._loaded and not self.pool.empty

    def check(self) -> bool:
        """Reload when the content changed; True when new tables took effect."""
        try:
            digest = self._content_digest()
        except OSError as exc:
            return self._reject(f"cannot read {self.path}: {exc}", None)
        if digest == self._digest:
            return False
        pool = load_pool_routing(self.path, previous=self.pool)
        self._digest = digest
        errors = [f"routing table {self.path / f if self.path.is_dir() else self.path} rejected, keeping the last "
                  f"good one: {reason}" for f, reason in sorted(pool.errors.items())]
        errors += [f"routing table {f} claims a served name another table holds: not served" for f in pool.shadowed()]
        if pool.tables == self.pool.tables and self._loaded:
            return self._reject("; ".join(errors), digest) if errors else False
        self.pool = pool
        self._loaded = True
        for table in pool.served():
            log.info("routing table %s loaded: %s", table.key, ", ".join(f"{v.name}={v.weight}" for v in table.variants))
        if errors:
            self._reject("; ".join(errors), digest)
        else:
            self.last_error = None
        if self._on_result:
            self._on_result("ok")
        if self._on_change:
            self._on_change(pool)
        return True

    def _content_digest(self) -> str:
        h = hashlib.sha256()
        for file in table_files(self.path):
            h.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
        return h.hexdigest()

    def _reject(self, message: str, digest: str | None) -> bool:
        # Remember the bad content's digest so one bad file logs once, not on every poll.
        if digest is not None:
            self._digest = digest
        if message != self.last_error:
            log.error("%s", message)
            if self._on_result:
                self._on_result("rejected")
        self.last_error = message
        return False

    async def run(self, interval: float) -> None:
        """Poll forever."""
        while True:
            await asyncio.sleep(interval)
            self.check()
