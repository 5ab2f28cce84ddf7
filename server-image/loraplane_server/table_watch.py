"""Live reload of routing.yaml, shared by the router and adapter sync.

The operator mounts the table from a ConfigMap; the kubelet swaps the file
(a symlink flip) when the ConfigMap changes, so the file is polled by content,
not watched with inotify (which misses symlink flips). A table that fails
validation is logged with its reason and the last good one stays in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from loraplane.routing import RoutingTable, load_routing_table

log = logging.getLogger(__name__)


class TableWatcher:
    """Holds the current good routing table and reloads it when the file's content changes."""

    def __init__(
        self,
        path: str | Path,
        *,
        on_change: Callable[[RoutingTable], None] | None = None,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.table: RoutingTable | None = None
        self.last_error: str | None = None
        self._digest: str | None = None
        self._on_change = on_change
        self._on_result = on_result

    def check(self) -> bool:
        """Reload when the content changed; True when a new table took effect."""
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            return self._reject(f"cannot read {self.path}: {exc}", None)
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._digest:
            return False
        try:
            table = load_routing_table(self.path)
        except Exception as exc:  # pydantic ValidationError, YAML errors: all mean "refuse this table"
            return self._reject(f"routing table {self.path} rejected, keeping the last good one: {_one_line(exc)}", digest)
        self._digest = digest
        self.table = table
        self.last_error = None
        log.info("routing table %s loaded: %s", self.path, ", ".join(f"{v.name}={v.weight}" for v in table.variants))
        if self._on_result:
            self._on_result("ok")
        if self._on_change:
            self._on_change(table)
        return True

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


def _one_line(exc: Exception) -> str:
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
