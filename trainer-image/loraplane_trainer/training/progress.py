"""progress.json writer: throttled, atomic, and what the operator copies into FineTuneJob status."""

from __future__ import annotations

import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from loraplane.api.states import RunPhase
from loraplane.storage import RunProgress
from loraplane.storage.uris import filesystem, is_local, local_path

from .logs import log


def write_atomic(uri: str, body: bytes) -> None:
    """Write a small file so readers see the old or the new content, never half of it.

    Local files: write beside, then rename. Object stores: a single PUT is atomic.
    """
    if is_local(uri):
        path = Path(local_path(uri))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
        return
    fs, p = filesystem(uri)
    fs.pipe_file(p, body)


class ProgressWriter:
    """Keeps the run's RunProgress and writes it every `interval` seconds (or at once when forced)."""

    def __init__(self, uri: str, run_id: str, interval: float = 5.0, *, writes: bool = True):
        self.uri = uri
        self.interval = interval
        self.writes = writes  # False on the ranks other than 0 of a several-GPU run: they keep state, write nothing
        self.progress = RunProgress(phase=RunPhase.VALIDATING, run_id=run_id)
        self._last = 0.0

    def update(self, force: bool = False, **fields: Any) -> None:
        data = self.progress.model_dump()
        data.update(fields)
        data["updated_at"] = datetime.now(UTC)
        self.progress = RunProgress.model_validate(data)
        now = time.monotonic()
        if self.writes and (force or now - self._last >= self.interval):
            self._last = now
            try:
                write_atomic(self.uri, self.progress.to_json().encode())
            except Exception as exc:  # progress is advisory: a storage hiccup must not kill training
                log.warning("could not write %s: %s", self.uri, exc)

    def phase(self, phase: RunPhase, message: str | None = None, **fields: Any) -> None:
        log.info("phase %s%s", phase, f": {message}" if message else "")
        self.update(force=True, phase=phase, message=message, **fields)


def eta(done: int, total: int, elapsed: float) -> datetime | None:
    """Linear estimate of when `total` units finish, given `done` took `elapsed` seconds."""
    if done <= 0 or total <= done:
        return None
    return datetime.now(UTC) + timedelta(seconds=elapsed / done * (total - done))
