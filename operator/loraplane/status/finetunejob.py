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

from .. import exitcodes
from ..api.finetunejob import AdapterStatus, FineTuneJob, FinishedRun, RunStatus
from ..api.states import ConditionType, FineTuneJobPhase, HumanEvaluationState, Reason, RunPhase
from ..evaluation.attached import HumanEvaluation
from ..storage import RunProgress
from .conditions import ConditionSet, kstatus
from .human_gate import with_human_gate

TERMINAL = (FineTuneJobPhase.SUCCEEDED, FineTuneJobPhase.FAILED)
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError")
_RUN_PHASES = {RunPhase.VALIDATING: FineTuneJobPhase.VALIDATING, RunPhase.TRAINING: FineTuneJobPhase.TRAINING,
               RunPhase.EVALUATING: FineTuneJobPhase.EVALUATING, RunPhase.PUBLISHING: FineTuneJobPhase.EVALUATING}
# Kept from the previous status unless this reconcile knows better.
_CARRIED = ("versions", "lastScheduleTime", "adapter", "finishedRuns", "datasetFingerprint")


@dataclass(frozen=True)
class Observed:
    """Everything the controller read for one reconcile of one FineTuneJob."""

    run: RunStatus
    job: Mapping[str, Any] | None = None
    pods: tuple[Mapping[str, Any], ...] = ()
    progress: RunProgress | None = None
    adapter: AdapterStatus | None = None  # from the published manifest
    human: HumanEvaluation | None = None  # human-evaluation.json beside it (read with spec.evaluation.human)
    suspended: bool = False
    now: str = ""


