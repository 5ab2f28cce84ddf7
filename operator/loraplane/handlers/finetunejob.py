"""The FineTuneJob controller: one training Job (or, on several nodes, JobSet) per run, status from it,
its pods and progress.json.

Every trigger (create, spec change, resume, the progress poll, a due schedule) runs
the same idempotent `reconcile`: read the object fresh, work out the run it asks for
(`status.currentRun`), find or create that run's Job, stop the Jobs of older runs,
read the Job, its pods and the run's progress.json, compute the whole status
(`loraplane.status.finetunejob`) and write what changed, once. A restarted operator
rebuilds everything from status and the Jobs it owns.

Training Jobs and JobSets are created once per run, not applied: their pod templates
are immutable, and with a Kueue queue Kueue owns `spec.suspend`. A JobSet is read
through `status.jobset.jobset_as_job`, so the status code sees one kind of run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from .. import API_VERSION, config, kube, metrics
from ..api.finetunejob import FineTuneJob, RunStatus
from ..api.states import FineTuneJobPhase, HumanEvaluationState, Reason
from ..builders.common import is_owned_by, owner_of, owner_selector
from ..builders.training_job import COMPONENT, job_config_map
from ..builders.training_workload import JOB, JOBSET, KINDS, WorkloadKind, training_workload, workload_kind
from ..finetune import plan_gate, runs, schedule
from ..finetune.current_run import current_run
from ..status import status_diff
from ..status.finetunejob import TERMINAL, Observed, compute_status
from ..status.jobset import jobset_as_job, jobset_finished
from .heartbeat import beat

RESOURCE = ("loraplane.io", "v1alpha1", "finetunejobs")
KIND = "FineTuneJob"


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


class JobRefused(Exception):
    """The API server refused the training Job (422): a spec the CRD admitted but Kubernetes does not."""


@dataclass(frozen=True)
class Scheduled:
    """A due scheduled retrain: the run's suffix and the status facts it records."""

    suffix: str
    facts: dict[str, Any] = field(default_factory=dict)


def _typed(body: Mapping[str, Any]) -> FineTuneJob:
    try:
        return FineTuneJob.model_validate(body)
    except ValidationError as err:
        raise kopf.PermanentError(f"invalid FineTuneJob: {err}") from err


def _job_finished(job: Mapping[str, Any]) -> bool:
    if job.get("kind") == JOBSET.kind:
        return jobset_finished(job)
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


# ---------------------------------------------------------------- children


async def _credentials(ftj: FineTuneJob) -> dict[str, str]:
    ref = ftj.spec.output.credentials_secret_ref
    if not ref:
        return {}
    return runs.secret_env(await kube.client().get_or_none("v1", "Secret", ftj.metadata.namespace, ref.name))


async def _ensure_job(body: Mapping[str, Any], ftj: FineTuneJob, run: RunStatus, plan: plan_gate.JobPlan,
                      logger: Any) -> dict[str, Any]:
    """Create the run's ConfigMap and Job (JobSet); an existing one (a restart, a lost response) is adopted."""
    client = kube.client()
    kind = workload_kind(ftj.spec)
    with contextlib.suppress(kube.AlreadyExists):
        await client.create(job_config_map(ftj, run))
    try:
        job = await client.create(training_workload(ftj, run, config.current(), sharded=plan.sharded))
    except kube.Unprocessable as err:
        raise JobRefused(f"the API server refused the training {kind.kind}: {err.message}") from err
    except kube.NotFound as err:  # the JobSet CRD is not installed
        raise JobRefused(f"resources.nodes > 1 needs JobSet ({kind.api_version}), which this cluster does not "
                         f"serve: {err.message}") from err
    except kube.AlreadyExists:
        job = await client.get(kind.api_version, kind.kind, ftj.metadata.namespace, run.job_name)
        owners = {r.get("uid") for r in job["metadata"].get("ownerReferences") or []}
        if ftj.metadata.uid not in owners:
            raise kopf.PermanentError(
                f"a {kind.kind} named {run.job_name} exists and is not owned by this FineTuneJob") from None
        return job
    kopf.event(body, type="Normal", reason="JobCreated",
               message=f"training {kind.kind} {run.job_name} created for run {run.run_id}")
    logger.info("created %s %s (run %s)", kind.kind, run.job_name, run.run_id)
    return job


