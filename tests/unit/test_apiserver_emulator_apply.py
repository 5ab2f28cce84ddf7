"""Server-side apply in the API-server emulator: ownership per manager, conflicts, list-map merges.

The rules are Kubernetes' own (https://kubernetes.io/docs/reference/using-api/server-side-apply/);
the operator relies on them to leave other controllers' fields alone.
"""

from __future__ import annotations

import kmock
import kopf
import pytest
from loraplane.kube import Conflict, KubeClient

from tests.support.apiserver_emulator import ApiError, ApiServerEmulator

NS = "apps"


@pytest.fixture
def api() -> ApiServerEmulator:
    emulator = ApiServerEmulator()
    emulator.create(emulator.type_for("v1", "Namespace"), None, {"metadata": {"name": NS}})
    return emulator


def deployment(*containers: dict, replicas: int | None = 1, labels: dict | None = None) -> dict:
    spec = {"selector": {"matchLabels": {"app": "bot"}},
            "template": {"metadata": {"labels": {"app": "bot"}}, "spec": {"containers": list(containers)}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "bot", "namespace": NS, "labels": labels or {"app": "bot"}}, "spec": spec}


def container(name: str = "vllm", image: str = "vllm:1", env: dict | None = None, ports: list[int] = ()) -> dict:
    out: dict = {"name": name, "image": image}
    if env:
        out["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if ports:
        out["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
    return out


def apply(api: ApiServerEmulator, obj: dict, manager: str = "loraplane-operator", force: bool = False) -> dict:
    return api.apply(api.type_for(obj["apiVersion"], obj["kind"]), NS, obj["metadata"]["name"], obj, manager,
                     force=force)


def containers(obj: dict) -> dict[str, dict]:
    return {c["name"]: c for c in obj["spec"]["template"]["spec"]["containers"]}


def managers(obj: dict) -> dict[tuple[str, str], dict]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


def test_apply_creates_records_the_manager_and_a_repeat_is_a_no_op(api):
    first = apply(api, deployment(container()))
    fields = managers(first)[("loraplane-operator", "Apply")]
    assert fields["f:spec"]["f:replicas"] == {}
    assert '.' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"vllm"}']
    again = apply(api, deployment(container()))
    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_fields_the_manager_stops_setting_go_and_other_managers_fields_stay(api):
    apply(api, deployment(container(env={"A": "1", "B": "2"}), labels={"app": "bot", "tier": "gpu"}))
    # Another client labels the object (a merge patch: operation Update, its own manager).
    api.patch(api.type_for("apps/v1", "Deployment"), NS, "bot", {"metadata": {"labels": {"team": "a"}}},
              "application/merge-patch+json", manager="kubectl")
    after = apply(api, deployment(container(env={"A": "1"}), labels={"app": "bot"}))
    assert after["metadata"]["labels"] == {"app": "bot", "team": "a"}  # tier gone, kubectl's label kept
    assert containers(after)["vllm"]["env"] == [{"name": "A", "value": "1"}]
    assert "f:team" in managers(after)[("kubectl", "Update")]["f:metadata"]["f:labels"]


def test_a_field_another_manager_owns_conflicts_unless_forced(api):
    apply(api, deployment(container(), replicas=1))
    # An autoscaler set replicas; applying another value is a conflict naming it and the field.
    apply(api, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bot", "namespace": NS},
                "spec": {"replicas": 4}}, manager="hpa-controller", force=True)
    with pytest.raises(ApiError) as err:
        apply(api, deployment(container(), replicas=2))
    assert err.value.code == 409 and 'conflict with "hpa-controller": .spec.replicas' in err.value.message
    # The same value is no conflict (shared ownership), and force takes the field over.
    apply(api, deployment(container(), replicas=4))
    forced = apply(api, deployment(container(), replicas=2), force=True)
    assert forced["spec"]["replicas"] == 2
    assert ("hpa-controller", "Apply") not in managers(forced)  # it owned nothing else
    # Leaving replicas out hands the field back: nobody's value is removed while another manager holds it.
    apply(api, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bot", "namespace": NS},
                "spec": {"replicas": 2}}, manager="hpa-controller")
    kept = apply(api, deployment(container(), replicas=None))
    assert kept["spec"]["replicas"] == 2


def test_containers_env_and_ports_merge_by_their_keys(api):
    apply(api, deployment(container(env={"A": "1"}, ports=[8000])))
    # A mesh injects a sidecar, an env var and a port into the operator's container.
    apply(api, deployment(container(name="mesh", image="envoy:1"),
                          {"name": "vllm", "env": [{"name": "MESH", "value": "on"}],
                           "ports": [{"containerPort": 15090, "protocol": "TCP"}]}, replicas=None),
          manager="mesh-injector")
    after = apply(api, deployment(container(image="vllm:2", env={"A": "2"}, ports=[8000])))
    by_name = containers(after)
    assert set(by_name) == {"vllm", "mesh"}
    assert by_name["vllm"]["image"] == "vllm:2"
    assert {e["name"]: e["value"] for e in by_name["vllm"]["env"]} == {"A": "2", "MESH": "on"}
    assert sorted(p["containerPort"] for p in by_name["vllm"]["ports"]) == [8000, 15090]
    # Dropping its container removes the operator's fields of it; the mesh's fields in it stay.
    gone = containers(apply(api, deployment(container(name="router", image="router:1"))))
    assert set(gone) == {"router", "mesh", "vllm"}
    assert gone["vllm"] == {"name": "vllm", "env": [{"name": "MESH", "value": "on"}],
                            "ports": [{"containerPort": 15090, "protocol": "TCP"}]}


def test_an_atomic_list_is_replaced_whole(api):
    cm = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bot", "namespace": NS},
          "spec": {"selector": {"app": "bot"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8000}],
                   "externalIPs": ["10.0.0.1", "10.0.0.2"]}}
    apply(api, cm)
    cm["spec"]["externalIPs"] = ["10.0.0.3"]
    assert apply(api, cm)["spec"]["externalIPs"] == ["10.0.0.3"]


def test_updates_take_over_the_fields_they_change(api):
    apply(api, deployment(container(), replicas=1))
    api.patch(api.type_for("apps/v1", "Deployment"), NS, "bot", {"spec": {"replicas": 3}},
              "application/merge-patch+json", manager="kubectl")
    owners = managers(api.get(api.type_for("apps/v1", "Deployment"), NS, "bot"))
    assert "f:replicas" in owners[("kubectl", "Update")]["f:spec"]
    assert "f:replicas" not in owners[("loraplane-operator", "Apply")]["f:spec"]


async def test_the_kube_client_applies_with_its_field_manager_and_force(api):
    async with kmock.Server(api) as server:
        client = KubeClient(kopf.ConnectionInfo(server=str(server.url).rstrip("/")))
        try:
            await client.apply({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "table", "namespace": NS}, "data": {"a": "1"}})
            await client.apply({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "table", "namespace": NS}, "data": {"a": "2"}},
                               field_manager="someone-else", force=False)
        except Conflict as err:
            assert "loraplane-operator" in err.message
        else:
            raise AssertionError("a conflicting apply without force must fail")
        finally:
            live = await client.get("v1", "ConfigMap", NS, "table")
            await client.close()
    assert live["data"] == {"a": "1"}
    assert [e["manager"] for e in live["metadata"]["managedFields"]] == ["loraplane-operator"]
