"""The ChatbotDeployment controller: children from the builders, the rollout from `loraplane.canary`.

Every trigger (create, spec change, resume, the per-object tick, a FineTuneJob that
published a version) runs the same idempotent `reconcile`: read the object fresh,
resolve its adapters, move the rollout one tick, write children and the routing-table
ConfigMap, then patch status once. Manual control is by annotations, which the
`loraplane promote|abort|pause|resume` commands set:

    loraplane.io/promote: "true"   promote the running canary now
    loraplane.io/abort: "true"     roll the running canary back now
    loraplane.io/paused: "true"    hold the canary at its step (as spec.rollout.paused)
    loraplane.io/metrics-url: URL[,URL]  read router figures from these /metrics URLs
    loraplane.io/router-url: URL         send probes to this router (default: the router Service)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from .. import API_VERSION, config, kube, metrics
from ..api.chatbotdeployment import ChatbotDeployment, ChatbotDeploymentSpec
from ..builders.common import owner_selector
from ..builders.isolation import build_keys_secret
from ..builders.routing_table import build_routing_configmap, build_routing_table
from ..builders.serving import (
    ROUTER,
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
    Phase,
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
from ..canary.metrics import CANARY_WEIGHT, PHASE, ROLLOUTS, forget_series, init_series
from ..canary.rollout import ANN_ABORT, ANN_PAUSED, ANN_PROMOTE
from ..status import ConditionSet, kstatus
from ..storage import read_manifest

RESOURCE = ("loraplane.io", "v1alpha1", "chatbotdeployments")
KIND = "ChatbotDeployment"
ANN_METRICS_URL = "loraplane.io/metrics-url"
ANN_ROUTER_URL = "loraplane.io/router-url"  # where probes are sent (default: the router Service)
ANN_APPLIED = "loraplane.io/applied-hash"  # hash of the manifest a child was last written from
CANARY_CONDITION = "CanaryAnalysis"
ADAPTERS_CONDITION = "AdaptersResolved"
# Children that exist only when the spec asks for them: deleted when it stops asking.
OPTIONAL = (("autoscaling/v2", "HorizontalPodAutoscaler", ROUTER), ("policy/v1", "PodDisruptionBudget", ROUTER))

_locks: dict[tuple[str, str], asyncio.Lock] = {}
_ftj_versions: dict[tuple[str, str], str] = {}
_probe_results: dict[tuple[str, str], dict] = {}


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _lock(namespace: str, name: str) -> asyncio.Lock:
    return _locks.setdefault((namespace, name), asyncio.Lock())


def merge_patch(old: Any, new: Any) -> Any:
    """A JSON merge patch turning `old` into `new`: keys gone from `new` become None."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            out[key] = value
        elif old[key] != value:
            out[key] = merge_patch(old[key], value) if isinstance(value, Mapping) and value else value
    for key in old:
        if key not in new and old[key] is not None:
            out[key] = None
    return out


# ---------------------------------------------------------------- children


