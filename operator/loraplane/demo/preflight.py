"""Checks before the demo starts anything: clear messages instead of failures half-way."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

# Model copy (~0.5 GB), adapters and checkpoints (~0.1 GB), vLLM's KV cache and logs: a safe floor.
MIN_FREE_BYTES = 2 * 1024**3


class PreflightError(Exception):
    """The machine is not ready for the demo; the message says what to do."""


def check_port(port: int, host: str = "127.0.0.1") -> None:
    """Fail when the router's port is taken."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PreflightError(f"port {port} on {host} is in use ({exc.strerror}): pass --port <free port>") from exc


def check_disk(path: Path, need: int = MIN_FREE_BYTES) -> None:
    """Fail when the output directory's filesystem has too little space left."""
    probe = path
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need:
        raise PreflightError(
            f"out of disk: {free / 1024**3:.1f} GiB free under {probe}, the demo needs about "
            f"{need / 1024**3:.0f} GiB (model copy, adapter, checkpoints, vLLM cache)"
        )