async def _list_owned(kind: WorkloadKind, ns: str, selector: str) -> list[dict[str, Any]]:
    """A kind's training workloads by label; none when the cluster does not serve the kind (no JobSet CRD)."""
    try:
        return await kube.client().list(kind.api_version, kind.kind, ns, selector)
    except kube.NotFound:
        return []


async def _stop_superseded(body: Mapping[str, Any], ftj: FineTuneJob, run: RunStatus) -> list[str]:
    """Delete the still-running Jobs and JobSets of older runs (found by owner and label); returns their names."""
    client = kube.client()
    stopped = []
    ns = ftj.metadata.namespace
    for kind in KINDS:
        for job in await _list_owned(kind, ns, owner_selector(owner_of(ftj), COMPONENT)):
            name = job["metadata"]["name"]
            if not is_owned_by(job, owner_of(ftj)):
                continue  # a label match only: another object's Job (labels are not proof of ownership)
            if name != run.job_name and not _job_finished(job) and not job["metadata"].get("deletionTimestamp"):
                await client.delete(kind.api_version, kind.kind, ns, name, propagation="Background")
                stopped.append(name)
    return stopped


async def _sync_suspend(ftj: FineTuneJob, job: dict[str, Any]) -> dict[str, Any]:
    """spec.suspend pauses the running Job (the trainer resumes from its checkpoint when unpaused)."""
    want, has = ftj.spec.suspend, bool((job.get("spec") or {}).get("suspend"))
    if want == has or (want and _job_finished(job)) or (not want and ftj.spec.resources.queue):
        return job  # with a queue, Kueue owns suspend
    kind = JOBSET if job.get("kind") == JOBSET.kind else JOB
    return await kube.client().patch_merge(kind.api_version, kind.kind, job["metadata"]["namespace"],
                                           job["metadata"]["name"], {"spec": {"suspend": want}})


async def _as_job(kind: WorkloadKind, workload: dict[str, Any] | None) -> dict[str, Any] | None:
    """The run's workload as the status code reads it: a Job as it is, a JobSet with its child Jobs' facts."""
    if workload is None or kind is JOB:
        return workload
    meta = workload["metadata"]
    children = await kube.client().list("batch/v1", "Job", meta["namespace"], kind.pod_selector(meta["name"]))
    return jobset_as_job(workload, children)


# ---------------------------------------------------------------- observe


async def _read_run(ftj: FineTuneJob, run: RunStatus) -> tuple[Any, Any]:
    """The run's progress.json and, once it names a version, that version's manifest as adapter status."""
    creds = await _credentials(ftj)
    output, name = ftj.spec.output.uri, ftj.metadata.name
    progress = await asyncio.to_thread(runs.read_run_progress, output, name, run.run_id, creds)
    version = progress.adapter.version if progress is not None and progress.adapter else None
    known = ftj.status.adapter if ftj.status else None
    if version is None:
        return progress, None
    if known is not None and known.version == version and known.human_evaluation is None:
        return progress, known  # already read from its manifest (a held one is read again: its verdict is ours)
    return progress, await asyncio.to_thread(runs.read_published_adapter, output, name, version, creds)


async def _read_human_evaluation(ftj: FineTuneJob, adapter: Any, logger: Any) -> Any:
    """With spec.evaluation.human: the evaluation attached to an adapter the automatic gates accepted."""
    if ftj.spec.evaluation.human is None or adapter is None or adapter.verdict != "accepted":
        return None
    try:
        return await asyncio.to_thread(runs.read_human_evaluation, adapter.uri, await _credentials(ftj))
    except ValueError as err:  # a malformed file holds the adapter as if none were attached
        logger.warning("ignoring %s's human-evaluation.json: %s", adapter.uri, err)
        return None