def _hash(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


async def _apply(child: dict[str, Any], owner_uid: str) -> str | None:
    """Create the child, or bring an existing one of ours back to the manifest. Returns a problem, if any."""
    client = kube.client()
    meta = child["metadata"]
    digest = _hash(child)
    meta.setdefault("annotations", {})[ANN_APPLIED] = digest
    try:
        await client.create(child)
        return None
    except kube.AlreadyExists:
        if child["kind"] == "Secret":
            # Generated once (the keys): never rewritten, or every pass would rotate them. Not read
            # back either: the operator may create Secrets but needs no right to read them.
            return None
    except kube.NotFound:
        # The kind is not served here (a ServiceMonitor without prometheus-operator).
        return f"{child['kind']} {meta['name']}: the API server does not serve {child['apiVersion']}"
    live = await client.get(child["apiVersion"], child["kind"], meta["namespace"], meta["name"])
    owners = [r.get("uid") for r in live["metadata"].get("ownerReferences") or []]
    if owner_uid not in owners:
        return f"{child['kind']} {meta['name']} exists and is not owned by this ChatbotDeployment"
    if (live["metadata"].get("annotations") or {}).get(ANN_APPLIED) == digest:
        return None
    body = "data" if child["kind"] == "ConfigMap" else "spec"
    annotations = {**(live["metadata"].get("annotations") or {}), ANN_APPLIED: digest}
    labels = {**(live["metadata"].get("labels") or {}), **meta.get("labels", {})}
    if child["kind"] == "Service":
        # A Service keeps fields the API server allocated (clusterIP): merge, do not replace.
        await client.patch_merge(child["apiVersion"], child["kind"], meta["namespace"], meta["name"], {
            "metadata": {"annotations": annotations, "labels": labels}, "spec": child["spec"]})
        return None
    await client.patch_json(child["apiVersion"], child["kind"], meta["namespace"], meta["name"], [
        {"op": "add", "path": "/metadata/annotations", "value": annotations},
        {"op": "add", "path": "/metadata/labels", "value": labels},
        {"op": "add", "path": f"/{body}", "value": child[body]},
    ])
    return None


async def _delete_unwanted(owner: Mapping[str, Any], wanted: set[tuple[str, str]]) -> None:
    client = kube.client()
    ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    for api_version, kind, component in OPTIONAL:
        child = router_name(name) if component == ROUTER else vllm_name(name)
        if (kind, child) not in wanted:
            live = await client.get_or_none(api_version, kind, ns, child)
            if live and owner["metadata"]["uid"] in [r.get("uid") for r in live["metadata"].get("ownerReferences") or []]:
                await client.delete(api_version, kind, ns, child)


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


async def metrics_source(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec) -> MetricsSource:
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
    router = (meta.get("annotations") or {}).get(ANN_ROUTER_URL) or \
        f"http://{router_name(meta['name'])}.{meta['namespace']}.svc:{ROUTER_PORT}"
    cache = _probe_results.setdefault((meta["namespace"], meta["name"]), {})
    return ProbedSource(source, router, probes, cache=cache)


class MetricsProblem(Exception):
    """The analysis cannot be set up (e.g. an unreadable probe set)."""


async def _figures_source(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec) -> MetricsSource:
    """Prometheus when configured; else the router's own /metrics, every running router pod summed."""
    if spec.rollout.analysis.prometheus_url:
        return PrometheusSource(spec.rollout.analysis.prometheus_url, namespace=obj["metadata"]["namespace"])
    urls = (obj["metadata"].get("annotations") or {}).get(ANN_METRICS_URL)
    if urls:
        return RouterMetricsSource([u.strip() for u in urls.split(",") if u.strip()])
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    pods = await kube.client().list("v1", "Pod", ns, owner_selector(obj, ROUTER))
    ips = [p["status"]["podIP"] for p in pods
           if (p.get("status") or {}).get("podIP") and (p["status"].get("phase") == "Running")]
    if ips:
        return RouterMetricsSource([f"http://{ip}:{ROUTER_PORT}/metrics" for ip in sorted(ips)])
    return RouterMetricsSource(f"http://{router_name(name)}.{ns}.svc:{ROUTER_PORT}/metrics")


# ---------------------------------------------------------------- status


def _phase(result: RolloutResult, entries: list[EntryResolution], ready: int, replicas: int) -> tuple[Phase, str]:
    state = result.state
    if state.running:
        return Phase.CANARY, state.message
    if state.rolled_back:
        return Phase.ROLLED_BACK, state.message
    broken = [p for p in result.plan.problems if "rejected" in p or "cannot read" in p]
    if broken:
        return Phase.DEGRADED, "; ".join(broken)
    waiting = result.plan.problems
    if waiting or ready < replicas:
        parts = [*waiting, f"{ready}/{replicas} vLLM replicas ready"] if ready < replicas else waiting
        return Phase.PROGRESSING, "; ".join(parts)
    msg = f"serving {state.stable or 'base'}" + (f" ({state.message})" if state.message else "")
    return Phase.HEALTHY, msg


def _resolved(entries: list[EntryResolution], result: RolloutResult) -> list[dict[str, Any]]:
    out = []
    routed = {v.name for v in result.variants} | {v.name for v in result.retained}
    for r in entries:
        shown = [v for v in r.versions if v.name in routed] or ([] if r.versions else [None])
        for v in shown:
            if v is None:
                out.append({"name": r.entry, "ready": False, "message": (r.problem or "")[:512]})
            else:
                item = {"name": v.name, "uri": v.uri, "version": r.version_of.get(v.name), "sha256": v.sha256,
                        "ready": True}
                out.append({k: val for k, val in item.items() if val is not None})
    return out[:32]


def compute_status(obj: Mapping[str, Any], spec: ChatbotDeploymentSpec, entries: list[EntryResolution],
                   result: RolloutResult, ready: int, problems: list[str], now: datetime) -> dict[str, Any]:
    """The whole status, in memory."""
    prev = obj.get("status") or {}
    meta = obj["metadata"]
    phase, message = _phase(result, entries, ready, spec.replicas)
    if problems:
        message = "; ".join([message, *problems]) if message else "; ".join(problems)
    conds = ConditionSet(prev.get("conditions"), generation=meta.get("generation"),
                         now=now.isoformat().replace("+00:00", "Z"))
    kstatus(conds, ready=phase is Phase.HEALTHY, reason=phase.value, message=message[:1024],
            reconciling=phase in (Phase.PROGRESSING, Phase.CANARY, Phase.PENDING),
            stalled=phase is Phase.DEGRADED)
    if result.plan.problems:
        conds.set(ADAPTERS_CONDITION, False, "AdapterNotServable", "; ".join(result.plan.problems)[:1024])
    else:
        conds.set(ADAPTERS_CONDITION, True, "Resolved", f"{len(entries)} adapter entries servable")
    state = result.state
    if state.running:
        conds.set(CANARY_CONDITION, "Unknown", "Analysing", state.message)
    elif state.rolled_back:
        failed = [a for a in state.analysis if a.passed is False]
        detail = "; ".join(a.message or a.metric for a in failed) or state.message
        conds.set(CANARY_CONDITION, False, "RolledBack", f"canary {state.canary} rolled back: {detail}"[:1024])
    elif result.action is Action.PROMOTE:
        conds.set(CANARY_CONDITION, True, "Promoted", state.message)
    status = {
        "phase": phase.value,
        "observedGeneration": meta.get("generation"),
        "conditions": conds.to_list(),
        "message": message[:4096],
        **{k: v for k, v in state.to_status().items() if k != "message"},
        "weights": result.weights,
        "adapters": _resolved(entries, result),
        "replicas": spec.replicas,
        "readyReplicas": ready,
        "endpoint": endpoint(meta["name"], meta["namespace"]),
    }
    return {k: v for k, v in status.items() if v is not None}


# ---------------------------------------------------------------- reconcile


async def reconcile(namespace: str, name: str, logger: Any = None) -> dict[str, Any] | None:
    """One idempotent pass over a ChatbotDeployment; returns the status it wrote (None: object gone)."""
    async with _lock(namespace, name):
        with metrics.reconcile("chatbotdeployment"):
            return await _reconcile(namespace, name, logger)


RECONCILE_FAILED = "ReconcileFailed"


async def record_failure(obj: Mapping[str, Any], err: BaseException) -> None:
    """A pass that failed still says so in status (Ready False, Stalled), instead of leaving it frozen."""
    prev = obj.get("status") or {}
    meta = obj["metadata"]
    message = f"reconcile failed: {type(err).__name__}: {err}"[:1024]
    conds = ConditionSet(prev.get("conditions"), generation=meta.get("generation"),
                         now=_now().isoformat().replace("+00:00", "Z"))
    kstatus(conds, ready=False, reason=RECONCILE_FAILED, message=message, reconciling=False, stalled=True)
    patch = {"conditions": conds.to_list(), "message": message, "observedGeneration": meta.get("generation")}
    await kube.client().patch_merge(API_VERSION, KIND, meta["namespace"], meta["name"], {"status": patch},
                                    subresource="status")


async def _reconcile(namespace: str, name: str, logger: Any) -> dict[str, Any] | None:
    client = kube.client()
    obj = await client.get_or_none(API_VERSION, KIND, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None
    try:
        spec = ChatbotDeployment.model_validate(obj).spec
    except ValidationError as err:
        await record_failure(obj, err)
        raise kopf.PermanentError(f"invalid spec: {err}") from err
    try:
        return await _reconcile_valid(obj, spec, logger)
    except (kube.ApiError, asyncio.CancelledError):
        raise  # the API server's trouble, retried as it is
    except Exception as err:
        await record_failure(obj, err)
        raise


async def _reconcile_valid(obj: dict[str, Any], spec: ChatbotDeploymentSpec, logger: Any) -> dict[str, Any]:
    client = kube.client()
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    init_series(namespace, name)
    now = _now()
    cfg = config.current()
    annotations = obj["metadata"].get("annotations") or {}
    status = obj.get("status") or {}
    entries = await _inputs(namespace, spec)
    problems: list[str] = []
    try:
        source = await metrics_source(obj, spec)
    except MetricsProblem as err:
        # Without its probes a configured probe check never passes: the canary holds, status says why.
        source = await _figures_source(obj, spec)
        problems.append(str(err))
    result = await reconcile_rollout(
        spec, entries, RolloutState.from_status(status), status.get("weights") or {}, source, now,
        model=name,
        paused=annotations.get(ANN_PAUSED) == "true",
        promote_requested=annotations.get(ANN_PROMOTE) == "true",
        abort_requested=annotations.get(ANN_ABORT) == "true",
    )

    ranks = [v.lora_rank for r in entries for v in r.versions]
    children = build_serving_children(obj, spec, cfg, ranks)
    table = build_routing_table(name, spec, result.variants, result.weights, result.retained)
    children.append(build_routing_configmap(obj, table))
    children.append(build_keys_secret(obj))
    problems += [p for child in children if (p := await _apply(child, obj["metadata"]["uid"]))]
    await _delete_unwanted(obj, {(c["kind"], c["metadata"]["name"]) for c in children})

    vllm = await client.get_or_none("apps/v1", "Deployment", namespace, vllm_name(name))
    ready = int(((vllm or {}).get("status") or {}).get("readyReplicas") or 0)
    new = compute_status(obj, spec, entries, result, ready, problems, now)
    patch = merge_patch(status, new)
    if patch:
        await client.patch_merge(API_VERSION, KIND, namespace, name, {"status": patch}, subresource="status")
    for p in Phase:
        PHASE.labels(namespace, name, p.value).set(1 if p.value == new["phase"] else 0)
    CANARY_WEIGHT.labels(namespace, name).set(result.state.canary_weight if result.state.running else 0)
    if result.action in (Action.PROMOTE, Action.ROLLBACK):
        ROLLOUTS.labels(namespace, name, "promoted" if result.action is Action.PROMOTE else "rolledBack").inc()
    for event in result.events:
        kopf.event(obj, type=event.type, reason=event.reason, message=event.message[:1024])
    if status.get("phase") != new["phase"]:
        if new["phase"] == Phase.DEGRADED.value:
            kopf.event(obj, type="Warning", reason="Degraded", message=new["message"][:1024])
        if logger is not None:
            logger.info("phase %s -> %s: %s", status.get("phase"), new["phase"], new.get("message"))
    consumed = {k: None for k in (ANN_PROMOTE, ANN_ABORT) if k in annotations}
    if consumed:
        await client.patch_merge(API_VERSION, KIND, namespace, name, {"metadata": {"annotations": consumed}})
    return new


# ---------------------------------------------------------------- kopf wiring


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
@kopf.on.update(*RESOURCE, field="metadata.annotations")
async def on_change(namespace: str, name: str, logger: kopf.Logger, **_: Any) -> None:
    try:
        await reconcile(namespace, name, logger)
    except kube.ApiError as err:
        raise kopf.TemporaryError(f"API error: {err}", delay=2) from err


@kopf.daemon(*RESOURCE, cancellation_timeout=5)
async def rollout_tick(namespace: str, name: str, stopped: kopf.DaemonStopped, logger: kopf.Logger, **_: Any) -> None:
    """The per-object heartbeat: canary analysis, new FineTuneJob versions, retiring old stables."""
    while not stopped:
        await stopped.wait(config.current().canary_tick_seconds)
        if stopped:
            break
        try:
            await reconcile(namespace, name, logger)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001  the heartbeat must outlive any one failed pass
            logger.warning("reconcile failed, retried on the next tick: %s: %s", type(err).__name__, err)


@kopf.on.event("loraplane.io", "v1alpha1", "finetunejobs")
async def on_finetunejob(event: Mapping[str, Any], namespace: str, name: str, logger: kopf.Logger, **_: Any) -> None:
    """A FineTuneJob published (or lost) a version: reconcile the ChatbotDeployments that use it now."""
    body = event.get("object") or {}
    status = body.get("status") or {}
    fingerprint = json.dumps([status.get("versions"), status.get("adapter")], sort_keys=True)
    key = (namespace, name)
    if _ftj_versions.get(key) == fingerprint:
        return
    first_sight = key not in _ftj_versions
    _ftj_versions[key] = fingerprint
    if first_sight and event.get("type") in (None, "ADDED"):
        return  # the initial listing: the ChatbotDeployments reconcile on their own resume
    with contextlib.suppress(kube.ApiError, RuntimeError):
        for cbd in await kube.client().list(API_VERSION, KIND, namespace):
            refs = [(a.get("fineTuneJobRef") or {}).get("name") for a in cbd.get("spec", {}).get("adapters") or []]
            if name in refs:
                await reconcile(namespace, cbd["metadata"]["name"], logger)


@kopf.on.delete(*RESOURCE, optional=True)
def forget(namespace: str, name: str, **_: Any) -> None:
    """Drop a deleted object's series and lock; its children go with their ownerReferences."""
    for p in Phase:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, p.value)
    with contextlib.suppress(KeyError):
        CANARY_WEIGHT.remove(namespace, name)
    forget_series(namespace, name)
    _locks.pop((namespace, name), None)
    _probe_results.pop((namespace, name), None)
