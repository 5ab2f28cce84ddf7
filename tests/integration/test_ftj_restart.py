"""A restarted operator finds its Job and never duplicates it; API conflicts are retried."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
NS = "restarts"
API = "loraplane.io/v1alpha1"


def ftj(name: str) -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": NS}
    obj["spec"].pop("schedule")
    obj["spec"]["output"] = {"uri": "memory://adapters/"}
    obj["spec"]["resources"] = {"gpus": 1}
    return obj


def jobs_of(cluster, name: str) -> list[dict]:
    return cluster.list("batch/v1", "Job", NS, f"loraplane.io/finetunejob={name}")


def test_operator_killed_after_creating_the_job_does_not_duplicate_it(cluster):
    cluster.ensure_namespace(NS)
    # The first operator creates the Job, but every write to the FineTuneJob fails: it dies
    # before recording anything (no status, no handler progress).
    cluster.call(cluster.emulator.fail_next, "PATCH", "finetunejobs", subresource="status", times=10_000)
    cluster.call(cluster.emulator.fail_next, "PATCH", "finetunejobs", times=10_000)
    with cluster.operator(NS):
        cluster.create(ftj("crashy"))
        cluster.wait_for(lambda: jobs_of(cluster, "crashy"), 30, "the first operator to create the Job")
    assert not (cluster.get(API, "FineTuneJob", NS, "crashy").get("status") or {}).get("jobName")
    cluster.call(cluster.emulator._faults.clear)

    with cluster.operator(NS):
        status = cluster.wait_for(
            lambda: (cluster.get(API, "FineTuneJob", NS, "crashy").get("status") or {}).get("jobName") and
            cluster.get(API, "FineTuneJob", NS, "crashy")["status"], 30, "the restarted operator to adopt the Job")
        assert status["jobName"] == "crashy-train-1"
        assert [j["metadata"]["name"] for j in jobs_of(cluster, "crashy")] == ["crashy-train-1"]

        cluster.set_job_status(NS, "crashy-train-1", active=1)
        cluster.wait_for(lambda: cluster.get(API, "FineTuneJob", NS, "crashy")["status"]["phase"] == "Validating",
                         30, "the status of the adopted Job")

        # Conflicts and server errors on the operator's own calls are retried until they succeed.
        cluster.call(cluster.emulator.fail_next, "POST", "jobs", code=409, reason="Conflict", times=2)
        cluster.call(cluster.emulator.fail_next, "GET", "jobs", code=500, name="racy-train-1", times=2)
        cluster.create(ftj("racy"))
        cluster.wait_for(lambda: (cluster.get(API, "FineTuneJob", NS, "racy").get("status") or {}).get("phase")
                         == "Pending", 30, "the status after conflicts")
        assert [j["metadata"]["name"] for j in jobs_of(cluster, "racy")] == ["racy-train-1"]
    # Restarted once more with nothing to do: still one Job.
    with cluster.operator(NS):
        cluster.wait_for(lambda: cluster.get(API, "FineTuneJob", NS, "crashy")["status"]["phase"] == "Validating", 10)
        assert len(jobs_of(cluster, "crashy")) == 1
