"""The Argo CD health checks (Lua) run on sample objects, as Argo CD runs them (gopher-lua; here Lua via lupa)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ARGOCD = Path(__file__).resolve().parents[2] / "helm" / "loraplane" / "argocd"


# Argo CD runs health scripts in gopher-lua: Lua 5.1 with only the base, table and package
# libraries. Every script runs there (lupa's lua51, other libraries removed) and under Lua 5.4.
RUNTIMES = ("lua51", "lua54")
_GOPHER_LUA_ABSENT = ("string", "os", "io", "math", "debug", "coroutine", "utf8")


def health(script: str, obj: dict, runtime: str = "lua51") -> tuple[str, str]:
    lua = importlib.import_module(f"lupa.{runtime}").LuaRuntime(unpack_returned_tuples=True)
    if runtime == "lua51":
        for name in _GOPHER_LUA_ABSENT:
            lua.execute(f"{name} = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute((ARGOCD / script).read_text())
    return hs["status"], hs["message"]


def ftj(status: dict | None = None, generation: int = 1, **spec) -> dict:
    obj = {"apiVersion": "loraplane.io/v1alpha1", "kind": "FineTuneJob",
           "metadata": {"name": "support-bot", "generation": generation}, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def cbd(status: dict | None = None, generation: int = 1, annotations: dict | None = None, **spec) -> dict:
    meta = {"name": "support-bot", "generation": generation}
    if annotations:
        meta["annotations"] = annotations
    obj = {"apiVersion": "loraplane.io/v1alpha1", "kind": "ChatbotDeployment", "metadata": meta, "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("obj", "expected", "fragment"),
    [
        (ftj(), "Progressing", "Waiting for the operator"),
        (ftj({"phase": "Training", "observedGeneration": 1, "progress": {"percent": 26}}), "Progressing", "Training 26%"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1,
              "adapter": {"version": "v3", "uri": "s3://a/", "verdict": "accepted"}}), "Healthy", "v3 published"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1,
              "adapter": {"version": "v4", "uri": "s3://a/", "verdict": "rejected", "reason": "perplexity 31 > 20"}}),
         "Degraded", "v4 rejected: perplexity 31 > 20"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1,
              "adapter": {"version": "v5", "uri": "s3://a/", "verdict": "pending",
                          "humanEvaluation": {"state": "Pending", "message": "no human evaluation attached"}}}),
         "Progressing", "v5 awaits human evaluation: no human evaluation attached"),
        (ftj({"phase": "Failed", "observedGeneration": 1, "message": "dataset.jsonl line 7: no completion"}),
         "Degraded", "line 7"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1}, generation=2), "Progressing", "generation 2"),
        (ftj({"phase": "Training", "observedGeneration": 1,
              "conditions": [{"type": "Stalled", "status": "True", "message": "image pull failed"}]}),
         "Degraded", "image pull failed"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1}, suspend=True), "Suspended", "Suspended"),
        # Failed before Suspended, as Argo CD's own Job check orders them.
        (ftj({"phase": "Failed", "observedGeneration": 1, "message": "OOMKilled"}, suspend=True), "Degraded", "OOM"),
        (ftj({"phase": "Succeeded", "observedGeneration": 1, "adapter": {"verdict": "accepted"}}), "Healthy",
         "published"),
    ],
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_finetunejob_health(obj, expected, fragment, runtime):
    status, message = health("finetunejob-health.lua", obj, runtime)
    assert (status, fragment in message) == (expected, True), message


@pytest.mark.parametrize(
    ("obj", "expected", "fragment"),
    [
        (cbd(), "Progressing", "Waiting for the operator"),
        (cbd({"phase": "Healthy", "observedGeneration": 1, "stable": "v3"}), "Healthy", "Serving v3"),
        (cbd({"phase": "Canary", "observedGeneration": 1, "canary": "v4", "canaryWeight": 25}),
         "Progressing", "Canary v4 at 25%"),
        (cbd({"phase": "Canary", "observedGeneration": 1, "canary": "v4", "canaryWeight": 25},
             rollout={"paused": True}), "Suspended", "paused at 25%"),
        (cbd({"phase": "Canary", "observedGeneration": 1, "canary": "v4", "canaryWeight": 5},
             annotations={"loraplane.io/paused": "true"}), "Suspended", "paused at 5%"),
        (cbd({"phase": "RolledBack", "observedGeneration": 1,
              "message": "canary v4 rolled back: errorRate 0.5 above by 0.49"}), "Degraded", "errorRate"),
        (cbd({"phase": "Degraded", "observedGeneration": 1, "message": "adapter v9 not published"}),
         "Degraded", "not published"),
        (cbd({"phase": "Progressing", "observedGeneration": 1, "message": "0/1 vLLM replicas ready"}),
         "Progressing", "replicas"),
        (cbd({"phase": "Healthy", "observedGeneration": 1}, generation=3), "Progressing", "generation 3"),
    ],
)
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_chatbotdeployment_health(obj, expected, fragment, runtime):
    status, message = health("chatbotdeployment-health.lua", obj, runtime)
    assert (status, fragment in message) == (expected, True), message


def test_argocd_cm_snippet_carries_the_same_scripts():
    cm = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())
    assert cm["resource.customizations.health.loraplane.io_FineTuneJob"] == (ARGOCD / "finetunejob-health.lua").read_text()
    assert cm["resource.customizations.health.loraplane.io_ChatbotDeployment"] == (
        ARGOCD / "chatbotdeployment-health.lua"
    ).read_text()


def test_gitops_application_syncs_a_folder():
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert app["spec"]["source"]["path"] and app["spec"]["source"]["directory"]["recurse"] is True
    assert app["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    guide = (ARGOCD.parents[2] / "docs" / "gitops.md").read_text()
    assert "argocd-cm-health.yaml" in guide and "kind: Application" in guide
