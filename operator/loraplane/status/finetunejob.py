"""A FineTuneJob's status, computed from its training Job, the Job's pods and the run's progress.json.

Pure: `compute_status(...)` takes what the controller read and returns the whole new
status; the controller patches the difference (`status_diff`). Phase comes from the
Job (Pending until it starts, Failed/Succeeded when it ends) refined by the
trainer's progress (Validating, Training, Evaluating while it runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from .. import exitcodes
from ..api.base import StatusModel
from ..api.finetunejob import AdapterStatus, DatasetStatus, MetricsStatus
from ..storage import RunProgress
from .conditions import ConditionSet, kstatus

DATASET_VALID = "DatasetValid"
QUALITY_GATE_PASSED = "QualityGatePassed"
SUSPENDED = "Suspended"
TERMINAL = ("Succeeded", "Failed")
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
_RUN_PHASES = {"Validating": "Validating", "Training": "Training", "Evaluating": "Evaluating",
               "Publishing": "Evaluating"}


@dataclass(frozen=True)
class Observed:
    """Everything the controller read for one reconcile of one FineTuneJob."""

    job_name: str
    run_id: str
    job: Mapping[str, Any] | None = None
    pods: tuple[Mapping[str, Any], ...] = ()
    progress: RunProgress | None = None
    adapter: Mapping[str, Any] | None = None  # from the published manifest: version, uri, sha256, verdict, ...
    gpu_seconds_finished_runs: float = 0.0
    suspended: bool = False
    now: str = ""


def _job_condition(job: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def pod_problem(pods: tuple[Mapping[str, Any], ...]) -> tuple[str, str] | None:
    """(reason, one line) for what the pods say went wrong: image pull, OOM, bad config, exit code."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_REASONS:
                return "ImagePullFailed", f"cannot pull image {cs.get('image', '')}: {waiting.get('message', waiting['reason'])}"
            if waiting.get("reason") in CONFIG_REASONS:
                return "PodConfigError", waiting.get("message") or waiting["reason"]
            for state in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
                if not state:
                    continue
                if state.get("reason") == "OOMKilled":
                    return "OutOfMemory", "the trainer ran out of memory (OOMKilled): lower batchSize or maxTokens"
                code = state.get("exitCode")
                if code == exitcodes.BAD_INPUT:
                    return "BadInput", (state.get("message") or "the trainer refused its input").strip().splitlines()[0]
                if code == exitcodes.QUALITY_GATE_FAILED:
                    return "QualityGateFailed", (state.get("message") or "a quality gate failed").strip().splitlines()[0]
    return None


def _failure(obs: Observed) -> tuple[str, str]:
    """(reason, one-line message) of a failed run: the trainer's own account first, then the pods, then the Job."""
    p = obs.progress
    if p is not None and p.phase == "Failed" and (p.reason or p.message):
        return p.reason or "TrainingFailed", (p.message or p.reason or "").strip().splitlines()[0]
    problem = pod_problem(obs.pods)
    if problem:
        return problem
    cond = _job_condition(obs.job, "Failed") or {}
    reason = cond.get("reason") or "JobFailed"
    if reason == "DeadlineExceeded":
        return "DeadlineExceeded", "the training Job ran past resources.activeDeadlineSeconds"
    if reason == "BackoffLimitExceeded":
        return "BackoffLimitExceeded", f"the trainer failed {obs.job['status'].get('failed', 0)} times: {cond.get('message', '')}".strip()
    return reason, cond.get("message") or "the training Job failed"


