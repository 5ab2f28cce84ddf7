"""The API-server emulator behaves as the operator needs a Kubernetes API server to behave."""

from __future__ import annotations

import copy
import json
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NS = "harness"


def example_ftj(name: str = "support-bot") -> dict:
    obj = yaml.safe_load((ROOT / "examples" / "finetunejob.yaml").read_text())
    obj["metadata"] = {"name": name, "namespace": NS}
    return obj


@pytest.fixture(scope="module")
def ns(cluster):
    cluster.ensure_namespace(NS)
    return NS


def test_create_sets_uid_generation_and_defaults(cluster, ns):
    obj = cluster.create(example_ftj("meta"))
    meta = obj["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert meta["generation"] == 1
    # A structural-schema default filled in by "the API server".
    assert obj["spec"]["dataset"]["format"] == "auto"
    with pytest.raises(cluster.ApiError) as err:
        cluster.create(example_ftj("meta"))
    assert err.value.code == 409 and err.value.reason == "AlreadyExists"


def test_generation_moves_on_spec_changes_only(cluster, ns):
    cluster.create(example_ftj("gen"))
    obj = cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "gen", {"metadata": {"labels": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 1
    obj = cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "gen", {"status": {"phase": "Training"}},
                        subresource="status")
    assert obj["metadata"]["generation"] == 1 and obj["status"]["phase"] == "Training"
    # status through the main endpoint is ignored (status subresource)
    obj = cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "gen", {"status": {"phase": "Failed"}})
    assert obj["status"]["phase"] == "Training"
    obj = cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "gen", {"spec": {"lora": {"r": 16}}})
    assert obj["metadata"]["generation"] == 2


def test_stale_resource_version_conflicts(cluster, ns):
    obj = cluster.create(example_ftj("rv"))
    stale = obj["metadata"]["resourceVersion"]
    cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "rv", {"spec": {"lora": {"r": 4}}})
    with pytest.raises(cluster.ApiError) as err:
        cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "rv",
                      {"metadata": {"resourceVersion": stale}, "spec": {"lora": {"r": 2}}})
    assert err.value.code == 409
    with pytest.raises(cluster.ApiError) as err:
        cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "rv",
                      [{"op": "test", "path": "/metadata/resourceVersion", "value": stale},
                       {"op": "replace", "path": "/spec/lora/r", "value": 2}], json_patch=True)
    assert err.value.code == 422
    fresh = cluster.get("loraplane.io/v1alpha1", "FineTuneJob", ns, "rv")
    obj = cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "rv",
                        [{"op": "replace", "path": "/spec/lora/r", "value": 2}], json_patch=True)
    assert obj["spec"]["lora"]["r"] == 2 and obj["metadata"]["resourceVersion"] != fresh["metadata"]["resourceVersion"]


def test_bad_spec_is_refused_with_the_rule_message(cluster, ns):
    bad = example_ftj("bad")
    bad["spec"]["dataset"]["inline"] = [{"prompt": "a", "completion": "b"}]  # uri and inline: two sources
    with pytest.raises(cluster.ApiError) as err:
        cluster.create(bad)
    assert err.value.code == 422
    assert "dataset needs exactly one source" in err.value.message
    bad = example_ftj("bad")
    bad["spec"]["lora"]["r"] = 0
    with pytest.raises(cluster.ApiError) as err:
        cluster.create(bad)
    assert err.value.code == 422 and "spec.lora.r" in err.value.message


def test_builtin_children_are_validated_against_kubernetes_schemas(cluster, ns):
    good = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns}, "data": {"a": "b"}}
    cluster.create(good)
    bad = copy.deepcopy(good)
    bad["metadata"]["name"] = "cm2"
    bad["data"] = {"a": 1}
    with pytest.raises(cluster.ApiError) as err:
        cluster.create(bad)
    assert err.value.code == 422 and "1.29.0" in err.value.message


def test_finalizers_and_cascade_deletion(cluster, ns):
    owner = cluster.create(example_ftj("owner"))
    ref = {"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob", "name": "owner",
           "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "child", "namespace": ns, "ownerReferences": [ref]}})
    cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "owner", {"metadata": {"finalizers": ["x/y"]}})
    cluster.delete("loraplane.io/v1alpha1", "FineTuneJob", ns, "owner")
    obj = cluster.get("loraplane.io/v1alpha1", "FineTuneJob", ns, "owner")
    assert obj["metadata"]["deletionTimestamp"]
    assert cluster.get_or_none("v1", "ConfigMap", ns, "child") is not None
    cluster.patch("loraplane.io/v1alpha1", "FineTuneJob", ns, "owner", {"metadata": {"finalizers": None}})
    assert cluster.get_or_none("loraplane.io/v1alpha1", "FineTuneJob", ns, "owner") is None
    assert cluster.get_or_none("v1", "ConfigMap", ns, "child") is None


def test_namespaces_list_and_label_selectors_over_http(cluster, ns):
    with urllib.request.urlopen(f"{cluster.url}/api/v1/namespaces") as resp:
        names = [n["metadata"]["name"] for n in json.load(resp)["items"]]
    assert ns in names
    cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "lab", "namespace": ns, "labels": {"app": "x", "tier": "a"}}})
    url = f"{cluster.url}/api/v1/namespaces/{ns}/configmaps?labelSelector=app%3Dx,tier%20in%20(a,b)"
    with urllib.request.urlopen(url) as resp:
        assert [c["metadata"]["name"] for c in json.load(resp)["items"]] == ["lab"]
