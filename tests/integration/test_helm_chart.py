"""The Helm chart, checked by real Helm (helm-sdkpy in .venv-helm) and by its values schema."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "loraplane"
HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
ERROR = 3  # Helm's lint severity for errors (1 info, 2 warning)


def helm_lint(chart: Path) -> dict:
    if not HELM_PYTHON.exists():
        pytest.fail("the Helm tool environment is missing: run `make install-helm`")
    out = subprocess.run([str(HELM_PYTHON), str(ROOT / "tests" / "support" / "helm_tool.py"), "lint", str(chart)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def chart_with_values(tmp_path: Path, values: dict) -> Path:
    copy = tmp_path / "loraplane"
    shutil.copytree(CHART, copy)
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    (copy / "values.yaml").write_text(yaml.safe_dump(_merge(base, values)))
    return copy


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def errors(result: dict) -> list:
    return [m for m in result.get("Messages") or [] if m.get("Severity", 0) >= ERROR] + (
        [result["error"]] if "error" in result else [])


def test_chart_lints_clean_with_default_values():
    result = helm_lint(CHART)
    assert result["TotalChartsLinted"] == 1
    assert errors(result) == []


def test_chart_lints_clean_with_namespaced_mode_and_monitoring(tmp_path):
    chart = chart_with_values(tmp_path, {
        "watchNamespaces": ["team-a", "team-b"], "replicaCount": 2,
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "operator": {"logLevel": "debug"},
    })
    assert errors(helm_lint(chart)) == []


def test_chart_lints_clean_with_the_api_server(tmp_path):
    chart = chart_with_values(tmp_path, {"api": {"enabled": True, "filesUri": "s3://ml-data/files/",
                                                 "template": {"output": {"uri": "s3://adapters/"}}}})
    assert errors(helm_lint(chart)) == []


def test_bad_values_are_refused_by_the_schema(tmp_path):
    chart = chart_with_values(tmp_path, {"replicaCount": "two", "watchNamespaces": ["Not_A_Namespace"]})
    # helm-sdkpy returns Helm's error values without their text: the error is on values.yaml.
    assert [m["Path"] for m in errors(helm_lint(chart)) if isinstance(m, dict)][:1] == ["values.yaml"]
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**yaml.safe_load((CHART / "values.yaml").read_text()), "replicaCount": "two"}, schema)


def helm_install(cluster, tmp_path: Path, values: dict, release: str, namespace: str) -> dict:
    """Install the chart with real Helm into the API-server emulator: Helm renders it (helm-sdkpy has no
    template command), checks values.schema.json, and the emulator admits every object only if it is
    valid for Kubernetes 1.29 and 1.37 (kubernetes-validate)."""
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": cluster.url}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "test"}}],
        "users": [{"name": "test", "user": {"token": "test"}}],
    }))
    # Release records in memory: Helm writes its release Secret as protobuf, which the emulator does not read.
    env = {**os.environ, "HELM_DRIVER": "memory"}
    out = subprocess.run(
        [str(HELM_PYTHON), str(ROOT / "tests" / "support" / "helm_tool.py"), "install", str(CHART), json.dumps(values),
         "--kubeconfig", str(kubeconfig), "--namespace", namespace, "--release", release],
        capture_output=True, text=True, timeout=180, check=True, env=env)
    return json.loads(out.stdout)


def installed(cluster, release: str) -> dict[tuple[str, str], dict]:
    """Every object of a release in the emulator, by (kind, name)."""
    out = {}
    for obj in cluster.call(lambda: list(cluster.emulator.objects.values())):
        labels = obj["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/instance") == release and labels.get("app.kubernetes.io/managed-by") == "Helm":
            out[(obj["kind"], obj["metadata"]["name"])] = obj
    return out


def test_chart_installs_with_default_values(cluster, tmp_path):
    result = helm_install(cluster, tmp_path, {}, "lp", "loraplane-system")
    assert result.get("info", {}).get("status") == "deployed", result.get("error")
    objs = installed(cluster, "lp")
    kinds = sorted(kind for kind, _ in objs)
    assert kinds == ["ClusterKopfPeering", "ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy",
                     "Service", "ServiceAccount"]
    deployment = objs[("Deployment", "lp-loraplane")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LORAPLANE_ALLOWED_IMAGE_PREFIXES"] == "ghcr.io/loraplane/,docker.io/vllm/vllm-openai:,vllm/vllm-openai:"
    assert "--peering=loraplane" in container["args"] and not any(a.startswith("--namespace") for a in container["args"])
    rules = objs[("ClusterRole", "lp-loraplane")]["rules"]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)
    assert {"finetunejobs/status", "chatbotdeployments/status"} <= {res for r in rules for res in r["resources"]}
    # Secrets: created (the chatbots' keys) everywhere, read nowhere unless granted per namespace.
    assert {v for r in rules if "secrets" in r["resources"] for v in r["verbs"]} == {"create"}
    # Multi-node training: JobSets, no more than the training Jobs get (no update, no status).
    jobsets = [r for r in rules if "jobset.x-k8s.io" in r["apiGroups"]]
    assert [r["resources"] for r in jobsets] == [["jobsets"]]
    assert set(jobsets[0]["verbs"]) == {"get", "list", "watch", "create", "patch", "delete"}
    # Helm installed the CRDs from crds/ (the emulator reports them Established).
    crds = cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    assert {"finetunejobs.loraplane.io", "kopfpeerings.kopf.dev"} <= {c["metadata"]["name"] for c in crds}


def test_chart_installs_namespaced_with_monitoring(cluster, tmp_path):
    cluster.ensure_namespace("team-a")
    cluster.ensure_namespace("team-b")
    values = {"watchNamespaces": ["team-a", "team-b"], "replicaCount": 2,
              "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
              "operator": {"logLevel": "debug"}}
    result = helm_install(cluster, tmp_path, values, "lpns", "lp-ns")
    assert result.get("info", {}).get("status") == "deployed", result.get("error")
    objs = installed(cluster, "lpns")
    assert {name for kind, name in objs if kind == "Role"} == {"lpns-loraplane"}
    roles = [o for (kind, _), o in objs.items() if kind == "Role"]
    assert len(cluster.list("rbac.authorization.k8s.io/v1", "Role", "team-b")) == 1 and roles
    assert ("ClusterRole", "lpns-loraplane") not in objs  # namespaced mode: no cluster-wide write access
    assert ("ServiceMonitor", "lpns-loraplane") in objs and ("PrometheusRule", "lpns-loraplane-operator") in objs
    # The operator's `namespace` label names the object's namespace: Prometheus must keep it.
    assert objs[("ServiceMonitor", "lpns-loraplane")]["spec"]["endpoints"][0]["honorLabels"] is True
    alerts = {r["alert"] for g in objs[("PrometheusRule", "lpns-loraplane-operator")]["spec"]["groups"] for r in g["rules"]}
    assert {"LoRAPlaneFineTuneJobFailed", "LoRAPlaneOperatorReconcileErrors"} <= alerts
    args = objs[("Deployment", "lpns-loraplane")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--verbose" in args
    assert len(cluster.list("kopf.dev/v1", "KopfPeering", "team-a")) == 1


def test_secret_reads_are_granted_only_in_the_listed_namespaces(cluster, tmp_path):
    cluster.ensure_namespace("team-c")
    values = {"rbac": {"secrets": {"readNamespaces": ["team-c"]}}, "peering": {"name": "lpsec"}}
    result = helm_install(cluster, tmp_path, values, "lpsec", "lp-sec")
    assert result.get("info", {}).get("status") == "deployed", result.get("error")
    objs = installed(cluster, "lpsec")
    role = objs[("Role", "lpsec-loraplane-secrets")]
    assert role["metadata"]["namespace"] == "team-c"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
    assert objs[("RoleBinding", "lpsec-loraplane-secrets")]["metadata"]["namespace"] == "team-c"


def test_helm_refuses_bad_values_at_install(cluster, tmp_path):
    result = helm_install(cluster, tmp_path, {"replicaCount": "two"}, "lpbad", "lp-bad")
    assert "error" in result and "replicaCount" in result["error"], result
    assert installed(cluster, "lpbad") == {}


API_VALUES = {"api": {"enabled": True, "filesUri": "s3://ml-data/finetuning-files/", "storageCredentialsSecret": "s3",
                      "template": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
                                   "resources": {"gpus": 1}, "output": {"uri": "s3://adapters/"}}}}


def _api_may(objs: dict, release: str, namespace: str, verb: str, group: str, resource: str, name: str = "") -> bool:
    from tests.support.rbac import ResourceAttributes, allowed

    user = f"system:serviceaccount:{namespace}:{release}-loraplane-api"
    return allowed(objs.values(), user, [], ResourceAttributes("team-a", verb, group, resource, "", name))[0]


def test_chart_installs_the_api_server_when_enabled(cluster, tmp_path):
    result = helm_install(cluster, tmp_path, {**API_VALUES, "peering": {"name": "lpapi"}}, "lpapi", "lp-api")
    assert result.get("info", {}).get("status") == "deployed", result.get("error")
    objs = installed(cluster, "lpapi")
    deployment = objs[("Deployment", "lpapi-loraplane-api")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "lpapi-loraplane-api"
    assert "--files-uri=s3://ml-data/finetuning-files/" in container["args"]
    assert "--template=/etc/loraplane-api/finetunejob.yaml" in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert objs[("Service", "lpapi-loraplane-api")]["spec"]["ports"][0]["port"] == 8000
    template = yaml.safe_load(objs[("ConfigMap", "lpapi-loraplane-api-template")]["data"]["finetunejob.yaml"])
    assert template["kind"] == "FineTuneJob" and template["spec"]["output"]["uri"] == "s3://adapters/"
    # Least privilege: what the API does for its callers, nothing more.
    for verb, group, resource, name in [("create", "authentication.k8s.io", "tokenreviews", ""),
                                        ("create", "authorization.k8s.io", "subjectaccessreviews", ""),
                                        ("create", "loraplane.io", "finetunejobs", ""),
                                        ("patch", "loraplane.io", "finetunejobs", ""),
                                        ("patch", "loraplane.io", "chatbotdeployments", ""),
                                        ("list", "", "events", ""),
                                        ("get", "", "configmaps", "loraplane-finetune-template")]:
        assert _api_may(objs, "lpapi", "lp-api", verb, group, resource, name), (verb, resource)
    for verb, group, resource, name in [("delete", "loraplane.io", "finetunejobs", ""),
                                        ("create", "loraplane.io", "chatbotdeployments", ""),
                                        ("get", "", "secrets", ""), ("get", "", "configmaps", "other"),
                                        ("list", "", "configmaps", ""), ("patch", "loraplane.io", "finetunejobs/status", ""),
                                        ("create", "batch", "jobs", ""), ("create", "", "events", "")]:
        assert not _api_may(objs, "lpapi", "lp-api", verb, group, resource, name), (verb, resource)
    rules = [r for (kind, _), o in objs.items() if kind in ("ClusterRole", "Role") for r in o["rules"]]
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


def test_chart_installs_the_api_server_namespaced(cluster, tmp_path):
    cluster.ensure_namespace("team-a")
    values = {**API_VALUES, "watchNamespaces": ["team-a"], "peering": {"name": "lpapins"}}
    result = helm_install(cluster, tmp_path, values, "lpapins", "lp-api-ns")
    assert result.get("info", {}).get("status") == "deployed", result.get("error")
    objs = installed(cluster, "lpapins")
    assert ("Role", "lpapins-loraplane-api") in objs and ("ClusterRole", "lpapins-loraplane-api") not in objs
    assert objs[("Role", "lpapins-loraplane-api")]["metadata"]["namespace"] == "team-a"
    assert _api_may(objs, "lpapins", "lp-api-ns", "create", "loraplane.io", "finetunejobs")


def test_the_api_server_needs_a_files_uri(cluster, tmp_path):
    schema = json.loads((CHART / "values.schema.json").read_text())
    base = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(_merge(base, API_VALUES), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(base, {"api": {"enabled": True}}), schema)
    result = helm_install(cluster, tmp_path, {"api": {"enabled": True}}, "lpapibad", "lp-api-bad")
    assert "error" in result and "filesUri" in result["error"], result
    assert installed(cluster, "lpapibad") == {}


def test_chart_crds_are_the_generated_ones():
    for path in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / path.name).read_text() == path.read_text()