def _progress(p: RunProgress) -> dict[str, Any]:
    out = {
        "epoch": p.epoch, "totalEpochs": p.total_epochs, "step": p.step, "totalSteps": p.total_steps,
        "percent": p.percent, "tokensPerSecond": p.tokens_per_second, "trainLoss": p.train_loss,
        "evalLoss": p.eval_loss,
        "eta": p.eta.isoformat().replace("+00:00", "Z") if p.eta else None,
        "updatedAt": p.updated_at.isoformat().replace("+00:00", "Z") if p.updated_at else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def _conform(model: type[StatusModel], data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What the trainer wrote, reduced to the status schema: unknown keys dropped, bad values refused.

    The API server would otherwise refuse (or prune) the whole status patch.
    """
    try:
        return model.model_validate(data).to_wire()
    except ValidationError:
        return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def estimated_cost(gpu_seconds: float, price_per_gpu_hour: float | None) -> str | None:
    if price_per_gpu_hour is None:
        return None
    return f"{gpu_seconds / 3600 * price_per_gpu_hour:.2f}"


def run_gpu_seconds(obs: Observed, gpus: int) -> float:
    """GPU-seconds of the current run: the trainer's figure, else the Job's wall time x GPUs."""
    if obs.progress is not None and obs.progress.gpu_seconds is not None:
        return float(obs.progress.gpu_seconds)
    job_status = (obs.job or {}).get("status") or {}
    start = _parse_time(job_status.get("startTime"))
    end = _parse_time(job_status.get("completionTime")) or _parse_time(obs.now)
    if not gpus or start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds()) * gpus


def compute_status(ftj: Mapping[str, Any], obs: Observed) -> dict[str, Any]:
    """The complete new status of a FineTuneJob."""
    meta, spec = ftj["metadata"], ftj["spec"]
    old: dict[str, Any] = dict(ftj.get("status") or {})
    generation = meta.get("generation")
    conds = ConditionSet(old.get("conditions"), generation=generation, now=obs.now)
    status: dict[str, Any] = {k: v for k, v in old.items() if k in ("versions", "lastScheduleTime", "adapter")}
    status.update({"observedGeneration": generation, "jobName": obs.job_name, "runId": obs.run_id})
    job_status = (obs.job or {}).get("status") or {}
    p = obs.progress
    if job_status.get("startTime"):
        status["startTime"] = job_status["startTime"]
    if job_status.get("completionTime"):
        status["completionTime"] = job_status["completionTime"]
    attempts = int(job_status.get("failed", 0)) + (1 if job_status.get("active") or job_status.get("succeeded") else 0)
    if attempts:
        status["attempts"] = attempts
    if p is not None:
        prog = _progress(p)
        if prog:
            status["progress"] = prog
        if p.dataset:
            dataset = _conform(DatasetStatus, p.dataset)
            if dataset:
                status["dataset"] = dataset
        if p.metrics and _conform(MetricsStatus, p.metrics):
            status["metrics"] = _conform(MetricsStatus, p.metrics)
        elif p.train_loss is not None or p.eval_loss is not None:
            # Until the final evaluation, the latest losses: `kubectl get ftj` shows eval loss while training.
            status["metrics"] = {k: v for k, v in (("trainLoss", p.train_loss), ("evalLoss", p.eval_loss)) if v is not None}
    elif old.get("runId") == obs.run_id:
        for k in ("progress", "dataset", "metrics"):
            if k in old:
                status[k] = old[k]
    adapter = obs.adapter or (_conform(AdapterStatus, p.adapter) if p is not None and p.adapter else None)
    if adapter:
        status["adapter"] = dict(adapter)
        versions = [v for v in status.get("versions") or [] if v.get("version") != adapter.get("version")]
        status["versions"] = [*versions, dict(adapter)][-100:]

    gpus = (spec.get("resources") or {}).get("gpus", 1)
    total_gpu = obs.gpu_seconds_finished_runs + run_gpu_seconds(obs, gpus)
    if total_gpu:
        status["gpuSeconds"] = round(total_gpu, 1)
        cost = estimated_cost(total_gpu, (spec.get("resources") or {}).get("pricePerGpuHour"))
        if cost is not None:
            status["estimatedCost"] = cost

    # Domain conditions from what the trainer reported.
    if p is not None and p.dataset is not None:
        errors = int(p.dataset.get("errors") or 0)
        warnings = int(p.dataset.get("warnings") or 0)
        if errors:
            first = (p.dataset.get("topProblems") or [{}])[0]
            lines = first.get("lines") or []
            where = f" (lines {', '.join(str(n) for n in lines[:5])})" if lines else ""
            conds.set(DATASET_VALID, False, "DatasetInvalid", f"{errors} check(s) failed: {first.get('message', '')}{where}")
        else:
            conds.set(DATASET_VALID, True, "DatasetChecked",
                      f"{p.dataset.get('examples', '?')} examples, {warnings} warning(s)")
    if adapter:
        accepted = adapter.get("verdict") == "accepted"
        conds.set(QUALITY_GATE_PASSED, accepted, "GatesPassed" if accepted else "QualityGateFailed",
                  f"adapter {adapter.get('version')} accepted" if accepted else adapter.get("reason") or "rejected")

    # Phase.
    failed = _job_condition(obs.job, "Failed")
    complete = _job_condition(obs.job, "Complete")
    problem = pod_problem(obs.pods)
    if failed or (p is not None and p.phase == "Failed" and not job_status.get("active")):
        reason, message = _failure(obs)
        if reason in ("QualityGateFailed",) or (p is not None and p.reason == "QualityGateFailed"):
            conds.set(QUALITY_GATE_PASSED, False, "QualityGateFailed", message)
        if reason in ("DatasetInvalid", "BadInput") and not conds.get(DATASET_VALID):
            conds.set(DATASET_VALID, False, reason, message)
        phase = "Failed"
        kstatus(conds, ready=False, reason=reason, message=message, stalled=True)
    elif complete:
        if adapter and adapter.get("verdict") == "rejected":
            phase, reason = "Failed", "QualityGateFailed"
            message = f"adapter {adapter.get('version')} rejected: {adapter.get('reason') or 'a quality gate failed'}"
            kstatus(conds, ready=False, reason=reason, message=message, stalled=True)
        else:
            phase, reason = "Succeeded", "Succeeded"
            message = f"adapter {adapter['version']} published at {adapter['uri']}" if adapter else "training finished"
            kstatus(conds, ready=True, reason=reason, message=message)
    elif obs.suspended:
        phase, reason, message = "Suspended", "Suspended", "spec.suspend is true: no training runs"
        kstatus(conds, ready=False, reason=reason, message=message)
    elif problem and problem[0] in ("ImagePullFailed", "PodConfigError"):
        phase, (reason, message) = "Pending", problem
        kstatus(conds, ready=False, reason=reason, message=message, stalled=True)
    elif obs.job is None:
        phase, reason, message = "Pending", "Creating", "creating the training Job"
        kstatus(conds, ready=False, reason=reason, message=message, reconciling=True)
    elif (obs.job.get("spec") or {}).get("suspend") and not job_status.get("active"):
        queue = (spec.get("resources") or {}).get("queue")
        phase, reason = "Pending", "Queued"
        message = f"waiting for Kueue to admit the Job in queue {queue}" if queue else "the training Job is suspended"
        kstatus(conds, ready=False, reason=reason, message=message, reconciling=True)
    elif not job_status.get("active") and not job_status.get("startTime"):
        phase, reason, message = "Pending", "Scheduling", "waiting for the training pod to start"
        kstatus(conds, ready=False, reason=reason, message=message, reconciling=True)
    else:
        phase = _RUN_PHASES.get(p.phase, "Validating") if p is not None else "Validating"
        reason = phase
        if phase == "Training" and p is not None and p.step is not None:
            message = f"step {p.step}/{p.total_steps or '?'}"
            if p.eval_loss is not None:
                message += f", eval loss {p.eval_loss:.3g}"
        elif phase == "Validating":
            message = "checking the dataset"
        else:
            message = "evaluating and publishing the adapter"
        kstatus(conds, ready=False, reason=reason, message=message, reconciling=True)
    if phase != "Suspended":
        conds.remove(SUSPENDED)
    else:
        conds.set(SUSPENDED, True, "Suspended", message)
    status["phase"] = phase
    status["message"] = message[:4096]
    status["conditions"] = conds.to_list()
    return status