async def observe(body: Mapping[str, Any], ftj: FineTuneJob, run: RunStatus,
                  logger: Any) -> tuple[Observed, plan_gate.JobPlan, bool]:
    """Bring the run's Job to what the spec asks, then read everything the status is computed from."""
    client = kube.client()
    ns, stored = ftj.metadata.namespace, body.get("status") or {}
    kind = workload_kind(ftj.spec)
    try:
        job = await client.get_or_none(kind.api_version, kind.kind, ns, run.job_name)
    except kube.NotFound:  # the kind itself is not served (no JobSet CRD): created below, refused there
        job = None
    finished_before = stored.get("runId") == run.run_id and stored.get("phase") in TERMINAL
    plan = await asyncio.to_thread(plan_gate.job_plan, body["spec"], await _credentials(ftj))
    refused = job is None and plan.refuses  # before any pod: it cannot fit what it asks for
    if job is None and not ftj.spec.suspend and not finished_before and not refused:
        job = await _ensure_job(body, ftj, run, plan, logger)
        for name in await _stop_superseded(body, ftj, run):
            kopf.event(body, type="Normal", reason="RunSuperseded",
                       message=f"stopped Job {name}: the spec changed, run {run.run_id} replaces it")
    elif job is not None:
        job = await _sync_suspend(ftj, job)
    job = await _as_job(kind, job)
    pods: tuple = ()
    if job is not None and stored.get("phase") != FineTuneJobPhase.SUCCEEDED:  # pods tell OOM, image pull errors
        pods = tuple(await client.list("v1", "Pod", ns, kind.pod_selector(run.job_name)))
    progress = adapter = None
    if job is not None or finished_before:
        progress, adapter = await _read_run(ftj, run)
    human = await _read_human_evaluation(ftj, adapter or (progress.adapter if progress else None), logger)
    suspended = ftj.spec.suspend and (job is None or bool((job.get("spec") or {}).get("suspend")))
    return Observed(run=run, job=job, pods=pods, progress=progress, adapter=adapter, human=human,
                    suspended=suspended, now=_iso(_now())), plan, refused


# ---------------------------------------------------------------- reconcile


