"""Deletes check the owner's uid, not only labels: a same-labelled object of another owner survives."""

from __future__ import annotations

from pathlib import Path

import kopf
import yaml
from loraplane import kube
from loraplane.handlers.finetunejob import _stop_superseded

NS = "owners"
ROOT = Path(__file__).resolve().parents[2]


def job(name: str, owner: dict) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": NS, "labels": {
            "loraplane.io/finetunejob": "bot", "app.kubernetes.io/managed-by": "loraplane-operator",
            "app.kubernetes.io/component": "trainer"},
            "ownerReferences": [{"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob", "controller": True,
                                 "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "t", "image": "busybox"}]}}},
    }


async def test_stop_superseded_leaves_another_owners_running_job_alone(cluster):
    from loraplane.builders.training_job import COMPONENT

    cluster.ensure_namespace(NS)
    kube.configure(kopf.ConnectionInfo(server=cluster.url))
    # Two FineTuneJobs (real objects, so garbage collection keeps their Jobs); the other one's Job
    # carries labels equal to ours, as 63-character label values of two long names once were.
    spec = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())["spec"]
    spec.pop("schedule", None)
    mine, other = (cluster.create({"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob",
                                   "metadata": {"name": n, "namespace": NS}, "spec": spec}) for n in ("bot", "bot-2"))
    old, foreign = job("bot-train-1", mine), job("bot-train-9", other)
    for j in (old, foreign):
        j["metadata"]["labels"]["app.kubernetes.io/component"] = COMPONENT
        cluster.create(j)
    assert await _stop_superseded(mine, "bot-train-2") == ["bot-train-1"]
    assert cluster.get_or_none("batch/v1", "Job", NS, "bot-train-1") is None
    assert cluster.get_or_none("batch/v1", "Job", NS, "bot-train-9") is not None
