"""The training run of a FineTuneJob: a ConfigMap holding the job as JSON and a batch/v1 Job running the trainer.

Pure functions of (FineTuneJob, its current run, OperatorConfig): no API calls. The Job runs

    python -m loraplane_trainer run --job /etc/loraplane/job/finetunejob.json --run-id <run-id>

and needs no Kubernetes API access: it reads the job from the mounted ConfigMap and
writes progress, checkpoints and the adapter to object storage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .. import exitcodes
from ..api.finetunejob import FineTuneJob, FineTuneJobSpec, ResourcesSpec, RunStatus
from ..config import OperatorConfig
from .common import (
    GPU_RESOURCE,
    LABEL_GENERATION,
    LABEL_RUN,
    MAX_NAME,
    child_metadata,
    child_name,
    container_resources,
    label_value,
    owner_of,
    restricted_security_context,
)

COMPONENT = "trainer"
CONTAINER = "trainer"
JOB_DIR = "/etc/loraplane/job"
JOB_FILE = "finetunejob.json"
CONFIGMAP_DIR = "/etc/loraplane/configmaps"
CACHE_DIR = "/cache"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
RUN_ID_ANNOTATION = "loraplane.io/run-id"
# The trainer checkpoints to object storage on SIGTERM: give it time before the kill.
TERMINATION_GRACE_SECONDS = 120
RUN_AS_USER = 10001  # the trainer image's user


# A JobSet's pods are named `<jobset>-<replicated job>-<job index>-<pod index>`, which must stay a DNS label.
JOBSET_POD_SUFFIX = len("-node-0-") + 2


def job_name(ftj_name: str, generation: int, suffix: str | None = None, nodes: int = 1) -> str:
    """`<name>-train-<generation>[-<suffix>]`: one Job (or JobSet) per generation (and per scheduled rerun)."""
    max_length = MAX_NAME if nodes == 1 else MAX_NAME - JOBSET_POD_SUFFIX
    return child_name(ftj_name, "train", generation, *([suffix] if suffix else []), max_length=max_length)


def job_document(ftj: FineTuneJob, run: RunStatus) -> dict[str, Any]:
    """What the trainer reads: apiVersion, kind, metadata (name, namespace, uid, the run's generation), spec."""
    meta = {"name": ftj.metadata.name, "namespace": ftj.metadata.namespace, "uid": ftj.metadata.uid,
            "generation": run.generation}
    return {
        "apiVersion": ftj.api_version,
        "kind": ftj.kind,
        "metadata": {k: v for k, v in meta.items() if v is not None},
        "spec": ftj.spec.to_wire(),
    }


def _run_labels(run: RunStatus) -> dict[str, str]:
    return {LABEL_GENERATION: str(run.generation), LABEL_RUN: label_value(run.run_id)}


def job_config_map(ftj: FineTuneJob, run: RunStatus) -> dict[str, Any]:
    """The ConfigMap mounted at /etc/loraplane/job, named like its Job and owned by the FineTuneJob."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner_of(ftj), run.job_name, COMPONENT, _run_labels(run),
                                   {RUN_ID_ANNOTATION: run.run_id}),
        "data": {JOB_FILE: json.dumps(job_document(ftj, run), indent=2, sort_keys=True) + "\n"},
    }


def _env(spec: FineTuneJobSpec, run_id: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "LORAPLANE_CACHE", "value": CACHE_DIR},
        {"name": "LORAPLANE_CONFIGMAP_DIR", "value": CONFIGMAP_DIR},
        {"name": "LORAPLANE_RUN_ID", "value": run_id},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    token = spec.base_model.token_secret_ref
    if token:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    augmentation = spec.augmentation
    keyed = (
        (augmentation.synthetic if augmentation else None, "LORAPLANE_SYNTHETIC_API_KEY"),
        (augmentation.back_translation if augmentation else None, "LORAPLANE_BACKTRANSLATION_API_KEY"),
        (spec.evaluation.safety.judge, "LORAPLANE_JUDGE_API_KEY"),
        (spec.dataset.checks.moderation, "LORAPLANE_MODERATION_API_KEY"),
    )
    for source, name in keyed:
        ref = source.api_key_secret_ref if source else None
        if ref:
            env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _volumes(spec: FineTuneJobSpec, config_map: str, cfg: OperatorConfig) -> tuple[list[dict], list[dict]]:
    volumes: list[dict[str, Any]] = [
        {"name": "job", "configMap": {"name": config_map}},
        {"name": "cache", "emptyDir": {"sizeLimit": cfg.cache_size}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "job", "mountPath": JOB_DIR, "readOnly": True},
        {"name": "cache", "mountPath": CACHE_DIR},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    ref = spec.dataset.config_map_ref
    if ref:
        volumes.append({"name": "dataset", "configMap": {"name": ref.name}})
        mounts.append({"name": "dataset", "mountPath": f"{CONFIGMAP_DIR}/{ref.name}", "readOnly": True})
    return volumes, mounts


def _tolerations(res: ResourcesSpec) -> list[dict[str, Any]]:
    tolerations = [t.to_wire() for t in res.tolerations]
    if res.gpus and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule.
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return tolerations


def pod_failure_policy() -> dict[str, Any]:
    """Bad input and a failed quality gate fail the Job at once; evictions and disruptions are retried free."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [exitcodes.BAD_INPUT, exitcodes.QUALITY_GATE_FAILED],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


@dataclass(frozen=True)
class Rendezvous:
    """Where the nodes of a multi-node run meet: torch's c10d rendezvous on the first pod."""

    nodes: int
    endpoint: str  # host:port


def training_command(res: ResourcesSpec, run_id: str, *, sharded: bool = False,
                     rendezvous: Rendezvous | None = None) -> list[str]:
    """The trainer's command; with several GPUs it starts one process per GPU (torchrun's launcher, in the
    trainer, which keeps the trainer's exit codes that the podFailurePolicy reads; torchrun itself exits 1).
    `--strategy fsdp` when the plan shards the model (`sharded`); on several nodes every pod joins the
    rendezvous and takes its node rank from JOB_COMPLETION_INDEX."""
    command = ["python", "-m", "loraplane_trainer", "run", "--job", f"{JOB_DIR}/{JOB_FILE}"]
    if rendezvous is not None:
        command += ["--nnodes", str(rendezvous.nodes), "--nproc-per-node", str(max(1, res.gpus)),
                    "--rdzv-endpoint", rendezvous.endpoint]
    elif res.gpus > 1:
        command += ["--nproc-per-node", str(res.gpus)]
    if sharded:
        command += ["--strategy", "fsdp"]
    return [*command, "--run-id", run_id]


def _node_selector(res: ResourcesSpec) -> dict[str, str]:
    node_selector = dict(res.node_selector)
    if res.gpu_type:
        node_selector[GPU_PRODUCT_LABEL] = res.gpu_type
    return node_selector


def training_labels(ftj: FineTuneJob, run: RunStatus) -> dict[str, Any]:
    """The metadata of a run's Job or JobSet: owner, names, run labels, the Kueue queue."""
    run_labels = _run_labels(run)
    if ftj.spec.resources.queue:
        run_labels[KUEUE_QUEUE_LABEL] = ftj.spec.resources.queue
    return child_metadata(owner_of(ftj), run.job_name, COMPONENT, run_labels, {RUN_ID_ANNOTATION: run.run_id})


def training_pod_template(ftj: FineTuneJob, run: RunStatus, cfg: OperatorConfig, command: list[str],
                          ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The trainer's pod template, the same for a Job and for each pod of a JobSet."""
    spec = ftj.spec
    res = spec.resources
    volumes, mounts = _volumes(spec, run.job_name, cfg)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": cfg.trainer_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": command,
        "env": _env(spec, run.run_id),
        "volumeMounts": mounts,
        "securityContext": {**restricted_security_context(), "readOnlyRootFilesystem": True},
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if ports:
        container["ports"] = ports
    if spec.output.credentials_secret_ref:
        container["envFrom"] = [{"secretRef": {"name": spec.output.credentials_secret_ref.name}}]
    resources = container_resources(cpu=res.cpu, memory=res.memory, gpus=res.gpus)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    node_selector = _node_selector(res)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(res)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if res.affinity:
        pod_spec["affinity"] = res.affinity
    if res.priority_class_name:
        pod_spec["priorityClassName"] = res.priority_class_name
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in cfg.image_pull_secrets]
    labels = {k: v for k, v in training_labels(ftj, run)["labels"].items() if k != KUEUE_QUEUE_LABEL}
    return {"metadata": {"labels": labels, "annotations": {RUN_ID_ANNOTATION: run.run_id}}, "spec": pod_spec}


def starts_suspended(spec: FineTuneJobSpec) -> bool:
    """Kueue admits a queued workload by unsuspending it; a paused FineTuneJob starts its workload suspended."""
    return bool(spec.resources.queue or spec.suspend)


def training_job(ftj: FineTuneJob, run: RunStatus, cfg: OperatorConfig, *, sharded: bool = False) -> dict[str, Any]:
    """The batch/v1 Job of one training run on one node."""
    spec = ftj.spec
    res = spec.resources
    meta = training_labels(ftj, run)
    template = training_pod_template(ftj, run, cfg, training_command(res, run.run_id, sharded=sharded))
    template["metadata"]["labels"] = dict(meta["labels"])  # Kueue reads the queue from the Job; pods keep it too
    job_spec: dict[str, Any] = {
        "backoffLimit": res.backoff_limit,
        "podFailurePolicy": pod_failure_policy(),
        "ttlSecondsAfterFinished": cfg.job_ttl_seconds_after_finished,
        "template": template,
    }
    if res.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = res.active_deadline_seconds
    if starts_suspended(spec):
        job_spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": job_spec}