async def _write_status(ftj: FineTuneJob, stored: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    patch = status_diff(stored, new)
    if patch:
        await kube.client().patch_merge(API_VERSION, KIND, ftj.metadata.namespace, ftj.metadata.name,
                                        {"status": patch}, subresource="status")


def _report(body: Mapping[str, Any], ftj: FineTuneJob, stored: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Events and metrics of a reconcile's outcome."""
    ns, name, phase = ftj.metadata.namespace, ftj.metadata.name, new["phase"]
    if phase != stored.get("phase"):
        metrics.TRANSITIONS.labels(phase).inc()
        warn = phase == FineTuneJobPhase.FAILED or any(c["type"] == "Stalled" for c in new["conditions"])
        kopf.event(body, type="Warning" if warn else "Normal", reason=phase, message=new["message"][:1024])
    metrics.set_ftj_phase(ns, name, phase)
    if new.get("gpuSeconds") is not None:
        metrics.GPU_SECONDS.labels(ns, name).set(new["gpuSeconds"])
    if new.get("estimatedCost") is not None:
        metrics.COST.labels(ns, name).set(float(new["estimatedCost"]))


def _lock(memo: Any) -> asyncio.Lock:
    """One reconcile at a time per object (handlers, the poll and the schedule run concurrently)."""
    return memo.setdefault("reconcile_lock", asyncio.Lock())


async def reconcile(namespace: str, name: str, memo: Any, logger: Any,
                    scheduled: Scheduled | None = None) -> dict[str, Any] | None:
    """One idempotent pass over a FineTuneJob; returns the status it wrote (None: the object is gone)."""
    async with _lock(memo):
        with metrics.reconcile("finetunejob"):
            body = await kube.client().get_or_none(API_VERSION, KIND, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            ftj = _typed(body)
            stored = body.get("status") or {}
            run = current_run(ftj, scheduled.suffix if scheduled else None)
            try:
                obs, plan, refused = await observe(body, ftj, run, logger)
            except JobRefused as err:
                await _write_status(ftj, stored, {**stored, "phase": FineTuneJobPhase.FAILED.value,
                                                  "message": str(err)[:4096]})
                kopf.event(body, type="Warning", reason=Reason.JOB_REFUSED, message=str(err)[:1024])
                raise kopf.PermanentError(str(err)) from err
            except OSError as err:  # object storage unreachable: keep the status, try again
                raise kopf.TemporaryError(f"cannot read {ftj.spec.output.uri}: {err}", delay=10) from err
            new = compute_status(ftj, obs, {**stored, **(scheduled.facts if scheduled else {})})
            new = plan_gate.with_plan(new, plan, refused=refused, generation=ftj.metadata.generation, now=obs.now)
            await _write_status(ftj, stored, new)
            _report(body, ftj, stored, new)
            return new


async def retrain_if_due(namespace: str, name: str, memo: Any, logger: Any) -> None:
    """spec.schedule: start a new run of the same generation when due, unless the dataset is unchanged."""
    client = kube.client()
    body = await client.get_or_none(API_VERSION, KIND, namespace, name)
    if body is None:
        return
    ftj, stored = _typed(body), body.get("status") or {}
    if stored.get("phase") not in TERMINAL or ftj.spec.suspend or not ftj.spec.schedule:
        return
    last = (ftj.status and (ftj.status.last_schedule_time or ftj.status.completion_time)) or \
        datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    now = _now()
    if not schedule.due(ftj.spec.schedule, last, now):
        return
    cm = None
    if ftj.spec.dataset.config_map_ref:
        cm = await client.get_or_none("v1", "ConfigMap", namespace, ftj.spec.dataset.config_map_ref.name)
    fingerprint = await asyncio.to_thread(runs.dataset_fingerprint, ftj.spec, await _credentials(ftj), cm)
    if fingerprint is not None and fingerprint == stored.get("datasetFingerprint"):
        await _write_status(ftj, stored, {**stored, "lastScheduleTime": _iso(now)})
        kopf.event(body, type="Normal", reason="RetrainSkipped", message="scheduled retrain skipped: the dataset has not changed")
        return
    kopf.event(body, type="Normal", reason="RetrainScheduled", message=f"scheduled retrain ({ftj.spec.schedule})")
    facts = {"lastScheduleTime": _iso(now), **({"datasetFingerprint": fingerprint} if fingerprint else {})}
    await reconcile(namespace, name, memo, logger, Scheduled(schedule.run_suffix(now), facts))


# ---------------------------------------------------------------- kopf wiring


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
async def on_change(namespace: str, name: str, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    try:
        await reconcile(namespace, name, memo, logger)
    except kube.ApiError as err:
        raise kopf.TemporaryError(f"API error: {err}", delay=2) from err


def _running(status: kopf.Status, body: kopf.Body, **_: Any) -> bool:
    """Polled while the run is not finished (or belongs to an older generation)."""
    return status.get("phase") not in TERMINAL or status.get("observedGeneration") != body["metadata"].get("generation")


@kopf.daemon(*RESOURCE, when=_running, cancellation_timeout=5)
async def poll_progress(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                        logger: kopf.Logger, **_: Any) -> None:
    """Copy the Job's state and the run's progress.json into status while the run is going."""
    await beat(stopped, logger, "progress poll", lambda: config.current().progress_interval_seconds,
               lambda: reconcile(namespace, name, memo, logger))


def _held_for_people(status: kopf.Status, spec: kopf.Spec, **_: Any) -> bool:
    """Polled while spec.evaluation.human holds the adapter (pending, or rejected until a new evaluation)."""
    human = ((status.get("adapter") or {}).get("humanEvaluation") or {}).get("state")
    return bool((spec.get("evaluation") or {}).get("human")) and human in (
        HumanEvaluationState.PENDING, HumanEvaluationState.FAILED)


@kopf.daemon(*RESOURCE, when=_held_for_people, cancellation_timeout=5)
async def poll_human_evaluation(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                                logger: kopf.Logger, **_: Any) -> None:
    """Read the human evaluation attached to a held adapter until the gate decides it."""
    await beat(stopped, logger, "human evaluation poll", lambda: config.current().progress_interval_seconds,
               lambda: reconcile(namespace, name, memo, logger))


@kopf.daemon(*RESOURCE, when=lambda spec, **_: bool(spec.get("schedule")), cancellation_timeout=5)
async def scheduled_retrain(namespace: str, name: str, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                            logger: kopf.Logger, **_: Any) -> None:
    """Look for a due scheduled retrain every schedule interval."""
    await beat(stopped, logger, "schedule check", lambda: config.current().schedule_interval_seconds,
               lambda: retrain_if_due(namespace, name, memo, logger))


@kopf.on.delete(*RESOURCE, when=lambda spec, **_: bool((spec.get("output") or {}).get("deleteAdaptersOnDelete")))
async def delete_adapters(body: kopf.Body, **_: Any) -> None:
    """spec.output.deleteAdaptersOnDelete: remove published adapters too (Jobs go by ownerReference)."""
    ftj = _typed(body)
    creds = await _credentials(ftj)
    await asyncio.to_thread(runs.delete_adapters, ftj.spec.output.uri, ftj.metadata.name, creds)


@kopf.on.delete(*RESOURCE, optional=True)
def forget_metrics(name: str, namespace: str, **_: Any) -> None:
    metrics.forget_ftj(namespace, name)
