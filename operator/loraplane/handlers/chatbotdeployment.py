"""The ChatbotDeployment controller: children from the builders, the rollout from `loraplane.canary`.

Every trigger (create, spec change, resume, the per-object tick, a FineTuneJob that
published a version) runs the same idempotent `reconcile`: read the object fresh,
resolve its adapters, move the rollout one tick, apply the children and the
routing-table ConfigMap (server-side apply, field manager `loraplane-operator`),
delete the optional children the spec no longer asks for (found by owner and label),
then write status once. Manual control is by annotations, which the
`loraplane promote|abort|pause|resume` commands set:

    loraplane.io/promote: "true"   promote the running canary now
    loraplane.io/abort: "true"     roll the running canary back now
    loraplane.io/paused: "true"    hold the canary at its step (as spec.rollout.paused)
    loraplane.io/metrics-url: URL[,URL]  read router figures from these /metrics URLs
    loraplane.io/router-url: URL         send probes to this router (default: the router Service)

A ChatbotDeployment with `poolRef` has no serving children: it is served by its
ModelPool (`handlers.modelpool`). Its pass settles whether the pool accepts it
(`tenancy.settle`, over the `chatbots_by_pool` index) and, when it does, writes its
own key of the pool's routing ConfigMap (a JSON merge patch naming only that key);
when it does not, it removes its key. Without `poolRef` it owns a private pool:
the same children through the same builders, named after it.

Runtime state (a lock and the probe results of each object) lives in kopf's memo:
a registry set at start-up, shared by every object's copy of the memo, because a
FineTuneJob's event reconciles the ChatbotDeployments that follow it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from .. import API_VERSION, config, kube, metrics
from ..api.chatbotdeployment import ChatbotDeployment, ChatbotDeploymentSpec
from ..api.modelpool import ModelPool
from ..api.states import ChatbotPhase, Reason
from ..builders.common import owner_selector
from ..builders.isolation import build_keys_secret
from ..builders.routing_table import (
    TableOwner,
    build_routing_configmap,
    build_routing_table,
    removal_patch,
    routing_configmap_name,
    served_base_model,
    served_name,
    table_patch,
)
from ..builders.serving import (
    ROUTER,
    ROUTER_ADMIN_PORT,
    ROUTER_PORT,
    build_serving_children,
    endpoint,
    router_name,
    vllm_name,
)
from ..canary import (
    Action,
    EntryResolution,
    MetricsSource,
    ProbedSource,
    PrometheusSource,
    RolloutResult,
    RolloutState,
    RouterMetricsSource,
    load_probes,
    reconcile_rollout,
    resolve,
)
from ..canary.human import HumanEvaluatedSource
from ..canary.rollout import ANN_ABORT, ANN_PAUSED, ANN_PROMOTE
from ..pool_routing import table_file
from ..status import ConditionSet, kstatus, status_diff
from ..status.chatbotdeployment import Observed, compute_status
from ..storage import read_manifest
from ..tenancy import Claim, Verdict
from .attachment import claim_of, pool_verdicts
from .children import apply_child as _apply
from .children import delete_unwanted as _delete_unwanted
from .heartbeat import beat

RESOURCE = ("loraplane.io", "v1alpha1", "chatbotdeployments")
FINETUNEJOBS = ("loraplane.io", "v1alpha1", "finetunejobs")
KIND = "ChatbotDeployment"
ANN_METRICS_URL = "loraplane.io/metrics-url"
ANN_ROUTER_URL = "loraplane.io/router-url"  # where probes are sent (default: the router Service)
MEMO_KEY = "chatbots"
POOL = "ModelPool"
# The digest a chatbot's table lists while its key Secret cannot be read: no key hashes to it, so
# a chatbot that asks for API keys fails closed (401 for everyone) instead of open.
LOCKED_DIGEST = "0" * 64


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@dataclass
class Runtime:
    """What the controller keeps in memory for one ChatbotDeployment (rebuilt after a restart)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    probe_results: dict[str, Any] = field(default_factory=dict)


def _runtime(memo: Any, namespace: str, name: str) -> Runtime:
    return memo[MEMO_KEY].setdefault((namespace, name), Runtime())


@kopf.on.startup()
def keep_runtime(memo: kopf.Memo, **_: Any) -> None:
    memo[MEMO_KEY] = {}


# ---------------------------------------------------------------- children


# ---------------------------------------------------------------- inputs


def _read_manifest(uri: str):
    try:
        return read_manifest(uri)
    except Exception as err:  # noqa: BLE001  any storage error means: not servable, with the reason
        return err


