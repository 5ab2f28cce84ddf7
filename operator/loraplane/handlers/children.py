"""Writing a controller's children: server-side apply of ours, foreign objects left alone, leftovers deleted."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from typing import Any

from .. import kube
from ..builders.common import owner_selector

# Kinds of children that exist only when the spec asks for them: deleted when it stops asking.
OPTIONAL = (("autoscaling/v2", "HorizontalPodAutoscaler"), ("policy/v1", "PodDisruptionBudget"),
            ("monitoring.coreos.com/v1", "ServiceMonitor"))


def _owned_by(live: Mapping[str, Any], owner_uid: str) -> bool:
    return owner_uid in [r.get("uid") for r in live["metadata"].get("ownerReferences") or []]


async def apply_child(child: dict[str, Any], owner_uid: str, create_only: bool = False) -> str | None:
    """Server-side apply one child of ours; returns a problem, if any. A foreign object of that name is left alone.

    `create_only`: created once, never applied again (a shared pool's routing ConfigMap, whose keys the
    chatbots write: applying the whole would fight them).
    """
    client = kube.client()
    meta = child["metadata"]
    try:
        if create_only:
            with contextlib.suppress(kube.AlreadyExists):
                await client.create(child)
            return None
        if child["kind"] == "Secret":
            # Generated once (the keys): created, never applied again, or every pass would rotate them.
            # Not read back either: the operator may create Secrets but needs no right to read them.
            with contextlib.suppress(kube.AlreadyExists):
                await client.create(child)
            return None
        live = await client.get_or_none(child["apiVersion"], child["kind"], meta["namespace"], meta["name"])
        if live is not None and not _owned_by(live, owner_uid):
            owner = next((r["kind"] for r in meta.get("ownerReferences") or []), "object")
            return f"{child['kind']} {meta['name']} exists and is not owned by this {owner}"
        await client.apply(child)
    except kube.NotFound:
        # The kind is not served here (a ServiceMonitor without prometheus-operator).
        return f"{child['kind']} {meta['name']}: the API server does not serve {child['apiVersion']}"
    return None


async def delete_unwanted(owner: Mapping[str, Any], wanted: set[tuple[str, str]]) -> None:
    """Delete optional children of this owner (by its labels and ownerReference) that the spec no longer asks for."""
    client = kube.client()
    ns = owner["metadata"]["namespace"]
    for api_version, kind in OPTIONAL:
        try:
            found = await client.list(api_version, kind, ns, owner_selector(owner))
        except kube.NotFound:
            continue  # the kind is not served here
        for live in found:
            name = live["metadata"]["name"]
            if (kind, name) not in wanted and _owned_by(live, owner["metadata"]["uid"]):
                await client.delete(api_version, kind, ns, name)


_DISCOVERED: dict[tuple[str, str], tuple[float, bool]] = {}


async def serves(api_version: str, plural: str, max_age: float = 15.0) -> bool:
    """Whether the API server serves `plural` of `api_version` (discovery, asked again after `max_age` s)."""
    seen = _DISCOVERED.get((api_version, plural))
    if seen is not None and time.monotonic() - seen[0] < max_age:
        return seen[1]
    try:
        found = await kube.client().request("GET", f"/apis/{api_version}")
        served = any(r.get("name") == plural for r in found.get("resources") or [])
    except kube.ApiError:
        served = False  # the group/version is not served at all
    _DISCOVERED[(api_version, plural)] = (time.monotonic(), served)
    return served


async def delete_owned(api_version: str, kind: str, namespace: str, name: str, owner_uid: str) -> None:
    """Delete one child of ours if it is there (a foreign object of that name is left alone)."""
    client = kube.client()
    live = await client.get_or_none(api_version, kind, namespace, name)
    if live is not None and _owned_by(live, owner_uid):
        await client.delete(api_version, kind, namespace, name)
