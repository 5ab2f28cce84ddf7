"""The ModelPool controller: the pool's serving children, its routing ConfigMap, its status.

Every trigger (create, spec change, resume, the per-object tick, a ChatbotDeployment that
attached, changed its claim or went away) runs the same idempotent `reconcile_pool`:
settle which chatbots the pool accepts (`tenancy.settle` over the `chatbots_by_pool`
index), apply the children (the same builders as a private pool's), create the routing
ConfigMap once and remove from it the keys of chatbots no longer accepted (each accepted
chatbot writes its own key), emit an InferencePool where the cluster serves the Gateway
API Inference Extension, read residency from the router's admin port, write status.

Annotations:

    loraplane.io/router-admin-url: URL   read /pool/residency here (default: the router Service's admin port)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
import yaml
from pydantic import ValidationError

from .. import API_VERSION, config, kube, metrics
from ..api.modelpool import ModelPool
from ..builders import inference_pool as gie
from ..builders.isolation import build_keys_secret
from ..builders.routing_table import build_routing_configmap, removal_patch, routing_configmap_name
from ..builders.serving import (
    VLLM,
    VLLM_PORT,
    ServingPool,
    build_serving_children,
    derive_pool_max_loras,
    router_admin_url,
    vllm_name,
)
from ..pool_residency import ResidencyError, read_residency
from ..pool_routing import table_file
from ..routing import RoutingTable
from ..status import status_diff
from ..status.modelpool import PoolObserved, compute_pool_status
from ..tenancy import Claim, accepted
from .attachment import pool_verdicts
from .chatbotdeployment import record_failure
from .children import apply_child, delete_owned, delete_unwanted, serves
from .heartbeat import beat

RESOURCE = ("loraplane.io", "v1alpha1", "modelpools")
CHATBOTS = ("loraplane.io", "v1alpha1", "chatbotdeployments")
KIND = "ModelPool"
ANN_ROUTER_ADMIN_URL = "loraplane.io/router-admin-url"
MEMO_KEY = "pools"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@kopf.on.startup()
def keep_pool_locks(memo: kopf.Memo, **_: Any) -> None:
    memo[MEMO_KEY] = {}


def _lock(memo: Any, namespace: str, name: str) -> asyncio.Lock:
    return memo[MEMO_KEY].setdefault((namespace, name), asyncio.Lock())


def _tables(cm: Mapping[str, Any] | None) -> dict[tuple[str, str], RoutingTable]:
    """The routing ConfigMap's tables by (namespace, chatbot); unreadable keys are skipped."""
    out = {}
    for text in ((cm or {}).get("data") or {}).values():
        with contextlib.suppress(ValidationError, yaml.YAMLError, TypeError):
            table = RoutingTable.model_validate(yaml.safe_load(text))
            out[(table.namespace, table.chatbot_name)] = table
    return out


