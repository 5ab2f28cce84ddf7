"""The training run of a FineTuneJob on several nodes: a `jobset.x-k8s.io/v1alpha2` JobSet.

Pure, like `training_job`, and built from the same pod template: one indexed replicated job of
`resources.nodes` pods (parallelism = completions = nodes). JobSet's headless Service
(`network.enableDNSHostnames`) gives pod i the name `<jobset>-node-0-<i>.<jobset>`; every pod runs

    python -m loraplane_trainer run ... --nnodes N --nproc-per-node G --rdzv-endpoint <pod 0>:29400

and takes its node rank from `JOB_COMPLETION_INDEX` (set by the indexed Job), node 0 hosting torch's
c10d rendezvous.

Failures keep the single-node Job's meaning. The child Job's podFailurePolicy fails it at once
(backoffLimit 0) and says which rule fired in its failure message ("... matching FailJob rule at
index <i>"); the JobSet's failurePolicy reads that message:

- rule 0, a pod with condition DisruptionTarget (evicted, preempted, its node drained):
  `RestartJobSetAndIgnoreMaxRestarts`: the whole set restarts, free, and resumes from the checkpoint;
- rule 1, exit 42 (bad input) or 43 (quality gate): `FailJobSet`: retrying cannot help;
- anything else (a lost node, an OOM, a crash): JobSet's default `RestartJobSet`, counted against
  `maxRestarts` = resources.backoffLimit; the trainer resumes from its last checkpoint.

Field names follow JobSet's v1alpha2 API; `validate_jobset` checks the object against the JobSet models
the `kubeflow-trainer-api` package ships (Kubeflow Trainer's generated types).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import exitcodes
from ..api.finetunejob import FineTuneJob, RunStatus
from ..config import OperatorConfig
from .training_job import (
    CONTAINER,
    Rendezvous,
    starts_suspended,
    training_command,
    training_labels,
    training_pod_template,
)

JOBSET_API = "jobset.x-k8s.io/v1alpha2"
REPLICATED_JOB = "node"
RENDEZVOUS_PORT = 29400
# The label JobSet puts on its Jobs and pods, naming the set.
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
# What the child Job reports when its podFailurePolicy's FailJob rule fired, and the rule's index in its message.
POD_FAILURE_POLICY_REASON = "PodFailurePolicy"
EVICTED_RULE, FATAL_EXIT_RULE = 0, 1


def rendezvous_endpoint(jobset_name: str, namespace: str) -> str:
    """Pod 0's DNS name under JobSet's headless Service, with the rendezvous port."""
    return f"{jobset_name}-{REPLICATED_JOB}-0-0.{jobset_name}.{namespace}.svc:{RENDEZVOUS_PORT}"


def node_pod_failure_policy() -> dict[str, Any]:
    """The child Job's rules: both fail the Job at once; their index tells the JobSet which one fired."""
    rules: list[dict[str, Any]] = [{}, {}]
    rules[EVICTED_RULE] = {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    rules[FATAL_EXIT_RULE] = {"action": "FailJob", "onExitCodes": {
        "containerName": CONTAINER, "operator": "In",
        "values": [exitcodes.BAD_INPUT, exitcodes.QUALITY_GATE_FAILED]}}
    return {"rules": rules}


def jobset_failure_policy(max_restarts: int) -> dict[str, Any]:
    """Evictions restart the set for free, bad input and a rejected adapter fail it, the rest restart it."""
    def on_rule(index: int) -> dict[str, Any]:
        return {"onJobFailureReasons": [POD_FAILURE_POLICY_REASON],
                "onJobFailureMessagePatterns": [f"matching FailJob rule at index {index}$"]}

    return {"maxRestarts": max_restarts, "rules": [
        {"name": "evicted", "action": "RestartJobSetAndIgnoreMaxRestarts", **on_rule(EVICTED_RULE)},
        {"name": "badInputOrRejected", "action": "FailJobSet", **on_rule(FATAL_EXIT_RULE)},
    ]}


def training_jobset(ftj: FineTuneJob, run: RunStatus, cfg: OperatorConfig, *, sharded: bool = False) -> dict[str, Any]:
    """The JobSet of one training run on resources.nodes nodes of resources.gpus GPUs each."""
    spec = ftj.spec
    res = spec.resources
    if res.nodes < 2:
        raise ValueError("a JobSet is for two nodes or more; one node is a batch/v1 Job (training_job)")
    meta = training_labels(ftj, run)
    rendezvous = Rendezvous(res.nodes, rendezvous_endpoint(run.job_name, meta["namespace"]))
    command = training_command(res, run.run_id, sharded=sharded, rendezvous=rendezvous)
    ports = [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT, "protocol": "TCP"}]
    job_spec: dict[str, Any] = {
        "parallelism": res.nodes, "completions": res.nodes, "completionMode": "Indexed", "backoffLimit": 0,
        "podFailurePolicy": node_pod_failure_policy(),
        "template": training_pod_template(ftj, run, cfg, command, ports),
    }
    if res.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = res.active_deadline_seconds
    js_spec: dict[str, Any] = {
        "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
        "replicatedJobs": [{"name": REPLICATED_JOB, "replicas": 1, "template": {
            "metadata": {"labels": dict(job_spec["template"]["metadata"]["labels"])},
            "spec": job_spec,
        }}],
        "failurePolicy": jobset_failure_policy(res.backoff_limit),
        "successPolicy": {"operator": "All", "targetReplicatedJobs": [REPLICATED_JOB]},
        "ttlSecondsAfterFinished": cfg.job_ttl_seconds_after_finished,
    }
    if starts_suspended(spec):
        js_spec["suspend"] = True
    return {"apiVersion": JOBSET_API, "kind": "JobSet", "metadata": meta, "spec": js_spec}


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