async def _inputs(ns: str, spec: ChatbotDeploymentSpec) -> list[EntryResolution]:
    client = kube.client()
    ftjs: dict[str, Any] = {}
    manifests: dict[str, Any] = {}
    for a in spec.adapters:
        if a.fine_tune_job_ref and a.fine_tune_job_ref.name not in ftjs:
            ftjs[a.fine_tune_job_ref.name] = await client.get_or_none(API_VERSION, "FineTuneJob", ns,
                                                                      a.fine_tune_job_ref.name)
        elif a.uri and a.uri not in manifests:
            manifests[a.uri] = await asyncio.to_thread(_read_manifest, a.uri)
    return resolve(spec, ftjs, manifests)


def _router_owner(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec) -> dict[str, Any]:
    """What owns the router serving this chatbot: its ModelPool, or itself (its private pool)."""
    meta = obj["metadata"]
    if spec.pool_ref is None:
        return {"kind": KIND, "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
    return {"kind": POOL, "metadata": {"name": spec.pool_ref.name,
                                       "namespace": spec.pool_ref.namespace or meta["namespace"]}}


async def metrics_source(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec,
                         probe_results: dict[str, Any]) -> MetricsSource:
    """The figures source, with probe exact match and the human win rate added when they are configured."""
    source = await _figures_source(obj, spec)
    if spec.rollout.analysis.min_human_win_rate is not None:
        uris = {a["name"]: a["uri"] for a in (obj.get("status") or {}).get("adapters") or [] if a.get("uri")}
        source = HumanEvaluatedSource(source, uris)
    uri = spec.rollout.analysis.probe_set_uri
    if not uri:
        return source
    meta = obj["metadata"]
    try:
        probes = await asyncio.to_thread(load_probes, uri)
    except (OSError, ValueError) as err:
        raise MetricsProblem(f"probe set {uri}: {err}") from err
    owner = _router_owner(obj, spec)["metadata"]
    router = (meta.get("annotations") or {}).get(ANN_ROUTER_URL) or \
        f"http://{router_name(owner['name'])}.{owner['namespace']}.svc:{ROUTER_PORT}"
    keys = await _api_keys(meta["namespace"], spec)
    return ProbedSource(source, router, probes, cache=probe_results, served_name=served_name(spec, meta["name"]),
                        api_key=keys[0] if keys else None)


class MetricsProblem(Exception):
    """The analysis cannot be set up (e.g. an unreadable probe set)."""


async def _figures_source(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec) -> MetricsSource:
    """Prometheus when configured; else the router's own /metrics (admin port), every running router pod summed.

    Either way only this chatbot's series count: namespace + chatbot labels.
    """
    own_ns, own_name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if spec.rollout.analysis.prometheus_url:
        return PrometheusSource(spec.rollout.analysis.prometheus_url, namespace=own_ns, chatbot=own_name)
    chatbot = (own_ns, own_name)
    urls = (obj["metadata"].get("annotations") or {}).get(ANN_METRICS_URL)
    if urls:
        return RouterMetricsSource([u.strip() for u in urls.split(",") if u.strip()], chatbot=chatbot)
    owner = _router_owner(obj, spec)
    ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    pods = await kube.client().list("v1", "Pod", ns, owner_selector(owner, ROUTER))
    ips = [p["status"]["podIP"] for p in pods
           if (p.get("status") or {}).get("podIP") and (p["status"].get("phase") == "Running")]
    if ips:
        return RouterMetricsSource([f"http://{ip}:{ROUTER_ADMIN_PORT}/metrics" for ip in sorted(ips)], chatbot=chatbot)
    return RouterMetricsSource(f"http://{router_name(name)}.{ns}.svc:{ROUTER_ADMIN_PORT}/metrics", chatbot=chatbot)


# ---------------------------------------------------------------- reconcile


async def reconcile(namespace: str, name: str, memo: Any, logger: Any = None,
                    pools: Mapping[Any, Iterable[Claim]] | None = None) -> dict[str, Any] | None:
    """One idempotent pass over a ChatbotDeployment; returns the status it wrote (None: object gone).

    `pools` is the `chatbots_by_pool` index (the claims on each pool).
    """
    runtime = _runtime(memo, namespace, name)
    async with runtime.lock:
        with metrics.reconcile("chatbotdeployment"):
            obj = await kube.client().get_or_none(API_VERSION, KIND, namespace, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return None
            try:
                cbd = ChatbotDeployment.model_validate(obj)
            except ValidationError as err:
                await record_failure(obj, err)
                raise kopf.PermanentError(f"invalid spec: {err}") from err
            try:
                if cbd.spec.pool_ref is not None:
                    return await _reconcile_on_pool(obj, cbd, runtime, logger, pools or {})
                return await _reconcile_valid(obj, cbd, runtime, logger)
            except (kube.ApiError, asyncio.CancelledError):
                raise  # the API server's trouble, retried as it is
            except Exception as err:
                await record_failure(obj, err)
                raise


async def _reconcile_valid(obj: Mapping[str, Any], cbd: ChatbotDeployment, runtime: Runtime,
                           logger: Any) -> dict[str, Any]:
    namespace, name = cbd.metadata.namespace, cbd.metadata.name
    metrics.init_cbd_series(namespace, name)
    now = _now()
    entries, result, problems = await _decide(obj, cbd, runtime, now)
    problems += await _write_children(obj, cbd, entries, result)
    vllm = await kube.client().get_or_none("apps/v1", "Deployment", namespace, vllm_name(name))
    ready = int(((vllm or {}).get("status") or {}).get("readyReplicas") or 0)
    new = compute_status(cbd, Observed(entries, result, ready, problems, now))
    await _write_status(obj, new)
    _report(obj, new, result, logger)
    return new


RECONCILE_FAILED = "ReconcileFailed"


async def record_failure(obj: Mapping[str, Any], err: BaseException, kind: str = KIND) -> None:
    """A pass that failed still says so in status (Ready False, Stalled), instead of leaving it frozen."""
    prev = obj.get("status") or {}
    meta = obj["metadata"]
    message = f"reconcile failed: {type(err).__name__}: {err}"[:1024]
    conds = ConditionSet(prev.get("conditions"), generation=meta.get("generation"),
                         now=_now().isoformat().replace("+00:00", "Z"))
    kstatus(conds, ready=False, reason=RECONCILE_FAILED, message=message, reconciling=False, stalled=True)
    patch = {"conditions": conds.to_list(), "message": message, "observedGeneration": meta.get("generation")}
    await kube.client().patch_merge(API_VERSION, kind, meta["namespace"], meta["name"], {"status": patch},
                                    subresource="status")


async def _decide(obj: Mapping[str, Any], cbd: ChatbotDeployment, runtime: Runtime,
                  now: datetime) -> tuple[list[EntryResolution], RolloutResult, list[str]]:
    """Resolve the adapters and move the rollout one tick."""
    spec, annotations, status = cbd.spec, cbd.metadata.annotations, obj.get("status") or {}
    entries = await _inputs(cbd.metadata.namespace, spec)
    problems: list[str] = []
    try:
        source = await metrics_source(obj, spec, runtime.probe_results)
    except MetricsProblem as err:
        # Without its probes a configured probe check never passes: the canary holds, status says why.
        source = await _figures_source(obj, spec)
        problems.append(str(err))
    result = await reconcile_rollout(
        spec, entries, RolloutState.from_status(status), status.get("weights") or {}, source, now,
        model=served_name(spec, cbd.metadata.name),
        paused=annotations.get(ANN_PAUSED) == "true",
        promote_requested=annotations.get(ANN_PROMOTE) == "true",
        abort_requested=annotations.get(ANN_ABORT) == "true",
    )
    return entries, result, problems


async def _api_keys(namespace: str, spec: ChatbotDeploymentSpec) -> list[str]:
    """The chatbot's accepted API keys, read from its Secret (kept in memory only: the probes use one)."""
    ref = spec.auth.api_key_secret_ref
    if ref is None:
        return []
    secret = await kube.client().get_or_none("v1", "Secret", namespace, ref.name)
    data = (secret or {}).get("data") or {}
    values = [data[ref.key]] if ref.key is not None and ref.key in data else [] if ref.key else list(data.values())
    return sorted({base64.b64decode(v).decode("utf-8", "replace") for v in values if v})


async def _api_key_digests(namespace: str, spec: ChatbotDeploymentSpec) -> tuple[tuple[str, ...], list[str]]:
    """SHA-256 of each accepted API key (the keys themselves go nowhere); and the problem, if any."""
    ref = spec.auth.api_key_secret_ref
    if ref is None:
        return (), []
    digests = sorted({hashlib.sha256(k.encode()).hexdigest() for k in await _api_keys(namespace, spec)})
    if not digests:
        what = f"key {ref.key} of Secret {ref.name}" if ref.key else f"Secret {ref.name}"
        return (LOCKED_DIGEST,), [f"auth.apiKeySecretRef: {what} not found or empty: every request is refused"]
    return tuple(digests), []


async def _write_children(obj: Mapping[str, Any], cbd: ChatbotDeployment, entries: list[EntryResolution],
                          result: RolloutResult) -> list[str]:
    """Apply the private pool's children and the routing table; returns what could not be applied."""
    ranks = [v.lora_rank for r in entries for v in r.versions]
    children = build_serving_children(obj, cbd.spec, config.current(), ranks)
    digests, problems = await _api_key_digests(cbd.metadata.namespace, cbd.spec)
    table = build_routing_table(cbd.metadata.name, cbd.spec, result.variants, result.weights, result.retained,
                                TableOwner(namespace=cbd.metadata.namespace, api_key_sha256=digests))
    children.append(build_routing_configmap(obj, table))
    children.append(build_keys_secret(obj))
    problems += [p for child in children if (p := await _apply(child, obj["metadata"]["uid"]))]
    await _delete_unwanted(obj, {(c["kind"], c["metadata"]["name"]) for c in children})
    return problems


# ---------------------------------------------------------------- on a ModelPool


async def _reconcile_on_pool(obj: Mapping[str, Any], cbd: ChatbotDeployment, runtime: Runtime, logger: Any,
                             pools: Mapping[Any, Iterable[Claim]]) -> dict[str, Any]:
    """A chatbot on a ModelPool: settle its acceptance, write (or remove) its key of the pool's routing."""
    client = kube.client()
    namespace, name, ref = cbd.metadata.namespace, cbd.metadata.name, cbd.spec.pool_ref
    assert ref is not None
    pool_ns = ref.namespace or namespace
    metrics.init_cbd_series(namespace, name)
    now = _now()
    entries, result, problems = await _decide(obj, cbd, runtime, now)
    live_pool = await client.get_or_none(API_VERSION, POOL, pool_ns, ref.name)
    own = claim_of(namespace, name, obj["spec"], obj["metadata"].get("creationTimestamp") or "")
    key = table_file(namespace, name)
    ready, replicas = 0, 0
    if live_pool is None:
        verdict = Verdict(False, Reason.POOL_NOT_FOUND, f"ModelPool {pool_ns}/{ref.name} not found")
    else:
        pool = ModelPool.model_validate(live_pool)
        claims = {c.key: c for c in pools.get((pool_ns, ref.name), [])}
        claims[own.key] = own  # this pass's view of itself is the freshest
        verdict = (await pool_verdicts(pool, claims.values()))[own.key]
        cm = routing_configmap_name(ref.name)
        if verdict.accepted:
            digests, key_problems = await _api_key_digests(namespace, cbd.spec)
            problems += key_problems
            table = build_routing_table(
                name, cbd.spec, result.variants, result.weights, result.retained,
                TableOwner(namespace=namespace, base_model=served_base_model(pool.spec.base_model, ref.name),
                           api_key_sha256=digests))
            live_cm = await client.get_or_none("v1", "ConfigMap", pool_ns, cm)
            patch = table_patch(table)
            if live_cm is None:
                problems.append(f"ModelPool {pool_ns}/{ref.name} has no routing ConfigMap yet")
            elif (live_cm.get("data") or {}).get(key) != patch["data"][key]:
                await client.patch_merge("v1", "ConfigMap", pool_ns, cm, patch)  # only this chatbot's key
        else:
            live_cm = await client.get_or_none("v1", "ConfigMap", pool_ns, cm)
            if key in ((live_cm or {}).get("data") or {}):
                await client.patch_merge("v1", "ConfigMap", pool_ns, cm, removal_patch([key]))
        vllm = await client.get_or_none("apps/v1", "Deployment", pool_ns, vllm_name(ref.name))
        ready = int(((vllm or {}).get("status") or {}).get("readyReplicas") or 0)
        replicas = pool.spec.replicas
    new = compute_status(cbd, Observed(entries, result, ready, problems, now, verdict=verdict, replicas=replicas,
                                       endpoint=endpoint(ref.name, pool_ns)))
    await _write_status(obj, new)
    _report(obj, new, result, logger)
    return new


async def _write_status(obj: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Patch what changed in status, then consume the one-shot promote/abort annotations."""
    client = kube.client()
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    patch = status_diff(obj.get("status") or {}, new)
    if patch:
        await client.patch_merge(API_VERSION, KIND, ns, name, {"status": patch}, subresource="status")
    annotations = obj["metadata"].get("annotations") or {}
    consumed = {k: None for k in (ANN_PROMOTE, ANN_ABORT) if k in annotations}
    if consumed:
        await client.patch_merge(API_VERSION, KIND, ns, name, {"metadata": {"annotations": consumed}})


def _report(obj: Mapping[str, Any], new: Mapping[str, Any], result: RolloutResult, logger: Any) -> None:
    """Metrics, events and a log line of a reconcile's outcome."""
    ns, name, old_phase = obj["metadata"]["namespace"], obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
    metrics.set_cbd_phase(ns, name, new["phase"], result.state.canary_weight if result.state.running else 0)
    if result.action in (Action.PROMOTE, Action.ROLLBACK):
        metrics.ROLLOUTS.labels(ns, name, "promoted" if result.action is Action.PROMOTE else "rolledBack").inc()
    for event in result.events:
        kopf.event(obj, type=event.type, reason=event.reason, message=event.message[:1024])
    if old_phase != new["phase"]:
        if new["phase"] == ChatbotPhase.DEGRADED:
            kopf.event(obj, type="Warning", reason=ChatbotPhase.DEGRADED.value, message=new["message"][:1024])
        if logger is not None:
            logger.info("phase %s -> %s: %s", old_phase, new["phase"], new.get("message"))


# ---------------------------------------------------------------- kopf wiring


@kopf.index(*RESOURCE)
def chatbots_by_finetunejob(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, FineTuneJob) -> the ChatbotDeployments whose adapters reference it."""
    refs = {(a.get("fineTuneJobRef") or {}).get("name") for a in spec.get("adapters") or []}
    return {(namespace, ref): name for ref in refs if ref}


@kopf.index(*RESOURCE)
def chatbots_by_pool(namespace: str, name: str, spec: kopf.Spec, meta: kopf.Meta,
                     **_: Any) -> dict[tuple[str, str], Claim]:
    """(pool namespace, ModelPool) -> the claims of the ChatbotDeployments whose poolRef names it."""
    ref = spec.get("poolRef")
    if not ref or not ref.get("name"):
        return {}
    return {(ref.get("namespace") or namespace, ref["name"]):
            claim_of(namespace, name, spec, meta.get("creationTimestamp") or "")}


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.update(*RESOURCE, field="metadata.annotations")
async def on_change(namespace: str, name: str, memo: kopf.Memo, logger: kopf.Logger,
                    chatbots_by_pool: kopf.Index, **_: Any) -> None:
    try:
        await reconcile(namespace, name, memo, logger, chatbots_by_pool)
    except kube.ApiError as err:
        raise kopf.TemporaryError(f"API error: {err}", delay=2) from err


@kopf.daemon(*RESOURCE, cancellation_timeout=5)
async def rollout_tick(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                       logger: kopf.Logger, chatbots_by_pool: kopf.Index, **_: Any) -> None:
    """The per-object heartbeat: canary analysis, new FineTuneJob versions, retiring old stables."""
    await beat(stopped, logger, "reconcile", lambda: config.current().canary_tick_seconds,
               lambda: reconcile(namespace, name, memo, logger, chatbots_by_pool))


@kopf.on.event(*FINETUNEJOBS)
async def on_finetunejob(event: Mapping[str, Any], namespace: str, name: str, memo: kopf.Memo,
                         chatbots_by_finetunejob: kopf.Index, chatbots_by_pool: kopf.Index, logger: kopf.Logger,
                         **_: Any) -> None:
    """A FineTuneJob published (or lost) a version: reconcile the ChatbotDeployments that use it now."""
    status = (event.get("object") or {}).get("status") or {}
    fingerprint = json.dumps([status.get("versions"), status.get("adapter")], sort_keys=True)
    seen = memo.get("published_versions")  # this FineTuneJob's own memo
    if seen == fingerprint:
        return
    memo["published_versions"] = fingerprint
    if seen is None and event.get("type") in (None, "ADDED"):
        return  # the initial listing: the ChatbotDeployments reconcile on their own resume
    with contextlib.suppress(kube.ApiError, RuntimeError):
        for chatbot in sorted(set(chatbots_by_finetunejob.get((namespace, name), []))):
            await reconcile(namespace, chatbot, memo, logger, chatbots_by_pool)


@kopf.on.delete(*RESOURCE, optional=True)
def forget(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Drop a deleted object's series and runtime state; its children go with their ownerReferences."""
    metrics.forget_cbd(namespace, name)
    memo[MEMO_KEY].pop((namespace, name), None)