async def reconcile_pool(namespace: str, name: str, memo: Any, pools: Mapping[Any, Iterable[Claim]],
                         logger: Any = None) -> dict[str, Any] | None:
    """One idempotent pass over a ModelPool; returns the status it wrote (None: object gone)."""
    async with _lock(memo, namespace, name):
        with metrics.reconcile("modelpool"):
            obj = await kube.client().get_or_none(API_VERSION, KIND, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            try:
                pool = ModelPool.model_validate(obj)
            except ValidationError as err:
                await record_failure(obj, err, kind=KIND)
                raise kopf.PermanentError(f"invalid spec: {err}") from err
            try:
                return await _reconcile_valid(obj, pool, list(pools.get((namespace, name), [])), logger)
            except (kube.ApiError, asyncio.CancelledError):
                raise
            except Exception as err:
                await record_failure(obj, err, kind=KIND)
                raise


async def _reconcile_valid(obj: Mapping[str, Any], pool: ModelPool, claims: list[Claim], logger: Any) -> dict[str, Any]:
    client = kube.client()
    namespace, name = pool.metadata.namespace or "default", pool.metadata.name
    verdicts = await pool_verdicts(pool, claims)
    keep = set(accepted(verdicts))
    slots = pool.spec.vllm.max_loras or derive_pool_max_loras([c.max_loras for c in claims if c.key in keep])
    children = build_serving_children(obj, ServingPool(pool.spec, slots), config.current())
    children.append(build_keys_secret(obj))
    uid = obj["metadata"]["uid"]
    problems = [p for child in children if (p := await apply_child(child, uid))]
    if p := await apply_child(build_routing_configmap(obj), uid, create_only=True):
        problems.append(p)
    await delete_unwanted(obj, {(c["kind"], c["metadata"]["name"]) for c in children})
    problems += await _write_inference_pool(obj, pool)
    cm = await client.get_or_none("v1", "ConfigMap", namespace, routing_configmap_name(name))
    wanted = {table_file(ns, n) for ns, n in keep}
    stale = sorted(k for k in ((cm or {}).get("data") or {}) if k not in wanted)
    if stale:
        # Chatbots gone, or no longer accepted: their tables leave the pool's routing.
        cm = await client.patch_merge("v1", "ConfigMap", namespace, routing_configmap_name(name), removal_patch(stale))
    vllm = await client.get_or_none("apps/v1", "Deployment", namespace, vllm_name(name))
    ready = int(((vllm or {}).get("status") or {}).get("readyReplicas") or 0)
    admin = pool.metadata.annotations.get(ANN_ROUTER_ADMIN_URL) or router_admin_url(name, namespace)
    try:
        residency = await read_residency(admin)
    except ResidencyError as err:
        residency = None  # the router not up yet, or between replicas: the last reading stays
        if logger is not None:
            logger.debug("residency not read: %s", err)
    new = compute_pool_status(pool, PoolObserved(claims, verdicts, _tables(cm), ready, residency, problems, _now()))
    patch = status_diff(obj.get("status") or {}, new)
    if patch:
        await client.patch_merge(API_VERSION, KIND, namespace, name, {"status": patch}, subresource="status")
    return new


async def _write_inference_pool(obj: Mapping[str, Any], pool: ModelPool) -> list[str]:
    """The pool's InferencePool, where the cluster serves the Gateway API Inference Extension."""
    if not await serves(gie.API_VERSION, gie.PLURAL, max_age=config.current().canary_tick_seconds):
        return []
    child = gie.build_inference_pool(obj, pool.spec, VLLM, VLLM_PORT)
    uid = obj["metadata"]["uid"]
    if child is None:
        await delete_owned(gie.API_VERSION, gie.KIND, pool.metadata.namespace or "default", pool.metadata.name, uid)
        return []
    return [p] if (p := await apply_child(child, uid)) else []


# ---------------------------------------------------------------- kopf wiring


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def on_pool_change(namespace: str, name: str, memo: kopf.Memo, logger: kopf.Logger,
                         chatbots_by_pool: kopf.Index, **_: Any) -> None:
    try:
        await reconcile_pool(namespace, name, memo, chatbots_by_pool, logger)
    except kube.ApiError as err:
        raise kopf.TemporaryError(f"API error: {err}", delay=2) from err


@kopf.daemon(*RESOURCE, cancellation_timeout=5)
async def pool_tick(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                    logger: kopf.Logger, chatbots_by_pool: kopf.Index, **_: Any) -> None:
    """The per-pool heartbeat: residency, ready replicas, namespace labels that changed."""
    await beat(stopped, logger, "pool reconcile", lambda: config.current().canary_tick_seconds,
               lambda: reconcile_pool(namespace, name, memo, chatbots_by_pool, logger))


@kopf.on.event(*CHATBOTS)
async def on_chatbot_claim(event: Mapping[str, Any], namespace: str, name: str, memo: kopf.Memo,
                           chatbots_by_pool: kopf.Index, logger: kopf.Logger, **_: Any) -> None:
    """A chatbot attached, changed its claim (pool, served name) or went away: reconcile that pool now."""
    body = event.get("object") or {}
    ref = (body.get("spec") or {}).get("poolRef") or {}
    deleted = event.get("type") == "DELETED" or bool((body.get("metadata") or {}).get("deletionTimestamp"))
    fingerprint = json.dumps([ref, (body.get("spec") or {}).get("servedName"), deleted], sort_keys=True)
    seen = memo.get("pool_claim")  # this chatbot's own memo
    if seen == fingerprint:
        return
    memo["pool_claim"] = fingerprint
    if seen is None and event.get("type") is None:
        return  # the initial listing: the pools reconcile on their own resume
    refs = [ref, json.loads(seen)[0] if seen else None]  # the pool it names now, and the one it named before
    targets = sorted({(r.get("namespace") or namespace, r["name"]) for r in refs if r and r.get("name")})
    with contextlib.suppress(kube.ApiError, RuntimeError):
        for pool_ns, pool_name in targets:
            await reconcile_pool(pool_ns, pool_name, memo, chatbots_by_pool, logger)
