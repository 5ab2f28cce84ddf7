"""The FineTuneJob controller: one training Job per generation, status copied from the Job and progress.json.

Every handler calls `reconcile`, which is idempotent: it finds the run's Job by its
deterministic name (creating it and its ConfigMap when missing), stops the Jobs of
older generations, reads the Job, its pods and the run's progress.json, computes the
whole status in memory and patches what changed, once. So a restarted operator, a
lost watch event or a conflict all end in the same state.
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

from .. import config, kube, metrics
from ..builders.common import is_owned_by, owner_selector
from ..builders.training_job import COMPONENT, job_config_map, job_name, training_job
from ..finetune import plan_gate, runs, schedule
from ..status import status_diff
from ..status.finetunejob import TERMINAL, Observed, compute_status
from ..storage import run_id as make_run_id

RESOURCE = ("loraplane.io", "v1alpha1", "finetunejobs")
ANN_SUFFIX = "loraplane.io/run-suffix"  # suffix of the current scheduled rerun of this generation
ANN_GPU = "loraplane.io/gpu-seconds"  # {run id: GPU-seconds} of finished runs
ANN_FINGERPRINT = "loraplane.io/dataset-fingerprint"  # dataset the current run trained on
ANN_RUN_GENERATION = "loraplane.io/run-generation"  # generation whose spec the current run trains
ANN_RUN_SPEC = "loraplane.io/run-spec-hash"  # hash of that spec, without the fields that do not retrain
# Changing these pauses or schedules; it does not make a new run.
NOT_RETRAINING = ("suspend", "schedule")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    """kopf's Body (nested read-only mappings) as plain dicts and lists."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def training_spec_hash(spec: Mapping[str, Any]) -> str:
    """Hash of the spec fields that define a run (all but suspend and schedule)."""
    relevant = {k: v for k, v in spec.items() if k not in NOT_RETRAINING}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def run_generation(ftj: dict[str, Any]) -> tuple[int, bool]:
    """(generation of the current run, whether that is a new record): suspend or schedule edits keep the run."""
    meta = ftj["metadata"]
    ann = meta.get("annotations") or {}
    digest = training_spec_hash(ftj["spec"])
    if ann.get(ANN_RUN_GENERATION) and ann.get(ANN_RUN_SPEC) == digest:
        return int(ann[ANN_RUN_GENERATION]), False
    return int(meta["generation"]), True


def current_run(ftj: dict[str, Any], suffix: str | None = None) -> tuple[str, str]:
    """(Job name, run id) of the run the object asks for now; ftj's generation is the run generation."""
    meta = ftj["metadata"]
    suffix = suffix if suffix is not None else (meta.get("annotations") or {}).get(ANN_SUFFIX) or None
    # A suffix belongs to the generation it was made for: a spec change starts a plain run.
    if suffix and "@" in suffix:
        gen, _, suffix = suffix.partition("@")
        if gen != str(meta.get("generation")):
            suffix = None
    return job_name(meta["name"], meta["generation"], suffix), make_run_id(meta["uid"], meta["generation"], suffix)


