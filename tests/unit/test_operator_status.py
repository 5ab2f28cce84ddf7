"""Status computation: kstatus conditions, FineTuneJob phases and one-line failure reasons."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loraplane.api import FineTuneJob
from loraplane.api.finetunejob import AdapterStatus, RunStatus
from loraplane.config import OperatorConfig
from loraplane.finetune.schedule import due, run_suffix
from loraplane.status import ConditionSet, kstatus, set_condition, status_diff
from loraplane.status.finetunejob import Observed, compute_status, estimated_cost
from loraplane.storage import RunProgress

NOW = "2026-11-25T10:00:00Z"


RUN = RunStatus(generation=2, spec_hash="h", run_id="u-2", job_name="bot-train-2")


def ftj(status=None, **resources) -> FineTuneJob:
    return FineTuneJob.model_validate({
        "apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob",
        "metadata": {"name": "bot", "namespace": "ns", "uid": "u", "generation": 2},
        "spec": {"baseModel": {"name": "org/model"}, "dataset": {"uri": "s3://d/data.jsonl"},
                 "output": {"uri": "s3://a/"}, "resources": {"gpus": 1, "pricePerGpuHour": 3.6, **resources}},
        "status": status or {}})


def observed(**facts) -> Observed:
    return Observed(run=RUN, now=NOW, **facts)


def job(**status) -> dict:
    conditions = status.pop("conditions", [])
    return {"spec": {}, "status": {**status, "conditions": conditions}}


def cond(type_, reason="", message=""):
    return {"type": type_, "status": "True", "reason": reason, "message": message}


def test_set_condition_keeps_transition_time_unless_status_changes():
    conds = set_condition([], "Ready", False, "Training", now="t1")
    conds = set_condition(conds, "Ready", False, "Evaluating", now="t2")
    assert conds[0]["lastTransitionTime"] == "t1" and conds[0]["reason"] == "Evaluating"
    conds = set_condition(conds, "Ready", True, "Succeeded", now="t3")
    assert conds[0]["lastTransitionTime"] == "t3" and conds[0]["status"] == "True"


def test_kstatus_never_contradicts_itself():
    c = ConditionSet(now="t")
    kstatus(c, ready=False, reason="Training", reconciling=True)
    assert [x["type"] for x in c.to_list()] == ["Ready", "Reconciling"]
    kstatus(c, ready=False, reason="Failed", stalled=True)
    assert [x["type"] for x in c.to_list()] == ["Ready", "Stalled"]
    with pytest.raises(ValueError):
        kstatus(c, ready=False, reason="x", reconciling=True, stalled=True)


def test_status_diff_is_a_merge_patch():
    assert status_diff({"a": 1, "b": 2}, {"a": 1, "b": 3}) == {"b": 3}
    assert status_diff({"a": 1, "gone": 2}, {"a": 1}) == {"gone": None}
    assert status_diff({"a": 1}, {"a": 1}) == {}


@pytest.mark.parametrize(
    ("the_job", "progress", "pods", "phase", "words"),
    [
        (None, None, (), "Pending", "creating"),
        ({"spec": {"suspend": True}, "status": {}}, None, (), "Pending", "suspended"),
        (job(active=1, startTime=NOW), None, (), "Validating", "dataset"),
        (job(active=1, startTime=NOW), RunProgress(phase="Training", step=10, total_steps=40, eval_loss=1.5),
         (), "Training", "step 10/40"),
        (job(active=1, startTime=NOW), RunProgress(phase="Publishing"), (), "Evaluating", "publishing"),
        (job(failed=1, conditions=[cond("Failed", "DeadlineExceeded")]), None, (), "Failed", "activeDeadlineSeconds"),
        (job(failed=1, conditions=[cond("Failed", "PodFailurePolicy")]),
         RunProgress(phase="Failed", reason="LicenseRefused", message="license llama3 is not allowed\nmore"),
         (), "Failed", "license llama3 is not allowed"),
        (job(failed=3, conditions=[cond("Failed", "BackoffLimitExceeded")]), None,
         ({"status": {"containerStatuses": [{"lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]}},),
         "Failed", "out of memory"),
        (job(active=1), None,
         ({"status": {"containerStatuses": [{"image": "reg/x:1", "state": {"waiting": {
             "reason": "ImagePullBackOff", "message": "pull access denied"}}}]}},),
         "Pending", "cannot pull image reg/x:1"),
    ],
)
def test_phase_table(the_job, progress, pods, phase, words):
    status = compute_status(ftj(), observed(job=the_job, pods=pods, progress=progress))
    assert status["phase"] == phase
    assert words in status["message"]
    assert "\n" not in status["message"]
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds["Ready"] == "False"
    assert ("Stalled" in conds) == (phase == "Failed" or "pull" in words)


def test_success_records_the_adapter_and_cost():
    adapter = {"version": "v2", "uri": "s3://a/bot/v2/", "sha256": "abc", "verdict": "accepted"}
    status = compute_status(
        ftj({"versions": [{"version": "v1", "uri": "s3://a/bot/v1/", "verdict": "accepted"}],
             "finishedRuns": [{"runId": "u-1", "phase": "Succeeded", "gpuSeconds": 1800}]}),
        observed(job=job(succeeded=1, startTime=NOW, completionTime=NOW, conditions=[cond("Complete")]),
                 progress=RunProgress(phase="Succeeded", gpu_seconds=1800, metrics={"evalLoss": 0.7}),
                 adapter=AdapterStatus.model_validate(adapter)))
    assert status["phase"] == "Succeeded" and status["adapter"] == adapter
    assert [v["version"] for v in status["versions"]] == ["v1", "v2"]
    assert status["gpuSeconds"] == 3600 and status["estimatedCost"] == "3.60"
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    assert conds == {"Ready": "True", "QualityGatePassed": "True"}
    assert status["metrics"] == {"evalLoss": 0.7}
    # The finished run is recorded beside the earlier one, so the next run's total starts from both.
    assert status["finishedRuns"] == [{"runId": "u-1", "phase": "Succeeded", "gpuSeconds": 1800},
                                      {"runId": "u-2", "phase": "Succeeded", "gpuSeconds": 1800}]
    assert status["currentRun"] == RUN.to_wire() and status["runId"] == "u-2"


def test_rejected_adapter_fails_the_quality_gate():
    adapter = {"version": "v2", "uri": "s3://a/bot/v2/", "verdict": "rejected", "reason": "perplexity 31 > 20"}
    status = compute_status(ftj(), observed(
        job=job(failed=1, conditions=[cond("Failed", "PodFailurePolicy")]),
        progress=RunProgress(phase="Failed", reason="QualityGateFailed", message="perplexity 31 > 20"),
        adapter=AdapterStatus.model_validate(adapter)))
    assert status["phase"] == "Failed" and status["message"] == "perplexity 31 > 20"
    gate = next(c for c in status["conditions"] if c["type"] == "QualityGatePassed")
    assert gate["status"] == "False"


def test_gpu_seconds_fall_back_to_wall_time_and_cost_needs_a_price():
    status = compute_status(ftj(gpus=2), observed(job=job(active=1, startTime="2026-11-25T09:00:00Z")))
    assert status["gpuSeconds"] == 7200
    assert estimated_cost(3600, None) is None


def test_schedule_and_config():
    last = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    assert not due("0 3 1 * *", last, datetime(2026, 11, 20, tzinfo=UTC))
    assert due("0 3 1 * *", last, datetime(2026, 12, 1, 3, 1, tzinfo=UTC))
    assert run_suffix(datetime(2026, 12, 1, 3, 0, tzinfo=UTC)) == "s20261201030000"
    cfg = OperatorConfig.from_env({"LORAPLANE_TRAINER_IMAGE": "x:1", "LORAPLANE_METRICS_PORT": "9000",
                                   "LORAPLANE_IMAGE_PULL_SECRETS": "a, b", "LORAPLANE_PROGRESS_INTERVAL_SECONDS": "2.5"})
    assert (cfg.trainer_image, cfg.metrics_port, cfg.image_pull_secrets, cfg.progress_interval_seconds) == (
        "x:1", 9000, ("a", "b"), 2.5)


def test_trainer_output_is_reduced_to_the_status_schema():
    progress = RunProgress(phase="Training", dataset={"examples": 5, "samples": ["x"], "errors": -1},
                           metrics={"evalLoss": 1.0, "samples": [{"prompt": "p"}]})
    status = compute_status(ftj(), observed(job=job(active=1, startTime=NOW), progress=progress))
    assert "dataset" not in status  # errors=-1 is invalid: nothing the API server would refuse is written
    assert status["metrics"] == {"evalLoss": 1.0}


def test_the_current_run_survives_suspend_and_schedule_edits_and_a_new_spec_starts_another():
    from loraplane.finetune.current_run import current_run

    first = current_run(ftj())
    assert (first.generation, first.run_id, first.job_name, first.suffix) == (2, "u-2", "bot-train-2", None)
    recorded = {"currentRun": first.to_wire()}
    later = ftj(recorded).model_copy(update={"metadata": ftj().metadata.model_copy(update={"generation": 3})})
    later.spec.suspend = True
    later.spec.schedule = "@monthly"
    assert current_run(later) == first  # generation 3 only paused and scheduled: the same run
    rerun = current_run(later, suffix="s20261201030000")
    assert (rerun.generation, rerun.run_id) == (2, "u-2-s20261201030000")
    later.spec.training.epochs = 7
    assert current_run(later).run_id == "u-3"  # a spec that trains differently is a new run


def test_a_run_read_again_after_its_job_is_gone_keeps_its_charge():
    old = {"finishedRuns": [{"runId": "u-2", "phase": "Succeeded", "gpuSeconds": 1800}]}
    status = compute_status(ftj(old), observed(job=job(succeeded=1, conditions=[cond("Complete")])))
    assert status["finishedRuns"] == old["finishedRuns"] and status["gpuSeconds"] == 1800
