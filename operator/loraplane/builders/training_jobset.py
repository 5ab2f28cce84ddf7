"""The training run of a FineTuneJob on several nodes: a `jobset.x-k8s.io/v1alpha2` JobSet.

Pure, like `training_job`: the pod is the one the single-node Job runs, inside one indexed replicated
job of `nodes` pods (parallelism = completions = nodes). JobSet's headless Service
(`network.enableDNSHostnames`) gives pod i the name `<jobset>-node-0-<i>.<jobset>`; every pod runs

    python -m loraplane_trainer run ... --nnodes N --nproc-per-node G --rdzv-endpoint <pod 0>:29400

and takes its node rank from `JOB_COMPLETION_INDEX` (set by the indexed Job), node 0 hosting torchrun's
c10d rendezvous. Failures: the child Job's podFailurePolicy fails it at once on exit 42 (bad input) or 43
(quality gate), and the JobSet's rule `FailJobSet` on reason `PodFailurePolicy` ends the whole set; any
other failure (a lost node, an OOM, a crash) restarts the set (`maxRestarts` = backoffLimit), and the
trainer resumes from its last checkpoint in object storage.

Field names follow JobSet's v1alpha2 API; `validate_jobset` checks the object against the JobSet models
the `kubeflow-trainer-api` package ships (Kubeflow Trainer's generated types).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..config import OperatorConfig
from .training_job import CONTAINER, KUEUE_QUEUE_LABEL, training_job

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "node"
RENDEZVOUS_PORT = 29400
# What the child Job reports when its podFailurePolicy's FailJob rule fired (exit 42 or 43).
POD_FAILURE_POLICY_REASON = "PodFailurePolicy"


def rendezvous_endpoint(jobset_name: str, namespace: str) -> str:
    """Pod 0's DNS name under JobSet's headless Service, with the rendezvous port."""
    return f"{jobset_name}-{REPLICATED_JOB}-0-0.{jobset_name}.{namespace}.svc:{RENDEZVOUS_PORT}"


def training_jobset(ftj: Mapping[str, Any], cfg: OperatorConfig, name: str, run_id: str, nodes: int) -> dict[str, Any]:
    """The JobSet of one training run on `nodes` nodes of `resources.gpus` GPUs each."""
    if nodes < 2:
        raise ValueError("a JobSet is for two nodes or more; one node is a batch/v1 Job (training_job)")
    job = training_job(ftj, cfg, name, run_id)
    meta = job["metadata"]
    gpus = max(1, int((ftj["spec"].get("resources") or {}).get("gpus", 1) or 1))
    job_spec = copy.deepcopy(job["spec"])
    suspend = job_spec.pop("suspend", None)
    backoff = job_spec.pop("backoffLimit", 3)
    job_spec.pop("ttlSecondsAfterFinished", None)
    job_spec.update(parallelism=nodes, completions=nodes, completionMode="Indexed", backoffLimit=0)
    container = next(c for c in job_spec["template"]["spec"]["containers"] if c["name"] == CONTAINER)
    command = [a for a in container["command"]]
    if "--nproc-per-node" in command:  # the single-node flag, replaced by the multi-node ones
        i = command.index("--nproc-per-node")
        del command[i:i + 2]
    at = command.index("--run-id")
    command[at:at] = ["--nnodes", str(nodes), "--nproc-per-node", str(gpus),
                      "--rdzv-endpoint", rendezvous_endpoint(name, meta["namespace"])]
    container["command"] = command
    container["ports"] = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}]
    labels = dict(meta["labels"])
    spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": {
            "metadata": {"labels": {k: v for k, v in labels.items() if k != KUEUE_QUEUE_LABEL}},
            "spec": job_spec,
        }}],
        "failurePolicy": {
            "maxRestarts": backoff,
            "rules": [{"name": "bad-input-or-rejected", "action": "FailJobSet",
                       "onJobFailureReasons": [POD_FAILURE_POLICY_REASON]}],
        },
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [REPLICATED_JOB]},
        "ttlSecondsAfterFinished": cfg.job_ttl_seconds_after_finished,
    }
    if suspend:
        spec["suspend"] = True
    return {"apiVersion": JOBSET_API, "kind": "JobSet", "metadata": meta, "spec": spec}


def validate_jobset(obj: Mapping[str, Any]) -> None:
    """Check a JobSet against JobSet's generated models; ValueError names a field they do not know."""
    from kubeflow_trainer_api.models import JobsetV1alpha2JobSet

    parsed = JobsetV1alpha2JobSet.from_dict(dict(obj))
    if parsed is None:
        raise ValueError("not a JobSet")
    unknown = _unknown(dict(obj), parsed.to_dict(), "")
    if unknown:
        raise ValueError(f"fields the JobSet schema does not have: {', '.join(unknown)}")


def _unknown(given: Any, known: Any, path: str) -> list[str]:
    """Paths present in `given` but dropped by the models' round trip (a misspelt or unknown field)."""
    if isinstance(given, Mapping):
        out = []
        for key, value in given.items():
            if not isinstance(known, Mapping) or key not in known:
                out.append(f"{path}.{key}".lstrip("."))
            else:
                out += _unknown(value, known[key], f"{path}.{key}")
        return out
    if isinstance(given, list) and isinstance(known, list):
        return [p for g, k in zip(given, known, strict=False) for p in _unknown(g, k, path + "[]")]
    return []
