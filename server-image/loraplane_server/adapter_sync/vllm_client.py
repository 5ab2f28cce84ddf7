"""vLLM's runtime LoRA API (needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True on the server)."""

from __future__ import annotations

import aiohttp


class VllmError(Exception):
    pass


class VllmClient:
    def __init__(self, session: aiohttp.ClientSession, url: str, api_key: str | None = None) -> None:
        self.session = session
        self.url = url.rstrip("/")
        # vLLM started with an API key (VLLM_API_KEY) refuses /v1/* without it, the adapter API included.
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def loaded_adapters(self) -> dict[str, str]:
        """LoRA name -> path of every adapter vLLM holds (models with a parent are adapters)."""
        async with self.session.get(f"{self.url}/v1/models", headers=self.headers) as r:
            if r.status != 200:
                raise VllmError(f"GET /v1/models: HTTP {r.status}: {(await r.text())[:300]}")
            data = await r.json()
        return {m["id"]: m.get("root") or "" for m in data.get("data", []) if m.get("parent")}

    async def load(self, name: str, path: str) -> None:
        await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def unload(self, name: str) -> None:
        await self._post("/v1/unload_lora_adapter", {"lora_name": name})

    async def _post(self, path: str, body: dict) -> None:
        async with self.session.post(f"{self.url}{path}", json=body, headers=self.headers) as r:
            if r.status != 200:
                raise VllmError(f"POST {path} {body}: HTTP {r.status}: {(await r.text())[:500]}")

    async def lora_activity(self) -> dict[str, float]:
        """LoRA name -> when vLLM last ran or queued a request for it (epoch seconds), from its /metrics.

        vLLM sets `vllm:lora_requests_info{running_lora_adapters, waiting_lora_adapters}` to the
        current time on each stats interval; the newest sample naming an adapter is its last use.
        """
        async with self.session.get(f"{self.url}/metrics", headers=self.headers) as r:
            if r.status != 200:
                raise VllmError(f"GET /metrics: HTTP {r.status}")
            text = await r.text()
        return lora_activity(text)


def lora_activity(exposition: str) -> dict[str, float]:
    """Last use per LoRA name from vLLM's Prometheus exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        if family.name != "vllm:lora_requests_info":
            continue
        for sample in family.samples:
            for label in ("running_lora_adapters", "waiting_lora_adapters"):
                for name in filter(None, sample.labels.get(label, "").split(",")):
                    seen[name] = max(seen.get(name, 0.0), sample.value)
    return seen
