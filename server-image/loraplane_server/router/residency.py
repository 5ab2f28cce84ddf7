"""Which adapters each vLLM replica holds, read from vLLM itself, for `/pool/residency` on the admin port.

`registered` comes from the replica's `/v1/models` (every LoRA it knows: entries with a
`parent`); `running` and `waiting` from the `vllm:lora_requests_info` gauge of its
`/metrics`, whose labels `running_lora_adapters` and `waiting_lora_adapters` list the
adapters of the requests scheduled or queued at its last step (comma-separated), and
`max_lora` its GPU slots. vLLM sets one series per label set to the time it was seen, so
the newest series is the current one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)

LORA_INFO = "vllm:lora_requests_info"


@dataclass
class Residency:
    """One replica's adapters as vLLM last reported them."""

    registered: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    max_loras: int | None = None


def registered_loras(models: object) -> list[str]:
    """LoRA names in a `/v1/models` answer (vLLM lists adapters with their base model as `parent`)."""
    data = models.get("data") if isinstance(models, dict) else None
    if not isinstance(data, list):
        return []
    return sorted(str(m["id"]) for m in data if isinstance(m, dict) and m.get("parent") and m.get("id"))


def lora_activity(exposition: str) -> tuple[list[str], list[str], int | None]:
    """(running, waiting, max_loras) from the newest `vllm:lora_requests_info` series of a /metrics text."""
    newest: tuple[float, dict[str, str]] | None = None
    for family in text_string_to_metric_families(exposition):
        if family.name != LORA_INFO:
            continue
        for sample in family.samples:
            if newest is None or sample.value > newest[0]:
                newest = (sample.value, sample.labels)
    if newest is None:
        return [], [], None
    labels = newest[1]

    def names(key: str) -> list[str]:
        return sorted(n for n in labels.get(key, "").split(",") if n)

    max_lora = labels.get("max_lora", "")
    return names("running_lora_adapters"), names("waiting_lora_adapters"), int(max_lora) if max_lora.isdigit() else None


async def read_residency(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None,
                         timeout: float = 2.0) -> Residency:
    """One replica's residency; raises aiohttp/OS errors when it cannot be read."""
    t = aiohttp.ClientTimeout(total=timeout)
    async with session.get(f"{url}/v1/models", timeout=t, headers=headers) as r:
        r.raise_for_status()
        registered = registered_loras(await r.json(content_type=None))
    async with session.get(f"{url}/metrics", timeout=t, headers=headers) as r:
        r.raise_for_status()
        running, waiting, max_loras = lora_activity(await r.text())
    return Residency(registered, running, waiting, max_loras)


class ResidencyPoller:
    """Polls every replica of a pool and keeps the last answer of each."""

    def __init__(self, pool, upstream_api_key: str | None = None) -> None:
        self.pool = pool
        self.by_url: dict[str, Residency] = {}
        self._headers = {"Authorization": f"Bearer {upstream_api_key}"} if upstream_api_key else {}

    async def poll_once(self, session: aiohttp.ClientSession) -> None:
        async def one(url: str) -> None:
            try:
                self.by_url[url] = await read_residency(session, url, self._headers)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("residency of %s not read: %s", url, exc)
                self.by_url.pop(url, None)

        await asyncio.gather(*(one(u.url) for u in self.pool.upstreams))

    async def run(self, session: aiohttp.ClientSession, interval: float) -> None:
        while True:
            await self.poll_once(session)
            await asyncio.sleep(interval)

    def document(self) -> dict:
        """The `/pool/residency` JSON: `{"replicas": [{url, healthy, registered, running, waiting}]}`."""
        replicas = []
        for u in self.pool.upstreams:
            r = self.by_url.get(u.url, Residency())
            entry = {"url": u.url, "healthy": u.healthy, "registered": r.registered, "running": r.running,
                     "waiting": r.waiting}
            if r.max_loras is not None:
                entry["maxLoras"] = r.max_loras
            replicas.append(entry)
        return {"replicas": replicas}