def _job_condition(job: Mapping[str, Any] | None, type_: str) -> Mapping[str, Any] | None:
    for c in ((job or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_ and c.get("status") == "True":
            return c
    return None


def pod_problem(pods: tuple[Mapping[str, Any], ...]) -> tuple[Reason, str] | None:
    """(reason, one line) for what the pods say went wrong: image pull, OOM, bad config, exit code."""
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_PULL_REASONS:
                return (Reason.IMAGE_PULL_FAILED,
                        f"cannot pull image {cs.get('image', '')}: {waiting.get('message', waiting['reason'])}")
            if waiting.get("reason") in CONFIG_REASONS:
                return Reason.POD_CONFIG_ERROR, waiting.get("message") or waiting["reason"]
            for state in ((cs.get("state") or {}).get("terminated"), (cs.get("lastState") or {}).get("terminated")):
                if not state:
                    continue
                if state.get("reason") == "OOMKilled":
                    return Reason.OUT_OF_MEMORY, "the trainer ran out of memory (OOMKilled): lower batchSize or maxTokens"
                code = state.get("exitCode")
                if code == exitcodes.BAD_INPUT:
                    return Reason.BAD_INPUT, _first_line(state.get("message") or "the trainer refused its input")
                if code == exitcodes.QUALITY_GATE_FAILED:
                    return Reason.QUALITY_GATE_FAILED, _first_line(state.get("message") or "a quality gate failed")
    return None


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def _failure(obs: Observed) -> tuple[str, str]:
    """(reason, one-line message) of a failed run: the trainer's own account first, then the pods, then the Job."""
    p = obs.progress
    if p is not None and p.phase is RunPhase.FAILED and (p.reason or p.message):
        return p.reason or Reason.TRAINING_FAILED, _first_line(p.message or p.reason or "")
    problem = pod_problem(obs.pods)
    if problem:
        return problem
    cond = _job_condition(obs.job, "Failed") or {}
    reason = cond.get("reason") or Reason.JOB_FAILED
    if reason == Reason.DEADLINE_EXCEEDED:
        return Reason.DEADLINE_EXCEEDED, "the training Job ran past resources.activeDeadlineSeconds"
    if reason == Reason.BACKOFF_LIMIT_EXCEEDED:
        failed = (obs.job or {}).get("status", {}).get("failed", 0)
        return Reason.BACKOFF_LIMIT_EXCEEDED, f"the trainer failed {failed} times: {cond.get('message', '')}".strip()
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


@dataclass(frozen=True)
class _Verdict:
    phase: FineTuneJobPhase
    reason: str
    message: str
    ready: bool = False
    reconciling: bool = False
    stalled: bool = False


def _verdict(ftj: FineTuneJob, obs: Observed, adapter: Mapping[str, Any] | None) -> _Verdict:
    """Phase, reason and message: the Job's end first, then suspension, pod trouble, scheduling, the run's phase."""
    P, R = FineTuneJobPhase, Reason
    job_status = (obs.job or {}).get("status") or {}
    p = obs.progress
    problem = pod_problem(obs.pods)
    if _job_condition(obs.job, "Failed") or (p is not None and p.phase is RunPhase.FAILED
                                             and not job_status.get("active")):
        reason, message = _failure(obs)
        return _Verdict(P.FAILED, reason, message, stalled=True)
    if _job_condition(obs.job, "Complete"):
        human = (adapter or {}).get("humanEvaluation")
        if adapter and adapter.get("verdict") == "rejected":
            why = adapter.get("reason") or "a quality gate failed"
            return _Verdict(P.FAILED, R.HUMAN_EVALUATION_FAILED if human else R.QUALITY_GATE_FAILED,
                            f"adapter {adapter.get('version')} rejected: {why}", stalled=True)
        message = f"adapter {adapter['version']} published at {adapter['uri']}" if adapter else "training finished"
        if adapter and adapter.get("verdict") == "pending":
            # Trained and through the automatic gates; people have not signed it off yet.
            return _Verdict(P.SUCCEEDED, R.AWAITING_HUMAN_EVALUATION,
                            f"{message}, awaiting human evaluation: {human['message']}", reconciling=True)
        return _Verdict(P.SUCCEEDED, R.SUCCEEDED, message, ready=True)
    if obs.suspended:
        return _Verdict(P.SUSPENDED, R.SUSPENDED, "spec.suspend is true: no training runs")
    if problem and problem[0] in (R.IMAGE_PULL_FAILED, R.POD_CONFIG_ERROR):
        return _Verdict(P.PENDING, problem[0], problem[1], stalled=True)
    if obs.job is None:
        return _Verdict(P.PENDING, R.CREATING, "creating the training Job", reconciling=True)
    if (obs.job.get("spec") or {}).get("suspend") and not job_status.get("active"):
        queue = ftj.spec.resources.queue
        message = f"waiting for Kueue to admit the Job in queue {queue}" if queue else "the training Job is suspended"
        return _Verdict(P.PENDING, R.QUEUED, message, reconciling=True)
    if not job_status.get("active") and not job_status.get("startTime"):
        return _Verdict(P.PENDING, R.SCHEDULING, "waiting for the training pod to start", reconciling=True)
    phase = _RUN_PHASES.get(p.phase, P.VALIDATING) if p is not None else P.VALIDATING
    if phase is P.TRAINING and p is not None and p.step is not None:
        message = f"step {p.step}/{p.total_steps or '?'}"
        if p.eval_loss is not None:
            message += f", eval loss {p.eval_loss:.3g}"
    elif phase is P.VALIDATING:
        message = "checking the dataset"
    else:
        message = "evaluating and publishing the adapter"
    return _Verdict(phase, phase.value, message, reconciling=True)


def _domain_conditions(conds: ConditionSet, p: RunProgress | None, adapter: Mapping[str, Any] | None,
                       verdict: _Verdict) -> None:
    C, R = ConditionType, Reason
    if p is not None and p.dataset is not None:
        errors, warnings = p.dataset.errors or 0, p.dataset.warnings or 0
        if errors:
            first = p.dataset.top_problems[0] if p.dataset.top_problems else None
            lines = first.lines if first else []
            where = f" (lines {', '.join(str(n) for n in lines[:5])})" if lines else ""
            conds.set(C.DATASET_VALID, False, R.DATASET_INVALID,
                      f"{errors} check(s) failed: {first.message if first else ''}{where}")
        else:
            examples = p.dataset.examples if p.dataset.examples is not None else "?"
            conds.set(C.DATASET_VALID, True, R.DATASET_CHECKED, f"{examples} examples, {warnings} warning(s)")
    if adapter:
        human = adapter.get("humanEvaluation")
        accepted = adapter.get("verdict") == "accepted" or human is not None  # held only after the gates passed
        conds.set(C.QUALITY_GATE_PASSED, accepted, R.GATES_PASSED if accepted else R.QUALITY_GATE_FAILED,
                  f"adapter {adapter.get('version')} accepted" if accepted else adapter.get("reason") or "rejected")
        if human is not None:
            state = HumanEvaluationState(human["state"])
            conds.set(C.HUMAN_EVALUATION_PASSED, state is HumanEvaluationState.PASSED, {
                HumanEvaluationState.PENDING: R.AWAITING_HUMAN_EVALUATION,
                HumanEvaluationState.PASSED: R.HUMAN_EVALUATION_PASSED,
                HumanEvaluationState.FAILED: R.HUMAN_EVALUATION_FAILED}[state], human.get("message", ""))
        else:
            conds.remove(C.HUMAN_EVALUATION_PASSED)
    if verdict.phase is FineTuneJobPhase.FAILED:
        if verdict.reason == R.QUALITY_GATE_FAILED or (p is not None and p.reason == R.QUALITY_GATE_FAILED):
            conds.set(C.QUALITY_GATE_PASSED, False, R.QUALITY_GATE_FAILED, verdict.message)
        if verdict.reason in (R.DATASET_INVALID, R.BAD_INPUT) and not conds.get(C.DATASET_VALID):
            conds.set(C.DATASET_VALID, False, verdict.reason, verdict.message)
    if verdict.phase is FineTuneJobPhase.SUSPENDED:
        conds.set(C.SUSPENDED, True, R.SUSPENDED, verdict.message)
    else:
        conds.remove(C.SUSPENDED)


def _run_figures(old: Mapping[str, Any], obs: Observed, p: RunProgress | None) -> dict[str, Any]:
    """progress, dataset and metrics of the current run (kept from the old status while nothing newer is read)."""
    out: dict[str, Any] = {}
    if p is None:
        same_run = (old.get("currentRun") or {}).get("runId", old.get("runId")) == obs.run.run_id
        return {k: old[k] for k in ("progress", "dataset", "metrics") if same_run and k in old}
    prog = _progress(p)
    if prog:
        out["progress"] = prog
    if p.dataset is not None and p.dataset.to_wire():
        out["dataset"] = p.dataset.to_wire()
    if p.metrics is not None and p.metrics.to_wire():
        out["metrics"] = p.metrics.to_wire()
    elif p.train_loss is not None or p.eval_loss is not None:
        # Until the final evaluation, the latest losses: `kubectl get ftj` shows eval loss while training.
        out["metrics"] = {k: v for k, v in (("trainLoss", p.train_loss), ("evalLoss", p.eval_loss)) if v is not None}
    return out


def _gpu_and_runs(ftj: FineTuneJob, obs: Observed, old: Mapping[str, Any], phase: FineTuneJobPhase) -> dict[str, Any]:
    """gpuSeconds and estimatedCost over every run; a finished run is recorded in finishedRuns."""
    runs = [FinishedRun.model_validate(r) for r in old.get("finishedRuns") or []]
    others = [r for r in runs if r.run_id != obs.run.run_id]
    recorded = sum(r.gpu_seconds for r in runs if r.run_id == obs.run.run_id)
    # A figure read again later (the Job gone by its TTL) never lowers what the run was charged.
    this_run = max(recorded, run_gpu_seconds(obs, ftj.spec.resources.gpus))
    out: dict[str, Any] = {}
    if phase in TERMINAL:
        done = FinishedRun(run_id=obs.run.run_id, phase=phase, gpu_seconds=round(this_run, 1))
        out["finishedRuns"] = [r.to_wire() for r in [*others, done][-100:]]
    total = sum(r.gpu_seconds for r in others) + this_run
    if total:
        out["gpuSeconds"] = round(total, 1)
        cost = estimated_cost(total, ftj.spec.resources.price_per_gpu_hour)
        if cost is not None:
            out["estimatedCost"] = cost
    return out


def compute_status(ftj: FineTuneJob, obs: Observed, old: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete new status of a FineTuneJob; `old` is its status as stored (default: the typed one)."""
    if old is None:
        old = ftj.status.to_wire() if ftj.status else {}
    generation = ftj.metadata.generation
    conds = ConditionSet(old.get("conditions"), generation=generation, now=obs.now)
    status: dict[str, Any] = {k: old[k] for k in _CARRIED if k in old}
    status.update({"observedGeneration": generation, "jobName": obs.run.job_name, "runId": obs.run.run_id,
                   "currentRun": obs.run.to_wire()})
    job_status = (obs.job or {}).get("status") or {}
    for key in ("startTime", "completionTime"):
        if job_status.get(key):
            status[key] = job_status[key]
    attempts = int(job_status.get("failed", 0)) + (1 if job_status.get("active") or job_status.get("succeeded") else 0)
    if attempts:
        status["attempts"] = attempts
    p = obs.progress
    status.update(_run_figures(old, obs, p))
    # The adapter this run published (the manifest's account first); the last one stays in status.
    found = obs.adapter or (p.adapter if p is not None else None)
    if found is not None:
        found = with_human_gate(found, ftj.spec.evaluation.human, obs.human)
    adapter = found.to_wire() if found else None
    if adapter:
        status["adapter"] = adapter
        versions = [v for v in status.get("versions") or [] if v.get("version") != adapter["version"]]
        status["versions"] = [*versions, adapter][-100:]

    verdict = _verdict(ftj, obs, adapter)
    _domain_conditions(conds, p, adapter, verdict)
    kstatus(conds, ready=verdict.ready, reason=verdict.reason, message=verdict.message,
            reconciling=verdict.reconciling, stalled=verdict.stalled)
    status.update(_gpu_and_runs(ftj, obs, old, verdict.phase))
    status["phase"] = verdict.phase.value
    status["message"] = verdict.message[:4096]
    status["conditions"] = conds.to_list()
    return status
