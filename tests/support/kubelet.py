"""An EMULATED kubelet and Job controller: run a training Job's pod as a local process.

There is no kubelet here, so `run_job` does what the kubelet and the Job controller
would do for the operator's Job, and nothing more: it reads the Job from the
API-server emulator, materialises its volumes (ConfigMaps as files, emptyDirs as
temp dirs) under a work directory and rewrites the mount paths in the command and
env to them, resolves env from Secrets (secretKeyRef, envFrom), runs the container's
command (`python` is this interpreter) and writes the Job's status as the Job
controller would: active while it runs, Complete on exit 0, Failed with reason
PodFailurePolicy when the exit code matches a FailJob rule, BackoffLimitExceeded
otherwise. Not emulated: images, resources, users, retries, node selection.
`prepare_pod` is the kubelet part alone, which the emulated JobSet controller
(`tests.support.jobset_controller`) uses for each of its indexed pods.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _secret(cluster, namespace: str, name: str) -> dict[str, str]:
    secret = cluster.get("v1", "Secret", namespace, name)
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def _rewrite(value: str, mounts: dict[str, Path]) -> str:
    for mount_path in sorted(mounts, key=len, reverse=True):
        if value == mount_path or value.startswith(mount_path + "/"):
            return str(mounts[mount_path]) + value[len(mount_path):]
    return value


@dataclass(frozen=True)
class PodProcess:
    """A pod's (only) container as a local command: arguments, environment and working directory."""

    container: dict[str, Any]
    command: list[str]
    env: dict[str, str]
    cwd: Path


def prepare_pod(cluster, namespace: str, pod: dict[str, Any], workdir: Path, *,
                volume_dirs: dict[str, Path] | None = None, extra_env: dict[str, str] | None = None) -> PodProcess:
    """Materialise a pod spec's volumes under workdir and resolve its container's command and env."""
    (container,) = pod["containers"]
    volumes: dict[str, Path] = {}
    for vol in pod.get("volumes") or []:
        path = (volume_dirs or {}).get(vol["name"]) or workdir / "volumes" / vol["name"]
        path.mkdir(parents=True, exist_ok=True)
        if "configMap" in vol:
            cm = cluster.get("v1", "ConfigMap", namespace, vol["configMap"]["name"])
            for key, text in (cm.get("data") or {}).items():
                (path / key).write_text(text)
        volumes[vol["name"]] = path
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts") or []}
    env: dict[str, str] = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    for source in container.get("envFrom") or []:
        env.update(_secret(cluster, namespace, source["secretRef"]["name"]))
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = _rewrite(var["value"], mounts)
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = _secret(cluster, namespace, ref["name"])[ref["key"]]
    # The CPUs this node gives the pod: the test session's share when it runs several workers (a real
    # pod's CPU limit reaches the trainer as its cgroup quota; here the host's CPUs are shared).
    if os.environ.get("OMP_NUM_THREADS"):
        env["OMP_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"]
    env.update(extra_env or {})
    command = [_rewrite(arg, mounts) for arg in container["command"]]
    if command[0] == "python":
        command[0] = sys.executable
    return PodProcess(container, command, env, workdir)


def run_job(cluster, namespace: str, name: str, workdir: Path, *, volume_dirs: dict[str, Path] | None = None,
            extra_env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the Job's (only) container to completion and record the result in the Job's status.

    volume_dirs maps a volume name to a directory to use instead of a fresh one (e.g. a warm model cache).
    """
    job = cluster.get("batch/v1", "Job", namespace, name)
    pod = prepare_pod(cluster, namespace, job["spec"]["template"]["spec"], workdir, volume_dirs=volume_dirs,
                      extra_env=extra_env)
    cluster.set_job_status(namespace, name, active=1, ready=1)
    proc = subprocess.run(pod.command, env=pod.env, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    fail_fast = {code for rule in (job["spec"].get("podFailurePolicy") or {}).get("rules", [])
                 if rule["action"] == "FailJob" for code in rule.get("onExitCodes", {}).get("values", [])}
    if proc.returncode == 0:
        cluster.set_job_status(namespace, name, succeeded=1, condition="Complete")
    elif proc.returncode in fail_fast:
        cluster.set_job_status(namespace, name, failed=1, condition="Failed", reason="PodFailurePolicy",
                               message=f"Container {pod.container['name']} failed with exit code {proc.returncode}")
    else:
        cluster.set_job_status(namespace, name, failed=1, condition="Failed", reason="BackoffLimitExceeded",
                               message="Job has reached the specified backoff limit")
    return proc