def _job_finished(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


async def _credentials(ftj: dict[str, Any]) -> dict[str, str]:
    ref = (ftj["spec"].get("output") or {}).get("credentialsSecretRef")
    if not ref:
        return {}
    secret = await kube.client().get_or_none("v1", "Secret", ftj["metadata"]["namespace"], ref["name"])
    return runs.secret_env(secret)


async def _ensure_job(ftj: dict[str, Any], name: str, run: str, logger) -> dict[str, Any]:
    """Create the run's ConfigMap and Job; an existing one (a restart, a lost response) is adopted."""
    client = kube.client()
    cfg = config.current()
    with contextlib.suppress(kube.AlreadyExists):
        await client.create(job_config_map(ftj, name, run))
    manifest = training_job(ftj, cfg, name, run)
    try:
        job = await client.create(manifest)
        kopf.event(ftj, type="Normal", reason="JobCreated", message=f"training Job {name} created for run {run}")
        logger.info("created Job %s (run %s)", name, run)
        return job
    except kube.AlreadyExists:
        job = await client.get("batch/v1", "Job", ftj["metadata"]["namespace"], name)
        owners = {r.get("uid") for r in job["metadata"].get("ownerReferences") or []}
        if ftj["metadata"]["uid"] not in owners:
            raise kopf.PermanentError(f"a Job named {name} exists and is not owned by this FineTuneJob") from None
        return job


async def _stop_superseded(ftj: dict[str, Any], current: str) -> list[str]:
    """Delete the still-running Jobs of older runs (a spec change makes a new run); returns their names."""
    client = kube.client()
    ns = ftj["metadata"]["namespace"]
    stopped = []
    for job in await client.list("batch/v1", "Job", ns, owner_selector(ftj, COMPONENT)):
        name = job["metadata"]["name"]
        if not is_owned_by(job, ftj):
            continue  # a label match only: another object's Job (labels are not proof of ownership)
        if name != current and not _job_finished(job) and not job["metadata"].get("deletionTimestamp"):
            await client.delete("batch/v1", "Job", ns, name, propagation="Background")
            stopped.append(name)
    return stopped


async def _sync_suspend(ftj: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """spec.suspend pauses the running Job (the trainer resumes from its checkpoint when unpaused)."""
    want = bool(ftj["spec"].get("suspend"))
    has = bool((job.get("spec") or {}).get("suspend"))
    queued = bool((ftj["spec"].get("resources") or {}).get("queue"))
    if want and not has and not _job_finished(job):
        return await kube.client().patch_merge("batch/v1", "Job", job["metadata"]["namespace"],
                                               job["metadata"]["name"], {"spec": {"suspend": True}})
    if not want and has and not queued:  # with a queue, Kueue owns suspend
        return await kube.client().patch_merge("batch/v1", "Job", job["metadata"]["namespace"],
                                               job["metadata"]["name"], {"spec": {"suspend": False}})
    return job


async def reconcile(body: Any, patch: kopf.Patch, logger, suffix: str | None = None) -> None:
    """Bring one FineTuneJob's run and status up to date (idempotent)."""
    with metrics.reconcile("finetunejob"):
        observed = _plain(body)
        meta, spec = observed["metadata"], observed["spec"]
        ns, name = meta["namespace"], meta["name"]
        old_status = observed.get("status") or {}
        run_gen, new_record = run_generation(observed)
        if new_record:
            patch.metadata.annotations[ANN_RUN_GENERATION] = str(run_gen)
            patch.metadata.annotations[ANN_RUN_SPEC] = training_spec_hash(spec)
        # What the run's children are built from: the object as of its run generation.
        ftj = {**observed, "metadata": {**meta, "generation": run_gen}}
        jname, run = current_run(ftj, suffix)
        client = kube.client()
        try:
            job = await client.get_or_none("batch/v1", "Job", ns, jname)
            finished_before = old_status.get("runId") == run and old_status.get("phase") in TERMINAL
            creds = await _credentials(ftj)
            plan = await asyncio.to_thread(plan_gate.job_plan, spec, creds)
            refused = job is None and plan.refuses  # before any pod: it cannot fit what it asks for
            if job is None and not spec.get("suspend") and not finished_before and not refused:
                try:
                    job = await _ensure_job(ftj, jname, run, logger)
                except kube.Unprocessable as err:
                    message = f"the API server refused the training Job: {err.message}"
                    patch.status["phase"] = "Failed"
                    patch.status["message"] = message[:4096]
                    kopf.event(ftj, type="Warning", reason="JobRefused", message=message[:1024])
                    raise kopf.PermanentError(message) from err
                for stopped in await _stop_superseded(ftj, jname):
                    kopf.event(ftj, type="Normal", reason="RunSuperseded",
                               message=f"stopped Job {stopped}: the spec changed, run {jname} replaces it")
            elif job is not None:
                job = await _sync_suspend(ftj, job)
            pods: tuple = ()
            if job is not None and old_status.get("phase") != "Succeeded":  # pods tell OOM, image pull errors
                pods = tuple(await client.list("v1", "Pod", ns, f"job-name={jname}"))
            output = spec["output"]["uri"]
            progress = None
            adapter = None
            if job is not None or finished_before:
                progress = await asyncio.to_thread(runs.read_run_progress, output, name, run, creds)
                version = ((progress.adapter or {}).get("version") if progress else None)
                if version and (old_status.get("adapter") or {}).get("version") != version:
                    adapter = await asyncio.to_thread(runs.read_published_adapter, output, name, version, creds)
                elif version:  # already read from its manifest
                    adapter = old_status["adapter"]
        except kube.ApiError as err:
            raise kopf.TemporaryError(f"API error: {err}", delay=2) from err
        except OSError as err:  # object storage unreachable: keep the status, try again
            raise kopf.TemporaryError(f"cannot read {output}: {err}", delay=10) from err

        gpu_runs = json.loads((meta.get("annotations") or {}).get(ANN_GPU) or "{}")
        now = _now()
        new = compute_status(observed, Observed(
            job_name=jname, run_id=run, job=job, pods=pods, progress=progress, adapter=adapter,
            gpu_seconds_finished_runs=sum(v for k, v in gpu_runs.items() if k != run),
            suspended=bool(spec.get("suspend")) and (job is None or (job.get("spec") or {}).get("suspend")),
            now=_iso(now),
        ))
        new = plan_gate.with_plan(new, plan, refused=refused, generation=meta.get("generation"), now=_iso(now))
        if not adapter and old_status.get("adapter"):
            new["adapter"] = old_status["adapter"]
        diff = status_diff(old_status, new)
        for key, value in diff.items():
            patch.status[key] = value

        phase = new["phase"]
        if phase != old_status.get("phase"):
            metrics.TRANSITIONS.labels(phase).inc()
            warn = phase == "Failed" or any(c["type"] == "Stalled" for c in new["conditions"])
            kopf.event(ftj, type="Warning" if warn else "Normal", reason=phase, message=new["message"][:1024])
        if phase in TERMINAL and new.get("gpuSeconds") is not None:
            run_seconds = new["gpuSeconds"] - sum(v for k, v in gpu_runs.items() if k != run)
            if gpu_runs.get(run) != run_seconds:
                gpu_runs[run] = round(run_seconds, 1)
                patch.metadata.annotations[ANN_GPU] = json.dumps(gpu_runs, sort_keys=True)
        if suffix is not None:
            patch.metadata.annotations[ANN_SUFFIX] = f"{run_gen}@{suffix}"
        metrics.set_ftj_phase(ns, name, phase)
        if new.get("gpuSeconds") is not None:
            metrics.GPU_SECONDS.labels(ns, name).set(new["gpuSeconds"])
        if new.get("estimatedCost") is not None:
            metrics.COST.labels(ns, name).set(float(new["estimatedCost"]))


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def on_change(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    await reconcile(body, patch, logger)


def _running(status: kopf.Status, body: kopf.Body, **_: Any) -> bool:
    """Timers poll only runs that are not finished (or that belong to an older generation)."""
    return status.get("phase") not in TERMINAL or status.get("observedGeneration") != body["metadata"].get("generation")


@kopf.timer(*RESOURCE, interval=config.current().progress_interval_seconds, idle=None, when=_running)
async def poll_progress(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """Copy the Job's state and the run's progress.json into status while the run is going."""
    await reconcile(body, patch, logger)


@kopf.timer(*RESOURCE, interval=config.current().schedule_interval_seconds,
            when=lambda spec, **_: bool(spec.get("schedule")))
async def scheduled_retrain(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
    """spec.schedule: start a new run of the same generation when due, unless the dataset is unchanged."""
    ftj = _plain(body)
    status = ftj.get("status") or {}
    if status.get("phase") not in TERMINAL or ftj["spec"].get("suspend"):
        return
    last_raw = status.get("lastScheduleTime") or status.get("completionTime") or ftj["metadata"]["creationTimestamp"]
    last = datetime.fromisoformat(last_raw.replace("Z", "+00:00"))
    now = _now()
    if not schedule.due(ftj["spec"]["schedule"], last, now):
        return
    patch.status["lastScheduleTime"] = _iso(now)
    creds = await _credentials(ftj)
    ds = ftj["spec"]["dataset"]
    cm = None
    if ds.get("configMapRef"):
        cm = await kube.client().get_or_none("v1", "ConfigMap", ftj["metadata"]["namespace"], ds["configMapRef"]["name"])
    fingerprint = await asyncio.to_thread(runs.dataset_fingerprint, ftj["spec"], creds, cm)
    previous = (ftj["metadata"].get("annotations") or {}).get(ANN_FINGERPRINT)
    if fingerprint is not None and fingerprint == previous:
        kopf.event(ftj, type="Normal", reason="RetrainSkipped", message="scheduled retrain skipped: the dataset has not changed")
        return
    if fingerprint is not None:
        patch.metadata.annotations[ANN_FINGERPRINT] = fingerprint
    kopf.event(ftj, type="Normal", reason="RetrainScheduled", message=f"scheduled retrain ({ftj['spec']['schedule']})")
    await reconcile(body, patch, logger, suffix=schedule.run_suffix(now))


@kopf.on.delete(*RESOURCE, when=lambda spec, **_: bool((spec.get("output") or {}).get("deleteAdaptersOnDelete")))
async def delete_adapters(body: kopf.Body, **_: Any) -> None:
    """spec.output.deleteAdaptersOnDelete: remove published adapters too (Jobs go by ownerReference)."""
    ftj = _plain(body)
    creds = await _credentials(ftj)
    await asyncio.to_thread(runs.delete_adapters, ftj["spec"]["output"]["uri"], ftj["metadata"]["name"], creds)


@kopf.on.delete(*RESOURCE, optional=True)
def forget_metrics(name: str, namespace: str, **_: Any) -> None:
    metrics.forget_ftj(namespace, name)
