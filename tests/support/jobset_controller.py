"""An EMULATED JobSet controller (and the Job controller and kubelet under it) for multi-node training tests.

JobSet's controller (kubernetes-sigs/jobset) cannot run here: there is no kube-apiserver, no
kube-controller-manager and no kubelet. `EmulatedJobSet` does what those would do for the
training JobSet the operator created, and nothing more:

- the JobSet CRD is served by the API-server emulator (`serve_jobsets`; its schema keeps unknown
  fields, and `validate_jobset` checks every created JobSet against JobSet's own models);
- per attempt, it creates the replicated job's child Job `<set>-<replicated job>-<index>` (owned by
  the JobSet, labelled `jobset.sigs.k8s.io/jobset-name`), which the API-server emulator validates
  against Kubernetes' Job schema, and runs its `completions` indexed pods as local processes (the
  kubelet's part is `tests.support.kubelet.prepare_pod`) with the environment JobSet and the indexed
  Job set: JOB_COMPLETION_INDEX, JOBSET_NAME, REPLICATED_JOB_NAME, JOB_INDEX, REPLICATED_JOB_REPLICAS,
  and the hostname `<set>-<replicated job>-<job index>-<pod index>` under the headless Service `<set>`;
  that DNS name is what the trainer's `--rdzv-endpoint` names, and since no DNS serves it here it is
  rewritten to 127.0.0.1 and a free port (the only change made to a command);
- it writes the child Job's status as the Job controller does: active while its pods run, Complete
  when all succeed, and on a pod's failure the podFailurePolicy's first matching rule (pod condition
  DisruptionTarget for an evicted pod, exit codes) with the Job controller's own failure message
  ("... matching FailJob rule at index <i>"), else BackoffLimitExceeded (backoffLimit 0);
- it applies the JobSet's failurePolicy as JobSet does: the first rule whose onJobFailureReasons and
  onJobFailureMessagePatterns match decides; FailJobSet fails the set, RestartJobSet (the default)
  and RestartJobSetAndIgnoreMaxRestarts stop every pod, delete the child Job and start the next attempt
  (the first one counted against maxRestarts, ReachedMaxRestarts past it); status.restarts,
  restartsCountTowardsMax, replicatedJobsStatus, the Completed/Failed conditions and terminalState
  are written as JobSet writes them.

Not emulated: Pod objects (the operator reads progress.json for what the trainer said), startup and
success policies other than "all", exclusive placement, Kueue, suspend.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loraplane.builders.training_jobset import JOBSET_API, JOBSET_NAME_LABEL, validate_jobset

from .kubelet import prepare_pod

JOBSET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "jobsets.jobset.x-k8s.io"},
    "spec": {
        "group": "jobset.x-k8s.io",
        "names": {"kind": "JobSet", "plural": "jobsets", "singular": "jobset", "listKind": "JobSetList"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1alpha2", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"},
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            }}},
        }],
    },
}


def serve_jobsets(cluster) -> None:
    """Install JobSet's CRD in the API-server emulator (as `helm install jobset` would in a cluster)."""
    if cluster.get_or_none("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, JOBSET_CRD["metadata"]["name"]):
        return
    cluster.call(cluster.emulator.add_crd, JOBSET_CRD)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Pod:
    index: int
    name: str
    proc: subprocess.Popen
    log: list[str] = field(default_factory=list)
    disrupted: bool = False  # evicted / preempted: the kubelet sets condition DisruptionTarget


@dataclass
class Attempt:
    """One run of the set's pods: their logs and what ended it."""

    number: int
    pods: list[Pod]
    outcome: str = ""  # Completed, Failed, or the restart action taken

    def log(self, index: int) -> str:
        return "".join(self.pods[index].log)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all under it (the elastic agent starts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _pod_failure_rule(job_spec: dict[str, Any], container: str, code: int, disrupted: bool) -> tuple[int, dict] | None:
    """The first podFailurePolicy rule matching a failed pod, as the Job controller evaluates them."""
    for i, rule in enumerate((job_spec.get("podFailurePolicy") or {}).get("rules") or []):
        on_codes, on_conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if on_conds and disrupted and any(c["type"] == "DisruptionTarget" and c.get("status", "True") == "True"
                                          for c in on_conds):
            return i, rule
        if on_codes and not disrupted and on_codes.get("containerName", container) == container:
            hit = code in on_codes["values"]
            if hit == (on_codes["operator"] == "In"):
                return i, rule
    return None


def _jobset_action(policy: dict[str, Any], reason: str, message: str) -> str:
    """The JobSet failurePolicy's action for a child Job failure: the first rule that matches, else RestartJobSet."""
    for rule in policy.get("rules") or []:
        reasons = rule.get("onJobFailureReasons") or []
        patterns = rule.get("onJobFailureMessagePatterns") or []
        if (not reasons or reason in reasons) and (not patterns or any(re.search(p, message) for p in patterns)):
            return rule["action"]
    return "RestartJobSet"


class EmulatedJobSet:
    """Runs one JobSet to its end (see the module docstring). `on_line(attempt, pod, line)` sees every log line
    of every pod as it is written, and may call `evict(pod)` or `kill(pod)` to lose a node."""

    def __init__(self, cluster, namespace: str, name: str, workdir: Path, *,
                 volume_dirs: dict[str, Path] | None = None, extra_env: dict[str, str] | None = None) -> None:
        self.cluster, self.namespace, self.name, self.workdir = cluster, namespace, name, workdir
        self.volume_dirs, self.extra_env = volume_dirs, extra_env or {}
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()

    # ---- losing a node (called from on_line, or from the test's thread)
    def evict(self, pod: Pod) -> None:
        """The pod is evicted: DisruptionTarget, then killed (a drained node, a preemption)."""
        pod.disrupted = True
        _kill_tree(pod.proc.pid)

    def kill(self, pod: Pod) -> None:
        """The pod's processes die without a condition (a crashed or vanished node)."""
        _kill_tree(pod.proc.pid)

    # ---- the controller
    def _jobset(self) -> dict[str, Any]:
        return self.cluster.get(JOBSET_API, "JobSet", self.namespace, self.name)

    def _write_status(self, **status: Any) -> None:
        self.cluster.patch(JOBSET_API, "JobSet", self.namespace, self.name, {"status": status}, subresource="status")

    def _child_job(self, js: dict[str, Any], rjob: dict[str, Any], index: int, attempt: int) -> dict[str, Any]:
        meta = js["metadata"]
        labels = {**(rjob["template"].get("metadata") or {}).get("labels", {}), JOBSET_NAME_LABEL: self.name,
                  "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"], "jobset.sigs.k8s.io/job-index": str(index),
                  "jobset.sigs.k8s.io/restart-attempt": str(attempt)}
        spec = dict(rjob["template"]["spec"])
        template = {**spec["template"], "metadata": {**(spec["template"].get("metadata") or {}),
                                                        "labels": {**spec["template"]["metadata"]["labels"], **labels}}}
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": f"{self.name}-{rjob['name']}-{index}", "namespace": self.namespace,
                             "labels": labels,
                             "ownerReferences": [{"apiVersion": JOBSET_API, "kind": "JobSet", "name": self.name,
                                                  "uid": meta["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]},
                "spec": {**spec, "template": template}}

    def _start(self, js: dict[str, Any], job: dict[str, Any], rjob: dict[str, Any], number: int,
               on_line: Callable | None) -> Attempt:
        spec = job["spec"]
        endpoint_port = _free_port()
        pods = []
        attempt = Attempt(number, pods)
        for i in range(spec["completions"]):
            hostname = f"{job['metadata']['name']}-{i}"
            env = {**self.extra_env, "JOB_COMPLETION_INDEX": str(i), "JOBSET_NAME": self.name,
                   "REPLICATED_JOB_NAME": rjob["name"], "JOB_INDEX": "0", "REPLICATED_JOB_REPLICAS": "1",
                   "HOSTNAME": hostname}
            pod = prepare_pod(self.cluster, self.namespace, spec["template"]["spec"], self.workdir / f"pod-{i}",
                              volume_dirs=self.volume_dirs, extra_env=env)
            # The headless Service's DNS name of pod 0 (<set>-<rjob>-0-0.<set>.<ns>.svc) is localhost here.
            pod0 = re.compile(rf"^{re.escape(self.name)}-{re.escape(rjob['name'])}-0-0\.{re.escape(self.name)}\.\S+:\d+$")
            command = [f"127.0.0.1:{endpoint_port}" if pod0.match(a) else a for a in pod.command]
            proc = subprocess.Popen(command, env=pod.env, cwd=pod.cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    text=True, start_new_session=True)
            pods.append(Pod(i, hostname, proc))
        for pod in pods:
            threading.Thread(target=self._pump, args=(attempt, pod, on_line), daemon=True).start()
        return attempt

    def _pump(self, attempt: Attempt, pod: Pod, on_line: Callable | None) -> None:
        assert pod.proc.stderr is not None
        for line in pod.proc.stderr:
            pod.log.append(line)
            if on_line is not None:
                on_line(self, attempt, pod, line)

    def run(self, on_line: Callable | None = None, timeout: float = 900) -> list[Attempt]:
        """Drive the JobSet until it completes or fails; returns every attempt."""
        js = self._jobset()
        validate_jobset(js)
        (rjob,) = js["spec"]["replicatedJobs"]
        policy = js["spec"].get("failurePolicy") or {}
        restarts = counted = 0
        deadline = time.monotonic() + timeout
        while True:
            job = self.cluster.create(self._child_job(js, rjob, 0, restarts))
            name = job["metadata"]["name"]
            container = job["spec"]["template"]["spec"]["containers"][0]["name"]
            attempt = self._start(js, job, rjob, restarts, on_line)
            self.attempts.append(attempt)
            n = len(attempt.pods)
            self.cluster.set_job_status(self.namespace, name, active=n, ready=n)
            self._write_status(restarts=restarts, restartsCountTowardsMax=counted,
                               replicatedJobsStatus=[{"name": rjob["name"], "active": 1, "ready": 1, "succeeded": 0,
                                                      "failed": 0, "suspended": 0}])
            failed: Pod | None = None
            while time.monotonic() < deadline:
                done = [p for p in attempt.pods if p.proc.poll() is not None]
                failed = next((p for p in done if p.proc.returncode != 0), None)
                if failed is not None or len(done) == n:
                    break
                time.sleep(0.2)
            else:
                for p in attempt.pods:
                    _kill_tree(p.proc.pid)
                raise TimeoutError(f"JobSet {self.name} did not finish in {timeout}s")
            if failed is None:
                self.cluster.set_job_status(self.namespace, name, succeeded=n, condition="Complete")
                self._finish("Completed", "AllJobsCompleted", "jobset completed successfully", rjob, restarts, counted)
                attempt.outcome = "Completed"
                return self.attempts
            # The Job controller: the pod's failure against the podFailurePolicy, backoffLimit 0 otherwise.
            code = failed.proc.returncode if failed.proc.returncode >= 0 else 128 - failed.proc.returncode
            pod_name = f"{self.namespace}/{name}-{failed.index}"
            rule = _pod_failure_rule(job["spec"], container, code, failed.disrupted)
            if rule is not None and rule[1]["action"] == "FailJob":
                reason = "PodFailurePolicy"
                what = (f"Pod {pod_name} has condition DisruptionTarget" if failed.disrupted else
                        f"Container {container} for pod {pod_name} failed with exit code {code}")
                message = f"{what} matching FailJob rule at index {rule[0]}"
            else:
                reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
            for p in attempt.pods:  # a failed Job's pods are terminated
                if p.proc.poll() is None:
                    _kill_tree(p.proc.pid)
            for p in attempt.pods:
                p.proc.wait(timeout=60)
            self.cluster.set_job_status(self.namespace, name, failed=1, condition="Failed", reason=reason,
                                        message=message)
            # The JobSet controller: its failurePolicy decides.
            action = _jobset_action(policy, reason, message)
            attempt.outcome = action
            if action == "FailJobSet":
                self._finish("Failed", "FailJobSetActionTaken", f"{name}: {message}", rjob, restarts, counted)
                return self.attempts
            if action == "RestartJobSet":
                if counted >= int(policy.get("maxRestarts", 0)):
                    self._finish("Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts",
                                 rjob, restarts, counted)
                    return self.attempts
                counted += 1
            restarts += 1
            # Restarting the set: every child Job is deleted (with its pods) and made again.
            self.cluster.delete("batch/v1", "Job", self.namespace, name)
            self.cluster.wait_for(lambda n=name: self.cluster.get_or_none("batch/v1", "Job", self.namespace, n) is None,
                                  30, "the old child Job to go")

    def _finish(self, state: str, reason: str, message: str, rjob: dict, restarts: int, counted: int) -> None:
        now = _now()
        self._write_status(
            restarts=restarts, restartsCountTowardsMax=counted, terminalState=state,
            replicatedJobsStatus=[{"name": rjob["name"], "active": 0, "ready": 0, "suspended": 0,
                                   "succeeded": 1 if state == "Completed" else 0,
                                   "failed": 1 if state == "Failed" else 0}],
            conditions=[{"type": state, "status": "True", "reason": reason, "message": message,
                         "lastTransitionTime": now}])
