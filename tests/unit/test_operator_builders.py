"""Pure builders: names, labels, ownerReferences, the training Job and its ConfigMap."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from loraplane.api import FineTuneJob
from loraplane.api.finetunejob import RunStatus
from loraplane.builders.common import (
    child_name,
    labels,
    owner_of,
    owner_reference,
    owner_selector,
    selector_labels,
)
from loraplane.builders.training_job import job_config_map, job_name, pod_failure_policy, training_job
from loraplane.config import OperatorConfig

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ("1.29.0", "1.37.0")


def ftj(**spec_changes) -> FineTuneJob:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["spec"].update(spec_changes)
    obj["metadata"].update(uid="0b5e-uid", generation=3)
    return FineTuneJob.model_validate(obj)


def run(run_id: str = "0b5e-uid-3", generation: int = 3) -> RunStatus:
    return RunStatus(generation=generation, spec_hash="h", run_id=run_id, job_name="support-bot-train-3")


def test_child_names_are_deterministic_and_short():
    assert job_name("support-bot", 3) == "support-bot-train-3"
    assert job_name("support-bot", 3, "s20261201030000") == "support-bot-train-3-s20261201030000"
    long = child_name("x" * 80, "train", 12)
    assert len(long) <= 63 and long.endswith("-train-12") and long == child_name("x" * 80, "train", 12)
    assert child_name("x" * 80, "train", 12) != child_name("x" * 79 + "y", "train", 12)


def test_labels_owner_reference_and_selector():
    obj = owner_of(ftj())
    lab = labels(obj, "trainer")
    assert lab["app.kubernetes.io/managed-by"] == "loraplane-operator"
    assert lab["loraplane.io/finetunejob"] == "support-bot"
    assert set(selector_labels(obj, "trainer").items()) <= set(lab.items())
    ref = owner_reference(obj)
    assert ref == {"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob", "name": "support-bot",
                   "uid": "0b5e-uid", "controller": True, "blockOwnerDeletion": True}
    assert owner_selector(obj, "trainer") == (
        "loraplane.io/finetunejob=support-bot,app.kubernetes.io/managed-by=loraplane-operator,"
        "app.kubernetes.io/component=trainer")
    obj["metadata"].pop("uid")
    with pytest.raises(ValueError, match="no metadata.uid"):
        owner_reference(obj)


@pytest.mark.parametrize(
    ("resources", "expect"),
    [
        ({"gpus": 2, "queue": "team-a"}, {"gpus": "2", "queue": "team-a", "suspend": True}),
        ({"gpus": 0}, {"gpus": None, "queue": None, "suspend": None}),
        ({"gpus": 1, "gpuType": "NVIDIA-L4", "priorityClassName": "training", "activeDeadlineSeconds": 7200,
          "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
          "affinity": {"nodeAffinity": {}}, "cpu": "8", "memory": "64Gi", "backoffLimit": 5},
         {"gpus": "1", "queue": None, "suspend": None}),
    ],
)
def test_training_job_table(resources, expect):
    obj = ftj(resources=resources)
    job = training_job(obj, run(), OperatorConfig(trainer_image="reg/trainer:1", image_pull_secrets=("regcred",)))
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "reg/trainer:1"
    assert container["command"][-2:] == ["--run-id", "0b5e-uid-3"]
    gpus = int(expect["gpus"] or 0)
    launcher = ["--nproc-per-node", str(gpus)] if gpus > 1 else []
    assert container["command"] == ["python", "-m", "loraplane_trainer", "run", "--job",
                                    container["command"][5], *launcher, "--run-id", "0b5e-uid-3"]
    assert (container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")) == expect["gpus"]
    assert job["metadata"]["labels"].get("kueue.x-k8s.io/queue-name") == expect["queue"]
    assert spec.get("suspend") == expect["suspend"]
    assert spec["podFailurePolicy"] == pod_failure_policy()
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/etc/loraplane/job", "/cache", "/dev/shm", "/tmp"} <= mounts
    if resources.get("gpuType"):
        assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
        assert pod["priorityClassName"] == "training" and spec["activeDeadlineSeconds"] == 7200
        assert spec["backoffLimit"] == 5 and container["resources"]["requests"]["memory"] == "64Gi"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_secrets_and_dataset_config_map_are_wired_in():
    obj = ftj(
        baseModel={"name": "org/gated", "tokenSecretRef": {"name": "hf", "key": "token"}},
        dataset={"configMapRef": {"name": "faq", "key": "data.jsonl"},
                 "checks": {"moderation": {"endpoint": "http://mod/v1", "apiKeySecretRef": {"name": "mod", "key": "k"}}}},
        augmentation={"synthetic": {"endpoint": "http://llm/v1", "model": "big",
                                    "apiKeySecretRef": {"name": "llm", "key": "key"}}},
    )
    job = training_job(obj, run("r"), OperatorConfig())
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
    assert env["LORAPLANE_SYNTHETIC_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm", "key": "key"}
    assert env["LORAPLANE_MODERATION_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "mod", "key": "k"}
    assert env["LORAPLANE_CONFIGMAP_DIR"]["value"] == "/etc/loraplane/configmaps"
    assert env["LORAPLANE_CACHE"]["value"] == "/cache"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert {"name": "dataset", "mountPath": "/etc/loraplane/configmaps/faq", "readOnly": True} in container["volumeMounts"]


def test_config_map_holds_the_whole_object():
    obj = ftj()
    cm = job_config_map(obj, run("r"))
    kubernetes_validate.validate(cm, VERSIONS[-1], strict=True)
    doc = json.loads(cm["data"]["finetunejob.json"])
    assert doc["metadata"] == {"name": "support-bot", "namespace": "chatbots", "uid": "0b5e-uid", "generation": 3}
    assert doc["spec"] == obj.spec.to_wire() and doc["kind"] == "FineTuneJob"
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "0b5e-uid"
