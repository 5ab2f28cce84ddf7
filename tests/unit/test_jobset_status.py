"""A training JobSet's status read as the Job facts the FineTuneJob status is computed from."""

from __future__ import annotations

from pathlib import Path

import yaml
from loraplane.api.finetunejob import FineTuneJob
from loraplane.finetune.current_run import current_run
from loraplane.status.finetunejob import Observed, compute_status
from loraplane.status.jobset import jobset_as_job, jobset_finished

ROOT = Path(__file__).resolve().parents[2]
T0, T1 = "2026-12-01T10:00:00Z", "2026-12-01T10:30:00Z"


def ftj() -> FineTuneJob:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"].update(uid="uid-1", generation=1)
    obj["spec"]["resources"].update(nodes=2, gpus=8)
    return FineTuneJob.model_validate(obj)


def jobset(**status) -> dict:
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "support-bot-train-1", "namespace": "chatbots", "creationTimestamp": T0},
            "spec": {}, "status": status}


def child(**status) -> dict:
    return {"metadata": {"name": "support-bot-train-1-node-0"}, "status": status}


def cond(type_: str, reason: str, message: str = "") -> list[dict]:
    return [{"type": type_, "status": "True", "reason": reason, "message": message, "lastTransitionTime": T1}]


def phase_of(view: dict) -> dict:
    job = ftj()
    return compute_status(job, Observed(run=current_run(job), job=view, now=T1), {})


def test_running_set_is_active_from_its_child_jobs_start():
    view = jobset_as_job(jobset(restarts=0), [child(active=2, startTime=T0)])
    assert view["status"]["active"] == 2 and view["status"]["startTime"] == T0
    assert not jobset_finished(jobset(restarts=0))
    status = phase_of(view)
    assert status["phase"] == "Validating" and status["attempts"] == 1 and status["startTime"] == T0


def test_completed_set_is_a_complete_job():
    js = jobset(restarts=1, terminalState="Completed", conditions=cond("Completed", "AllJobsCompleted"))
    assert jobset_finished(js)
    view = jobset_as_job(js, [child(succeeded=2, startTime=T0)])
    status = phase_of(view)
    assert status["phase"] == "Succeeded" and status["completionTime"] == T1
    assert status["attempts"] == 1 + 1  # one restart of the set, then the attempt that completed


def test_set_out_of_restarts_fails_like_a_job_out_of_retries():
    js = jobset(restarts=3, terminalState="Failed",
                conditions=cond("Failed", "ReachedMaxRestarts", "jobset failed due to reaching max number of restarts"))
    status = phase_of(jobset_as_job(js))
    assert status["phase"] == "Failed" and status["conditions"][0]["reason"] != "JobFailed"
    assert "failed 3 times" in status["message"]


def test_set_failed_by_its_policy_keeps_jobsets_words():
    js = jobset(terminalState="Failed", conditions=cond(
        "Failed", "FailJobSetActionTaken",
        "Container trainer for pod chatbots/x-node-0-0 failed with exit code 42 matching FailJob rule at index 1"))
    status = phase_of(jobset_as_job(js))
    assert status["phase"] == "Failed" and "exit code 42" in status["message"]


def test_suspended_set_waits_for_kueue():
    js = jobset()
    js["spec"]["suspend"] = True
    view = jobset_as_job(js)
    assert view["spec"]["suspend"] is True and "active" not in view["status"]
