"""Which vLLM replica of a pool holds which adapter: read from the router's `/pool/residency`.

The router (admin port) answers with what it reads from each replica's vLLM (`/v1/models`,
and `vllm:lora_requests_info` of vLLM's /metrics):

    {"replicas": [{"url": ..., "healthy": bool, "registered": [lora names],
                   "running": [...], "waiting": [...]}]}

The operator copies it into ModelPool `status.residency`, as it reads router metrics for the canary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import ValidationError

from .api.modelpool import ReplicaResidency

RESIDENCY_PATH = "/pool/residency"


class ResidencyError(Exception):
    """The router's residency could not be read or understood."""


def parse_residency(body: Mapping[str, Any]) -> list[ReplicaResidency]:
    """The replicas of a `/pool/residency` answer, sorted by URL (stable status, no churn)."""
    replicas = body.get("replicas") if isinstance(body, Mapping) else None
    if not isinstance(replicas, list):
        raise ResidencyError("residency answer has no replicas list")
    try:
        out = [ReplicaResidency.model_validate(r) for r in replicas]
    except ValidationError as err:
        raise ResidencyError(f"residency answer: {err}") from err
    return sorted((r.model_copy(update={"registered": sorted(r.registered), "running": sorted(r.running),
                                        "waiting": sorted(r.waiting)}) for r in out), key=lambda r: r.url)


async def read_residency(admin_url: str, *, timeout: float = 3.0) -> list[ReplicaResidency]:
    """GET `<admin_url>/pool/residency` from the router."""
    url = admin_url.rstrip("/") + RESIDENCY_PATH
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            resp = await client.get(url)
            resp.raise_for_status()
            return parse_residency(resp.json())
    except (httpx.HTTPError, ValueError) as err:
        raise ResidencyError(f"cannot read {url}: {err}") from err
