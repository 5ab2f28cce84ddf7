"""A vLLM LoRA resolver plugin: an adapter vLLM does not know is fetched by adapter sync on its first request.

vLLM (with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) asks its registered resolvers
when a request names a model it does not hold; this one asks the adapter sync
sidecar beside it (`POST <LORAPLANE_ADAPTER_SYNC_URL>/resolve`), which checks
that a table of the pool names the adapter, makes room on the volume, fetches
and verifies it, and answers with the local path. vLLM then registers it and
the request goes on: a cold adapter's first request waits, it does not fail.

This module runs inside vLLM's own environment, so it uses the standard library
and vLLM only (never our other packages). It is found through the
`vllm.general_plugins` entry point `loraplane-adapter-resolver`; `python -m
loraplane_server.vllm_resolver install` installs it into an environment (the
Makefile's install-vllm and the vLLM image do).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import sysconfig
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("loraplane.vllm_resolver")

SYNC_URL_ENV = "LORAPLANE_ADAPTER_SYNC_URL"
TIMEOUT_ENV = "LORAPLANE_ADAPTER_RESOLVE_TIMEOUT"
ENTRY_POINT = "loraplane-adapter-resolver"
DISTRIBUTION = "loraplane_vllm_resolver"
VERSION = "1.0"


class AdapterSyncResolver:
    """vLLM's `LoRAResolver` interface (duck-typed: vLLM calls `resolve_lora` on what is registered)."""

    def __init__(self, sync_url: str, timeout: float = 300.0) -> None:
        self.sync_url = sync_url.rstrip("/")
        self.timeout = timeout

    async def resolve_lora(self, base_model_name: str, lora_name: str):
        path = await asyncio.to_thread(self.fetch, lora_name)
        if path is None:
            return None
        from vllm.lora.request import LoRARequest

        # vLLM replaces the id (which must be > 0) with its own counter; the path is the verified copy on the
        # shared volume.
        return LoRARequest(lora_name=lora_name, lora_int_id=1, lora_path=path)

    def fetch(self, lora_name: str) -> str | None:
        """The local path adapter sync placed the adapter at, or None (not in the pool, or refused)."""
        body = json.dumps({"name": lora_name}).encode()
        req = urllib.request.Request(f"{self.sync_url}/resolve", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.load(r)["path"]
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                log.warning("adapter sync could not fetch %s: HTTP %s %s", lora_name, exc.code,
                            exc.read()[:300].decode(errors="replace"))
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("adapter sync at %s unreachable for %s: %s", self.sync_url, lora_name, exc)
            return None


def register() -> None:
    """The entry point vLLM calls in each of its processes; active only where the sidecar's URL is set."""
    url = os.environ.get(SYNC_URL_ENV)
    if not url:
        return
    from vllm.lora.resolver import LoRAResolverRegistry

    timeout = float(os.environ.get(TIMEOUT_ENV, "300"))
    LoRAResolverRegistry.register_resolver("loraplane adapter sync", AdapterSyncResolver(url, timeout))


def write_entry_point(target: Path) -> Path:
    """Write the distribution metadata that makes vLLM find `register` (entry points are read from it)."""
    info = Path(target) / f"{DISTRIBUTION}-{VERSION}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {VERSION}\n")
    (info / "entry_points.txt").write_text(f"[vllm.general_plugins]\n{ENTRY_POINT} = {__name__}:register\n")
    (info / "RECORD").write_text("")
    return info


def install(target: Path) -> None:
    """Install the plugin (this module, its package's __init__, the entry point) into a site-packages."""
    package = Path(target) / "loraplane_server"
    package.mkdir(parents=True, exist_ok=True)
    here = Path(__file__).resolve()
    init = package / "__init__.py"
    if not init.exists():
        init.write_text((here.parent / "__init__.py").read_text())
    (package / here.name).write_text(here.read_text())
    write_entry_point(target)


if __name__ == "__main__":
    if sys.argv[1:2] != ["install"]:
        sys.exit("usage: python -m loraplane_server.vllm_resolver install [site-packages dir]")
    install(Path(sys.argv[2]) if len(sys.argv) > 2 else Path(sysconfig.get_paths()["purelib"]))
