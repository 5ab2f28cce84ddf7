"""A FineTuneJob seen as OpenAI's fine_tuning.job, its events and its checkpoints. Pure functions of the object.

Only the FineTuneJob's API (spec, metadata, the status fields of its CRD) and its Kubernetes Events are
read, so this follows the API types, not the operator's internals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from loraplane.canary.adapters import variant_name

from .template import (
    ANN_CANCELLED,
    ANN_HYPERPARAMETERS,
    ANN_METADATA,
    ANN_MODEL,
    ANN_SEED,
    ANN_TRAINING_FILE,
    ANN_VALIDATION_FILE,
)
from .wire import (
    CheckpointMetrics,
    EventLevel,
    EventType,
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    Hyperparameters,
    JobError,
    JobStatus,
    Method,
    SupervisedMethod,
)

# FineTuneJob status.phase -> OpenAI status (Suspended is "cancelled" only when cancelled through the API).
PHASES = {
    "Pending": JobStatus.QUEUED,
    "Validating": JobStatus.VALIDATING_FILES,
    "Training": JobStatus.RUNNING,
    "Evaluating": JobStatus.RUNNING,
    "Succeeded": JobStatus.SUCCEEDED,
    "Failed": JobStatus.FAILED,
    "Suspended": JobStatus.QUEUED,
}
FILE_REASONS = ("DatasetInvalid", "BadInput")
TERMINAL = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def unix(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def _annotations(ftj: Mapping[str, Any]) -> Mapping[str, str]:
    return ftj["metadata"].get("annotations") or {}


def _condition(ftj: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in (ftj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), None)


def job_status(ftj: Mapping[str, Any]) -> JobStatus:
    status = ftj.get("status") or {}
    phase = status.get("phase")
    if _annotations(ftj).get(ANN_CANCELLED) and phase not in ("Succeeded", "Failed"):
        return JobStatus.CANCELLED
    # Until the operator has looked at the current generation, the job has not started.
    if phase is None or status.get("observedGeneration") != ftj["metadata"].get("generation"):
        return JobStatus.QUEUED if phase is None else PHASES.get(phase, JobStatus.QUEUED)
    return PHASES.get(phase, JobStatus.QUEUED)


def fine_tuned_model(ftj: Mapping[str, Any]) -> str | None:
    """The model name of the published adapter: `<job id>-<version>`, as a ChatbotDeployment serves it."""
    adapter = (ftj.get("status") or {}).get("adapter") or {}
    if job_status(ftj) != JobStatus.SUCCEEDED or adapter.get("verdict") != "accepted":
        return None
    return variant_name(ftj["metadata"]["name"], adapter["version"])


def job_error(ftj: Mapping[str, Any]) -> JobError | None:
    if job_status(ftj) != JobStatus.FAILED:
        return None
    status = ftj.get("status") or {}
    ready = _condition(ftj, "Ready") or {}
    code = ready.get("reason") or "TrainingFailed"
    return JobError(code=code, message=status.get("message") or ready.get("message") or "the job failed",
                    param="training_file" if code in FILE_REASONS else None)


def to_job(ftj: Mapping[str, Any]) -> FineTuningJob:
    meta, status = ftj["metadata"], ftj.get("status") or {}
    ann = _annotations(ftj)
    hp = Hyperparameters(**json.loads(ann.get(ANN_HYPERPARAMETERS) or "{}"))
    state = job_status(ftj)
    finished = None
    if state == JobStatus.CANCELLED:
        finished = unix(ann[ANN_CANCELLED])
    elif state in TERMINAL:
        finished = unix(status.get("completionTime")) or unix(_condition_time(ftj, "Ready"))
    eta = (status.get("progress") or {}).get("eta")
    return FineTuningJob(
        id=meta["name"],
        created_at=unix(meta.get("creationTimestamp")) or 0,
        error=job_error(ftj),
        fine_tuned_model=fine_tuned_model(ftj),
        finished_at=finished,
        hyperparameters=hp,
        model=ann.get(ANN_MODEL) or ftj["spec"]["baseModel"].get("name") or "",
        organization_id=meta["namespace"],
        seed=int(ann.get(ANN_SEED) or ftj["spec"].get("training", {}).get("seed", 0)),
        status=state,
        training_file=ann.get(ANN_TRAINING_FILE, ""),
        validation_file=ann.get(ANN_VALIDATION_FILE),
        estimated_finish=unix(eta) if state == JobStatus.RUNNING else None,
        metadata=json.loads(ann[ANN_METADATA]) if ann.get(ANN_METADATA) else None,
        method=Method(supervised=SupervisedMethod(hyperparameters=hp)),
    )


def _condition_time(ftj: Mapping[str, Any], type_: str) -> str | None:
    return (_condition(ftj, type_) or {}).get("lastTransitionTime")


def _event(job_id: str, key: str, created: int, message: str, *, level: EventLevel = EventLevel.INFO,
           data: dict[str, Any] | None = None, type_: EventType = EventType.MESSAGE) -> FineTuningJobEvent:
    digest = hashlib.sha256(f"{job_id}\0{key}".encode()).hexdigest()[:24]
    return FineTuningJobEvent(id=f"ftevent-{digest}", created_at=created, level=level, message=message,
                              data=data, type=type_)


def _k8s_event_time(ev: Mapping[str, Any]) -> int:
    return (unix(ev.get("lastTimestamp")) or unix(ev.get("eventTime")) or unix(ev.get("firstTimestamp"))
            or unix((ev.get("metadata") or {}).get("creationTimestamp")) or 0)


def events(ftj: Mapping[str, Any], k8s_events: Iterable[Mapping[str, Any]]) -> list[FineTuningJobEvent]:
    """The job's events, newest first: what the operator reported (Kubernetes Events) and what status holds."""
    meta, status = ftj["metadata"], ftj.get("status") or {}
    job_id = meta["name"]
    created = unix(meta.get("creationTimestamp")) or 0
    out = [_event(job_id, "created", created, f"Created fine-tuning job: {job_id}")]
    for ev in k8s_events:
        level = EventLevel.WARN if ev.get("type") == "Warning" else EventLevel.INFO
        key = (ev.get("metadata") or {}).get("uid") or (ev.get("metadata") or {}).get("name") or ev.get("message", "")
        out.append(_event(job_id, f"k8s/{key}", _k8s_event_time(ev),
                          f"{ev.get('reason', '')}: {ev.get('message', '')}".strip(": "), level=level))
    dataset = status.get("dataset") or {}
    valid = _condition(ftj, "DatasetValid")
    if valid:
        when = unix(valid.get("lastTransitionTime")) or created
        if valid.get("status") == "True":
            msg = (f"Files validated: {dataset.get('examples', '?')} examples, {dataset.get('train', '?')} for "
                   f"training and {dataset.get('validation', '?')} for validation, "
                   f"{dataset.get('warnings', 0)} warning(s)")
            out.append(_event(job_id, "dataset", when, msg, data={k: v for k, v in dataset.items()
                                                                  if k != "topProblems"}))
        else:
            out.append(_event(job_id, "dataset", when, f"Dataset checks failed: {valid.get('message', '')}",
                              level=EventLevel.ERROR))
    progress = status.get("progress") or {}
    if progress.get("step") is not None:
        when = unix(progress.get("updatedAt")) or created
        total_epochs = progress.get("totalEpochs")
        epoch = progress.get("epoch")
        data = {"step": progress["step"], "total_steps": progress.get("totalSteps"),
                "train_loss": progress.get("trainLoss"), "valid_loss": progress.get("evalLoss"),
                "epoch": epoch, "total_epochs": total_epochs}
        parts = [f"Step {progress['step']}/{progress.get('totalSteps', '?')}"]
        if epoch is not None:
            parts.append(f"epoch {epoch:g}" + (f"/{total_epochs}" if total_epochs else ""))
        if progress.get("trainLoss") is not None:
            parts.append(f"training loss={progress['trainLoss']:.4f}")
        if progress.get("evalLoss") is not None:
            parts.append(f"validation loss={progress['evalLoss']:.4f}")
        out.append(_event(job_id, f"progress/{progress['step']}", when, ", ".join(parts),
                          data={k: v for k, v in data.items() if v is not None}, type_=EventType.METRICS))
    metrics = status.get("metrics") or {}
    if "perplexityAfter" in metrics:
        when = unix(_condition_time(ftj, "QualityGatePassed")) or unix(status.get("completionTime")) or created
        msg = (f"Evaluation: validation perplexity {metrics.get('perplexityBefore', float('nan')):.3g} -> "
               f"{metrics['perplexityAfter']:.3g}, exact match {metrics.get('exactMatchBefore', 0):.2f} -> "
               f"{metrics.get('exactMatchAfter', 0):.2f}")
        out.append(_event(job_id, "evaluation", when, msg, data=dict(metrics), type_=EventType.METRICS))
    gate = _condition(ftj, "QualityGatePassed")
    if gate:
        when = unix(gate.get("lastTransitionTime")) or created
        passed = gate.get("status") == "True"
        out.append(_event(job_id, "gate", when, f"Quality gates {'passed' if passed else 'failed'}: "
                          f"{gate.get('message', '')}", level=EventLevel.INFO if passed else EventLevel.ERROR))
    state = job_status(ftj)
    if state in TERMINAL:
        job = to_job(ftj)
        # The closing event is the newest, even when the operator's own event came a second later.
        when = max([job.finished_at or created, *(e.created_at for e in out)])
        if state == JobStatus.SUCCEEDED:
            msg = f"The job has successfully completed: {job.fine_tuned_model or 'no adapter published'}"
            out.append(_event(job_id, "finished", when, msg))
        elif state == JobStatus.CANCELLED:
            out.append(_event(job_id, "finished", when, "The job was cancelled"))
        else:
            out.append(_event(job_id, "finished", when, f"The job failed: {job.error.message if job.error else ''}",
                              level=EventLevel.ERROR))
    # Newest first; ties keep the order they happened in, reversed.
    indexed = list(enumerate(out))
    indexed.sort(key=lambda pair: (pair[1].created_at, pair[0]), reverse=True)
    return [e for _, e in indexed]


def checkpoints(ftj: Mapping[str, Any]) -> list[FineTuningJobCheckpoint]:
    """The servable adapter versions the job published (accepted by its gates), newest first."""
    meta, status = ftj["metadata"], ftj.get("status") or {}
    metrics = status.get("metrics") or {}
    progress = status.get("progress") or {}
    out = []
    for version in status.get("versions") or ([status["adapter"]] if status.get("adapter") else []):
        if version.get("verdict") != "accepted":
            continue
        out.append(FineTuningJobCheckpoint(
            id=f"ftckpt-{meta['name']}-{version['version']}",
            created_at=unix(version.get("publishedAt")) or unix(status.get("completionTime")) or 0,
            fine_tuned_model_checkpoint=variant_name(meta["name"], version["version"]),
            fine_tuning_job_id=meta["name"],
            metrics=CheckpointMetrics(step=progress.get("step"), train_loss=metrics.get("trainLoss"),
                                      valid_loss=metrics.get("evalLoss"), full_valid_loss=metrics.get("evalLoss")),
            step_number=int(progress.get("step") or progress.get("totalSteps") or 0),
        ))
    return list(reversed(out))
