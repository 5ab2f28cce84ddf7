"""The REAL operator (kopf) runs ModelPools shared by ChatbotDeployments of several namespaces.

Against the API-server emulator. The router's admin endpoint (`/pool/residency`) is a stub
HTTP server answering as the router does (no router or vLLM runs here: residency is the
router's reading of vLLM, tested on the router's side); the operator is pointed at it with
the pool's `loraplane.io/router-admin-url` annotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.integration.test_cbd_operator import write_adapter
from tests.support.operator_fixtures import free_port

pytestmark = [pytest.mark.integration]

API = "loraplane.io/v1alpha1"
CBD = "ChatbotDeployment"
POOL_NS = "serving"
LABEL = "loraplane.io/pool"
RESIDENCY = {"replicas": [
    {"url": "http://10.0.0.2:8000", "healthy": True, "registered": ["team-a/bot-a/v1", "team-b/bot-b/v1"],
     "running": ["team-a/bot-a/v1"], "waiting": []},
    {"url": "http://10.0.0.1:8000", "healthy": False, "registered": [], "running": [], "waiting": []},
]}


class StubRouterAdmin:
    """Answers GET /pool/residency as the router's admin port does."""

    def __init__(self, body: dict):
        self.body = body
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if self.path != "/pool/residency":
                    self.send_error(404)
                    return
                data = json.dumps(stub.body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()


@pytest.fixture(scope="module")
def admin():
    with StubRouterAdmin(RESIDENCY) as stub:
        yield stub


@pytest.fixture(scope="module")
def operator(cluster, admin):
    for ns, labels in ((POOL_NS, {}), ("team-a", {LABEL: "shared"}), ("team-b", {LABEL: "shared"}), ("team-c", {})):
        cluster.ensure_namespace(ns)
        if labels:
            cluster.patch("v1", "Namespace", None, ns, {"metadata": {"labels": labels}})
    with cluster.operator(canary_tick_seconds=0.3, progress_interval_seconds=0.3) as runner:
        yield runner


def pool(name: str, allowed: dict, admin_url: str | None = None) -> dict:
    meta = {"name": name, "namespace": POOL_NS}
    if admin_url:
        meta["annotations"] = {"loraplane.io/router-admin-url": admin_url}
    return {"apiVersion": API, "kind": "ModelPool", "metadata": meta,
            "spec": {"baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"}, "replicas": 2,
                     "vllm": {"maxLoras": 4, "maxCpuLoras": 16}, "adapterStorage": {"size": "5Gi"},
                     "allowedNamespaces": allowed}}


def chatbot(ns: str, name: str, pool_name: str, uri: str | None = None, **spec) -> dict:
    adapters = [{"name": "v1", "uri": uri}] if uri else []
    traffic = [{"adapter": "v1", "weight": 100}] if uri else []
    return {"apiVersion": API, "kind": CBD, "metadata": {"name": name, "namespace": ns},
            "spec": {"poolRef": {"name": pool_name, "namespace": POOL_NS}, "adapters": adapters, "traffic": traffic,
                     **spec}}


def routing(cluster, pool_name: str) -> dict[str, dict]:
    cm = cluster.get_or_none("v1", "ConfigMap", POOL_NS, f"{pool_name}-routing")
    return {k: yaml.safe_load(v) for k, v in ((cm or {}).get("data") or {}).items()}


def accepted(cluster, ns: str, name: str) -> dict | None:
    obj = cluster.get_or_none(API, CBD, ns, name)
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conds if c["type"] == "Accepted"), None)


def pool_status(cluster, name: str) -> dict:
    return cluster.get(API, "ModelPool", POOL_NS, name).get("status") or {}


def test_two_chatbots_of_two_namespaces_share_one_pool(cluster, operator, admin, tmp_path):
    cluster.create(pool("shared", {"from": "Selector", "selector": {"matchLabels": {LABEL: "shared"}}}, admin.url))
    cluster.create(chatbot("team-a", "bot-a", "shared", write_adapter(tmp_path / "a", "v1")))
    cluster.create(chatbot("team-b", "bot-b", "shared", write_adapter(tmp_path / "b", "v1"), priority=3))

    tables = cluster.wait_for(lambda: (t := routing(cluster, "shared")) and len(t) == 2 and t,
                              message="both chatbots' tables in the pool's ConfigMap")
    assert sorted(tables) == ["team-a.bot-a.yaml", "team-b.bot-b.yaml"]
    a, b = tables["team-a.bot-a.yaml"], tables["team-b.bot-b.yaml"]
    assert (a["namespace"], a["chatbot"], a["model"], a["share"]) == ("team-a", "bot-a", "bot-a", 1)
    assert (b["namespace"], b["chatbot"], b["share"]) == ("team-b", "bot-b", 3)
    assert a["baseModel"] == b["baseModel"] == "HuggingFaceTB/SmolLM2-135M-Instruct"

    # One set of serving children, the pool's; none for the chatbots.
    vllm = cluster.wait_for(lambda: cluster.get_or_none("apps/v1", "Deployment", POOL_NS, "shared-vllm"))
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-loras") + 1] == "4" and args[args.index("--max-cpu-loras") + 1] == "16"
    volumes = {v["name"]: v for v in vllm["spec"]["template"]["spec"]["volumes"]}
    assert volumes["adapters"]["emptyDir"]["sizeLimit"] == "5Gi"
    assert volumes["routing"]["configMap"]["name"] == "shared-routing"
    router = cluster.get("apps/v1", "Deployment", POOL_NS, "shared-router")["spec"]["template"]["spec"]
    assert {p["containerPort"] for p in router["containers"][0]["ports"]} == {8000, 9090}
    assert cluster.get_or_none("apps/v1", "Deployment", "team-a", "bot-a-vllm") is None

    for ns, name in (("team-a", "bot-a"), ("team-b", "bot-b")):
        cond = cluster.wait_for(lambda ns=ns, name=name: (c := accepted(cluster, ns, name)) and c["status"] == "True"
                                and c)
        assert cond["reason"] == "Accepted"
        assert cluster.get(API, CBD, ns, name)["status"]["endpoint"] == "http://shared-router.serving.svc:8000/v1"

    st = cluster.wait_for(lambda: (s := pool_status(cluster, "shared")).get("attachedChatbots") == 2
                          and s.get("registeredAdapters") == 2 and s.get("residency") and s)
    assert st["replicas"] == 2
    assert [(c["namespace"], c["name"], c["accepted"]) for c in st["chatbots"]] == [
        ("team-a", "bot-a", True), ("team-b", "bot-b", True)]
    # Residency as the router reported it, replicas in a stable order.
    assert [r["url"] for r in st["residency"]] == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert st["residency"][1]["registered"] == ["team-a/bot-a/v1", "team-b/bot-b/v1"]
    assert st["residency"][1]["running"] == ["team-a/bot-a/v1"] and st["residency"][1]["healthy"] is True

    # Deleting a chatbot takes its table out of the pool's routing.
    cluster.delete(API, CBD, "team-b", "bot-b")
    cluster.wait_for(lambda: sorted(routing(cluster, "shared")) == ["team-a.bot-a.yaml"],
                     message="bot-b's key removed")
    cluster.wait_for(lambda: pool_status(cluster, "shared").get("attachedChatbots") == 1)


def test_other_namespaces_are_refused_unless_the_pool_allows_them(cluster, operator):
    cluster.create(pool("same-only", {"from": "Same"}))
    cluster.create(chatbot("team-a", "outsider", "same-only"))
    cluster.create(chatbot(POOL_NS, "insider", "same-only"))
    cond = cluster.wait_for(lambda: accepted(cluster, "team-a", "outsider"))
    assert (cond["status"], cond["reason"]) == ("False", "NotAllowedByPool")
    assert "team-a" in cond["message"]
    cluster.wait_for(lambda: (c := accepted(cluster, POOL_NS, "insider")) and c["status"] == "True")
    assert sorted(routing(cluster, "same-only")) == ["serving.insider.yaml"]
    assert cluster.get(API, CBD, "team-a", "outsider")["status"]["phase"] == "Degraded"

    # Selector: an unlabelled namespace is refused until it gets the label.
    cluster.create(pool("by-label", {"from": "Selector", "selector": {"matchLabels": {LABEL: "shared"}}}))
    cluster.create(chatbot("team-c", "late", "by-label"))
    cond = cluster.wait_for(lambda: accepted(cluster, "team-c", "late"))
    assert (cond["status"], cond["reason"]) == ("False", "NotAllowedByPool")
    assert "team-c.late.yaml" not in routing(cluster, "by-label")
    cluster.patch("v1", "Namespace", None, "team-c", {"metadata": {"labels": {LABEL: "shared"}}})
    cluster.wait_for(lambda: (c := accepted(cluster, "team-c", "late")) and c["status"] == "True",
                     message="accepted once its namespace has the label")
    cluster.wait_for(lambda: "team-c.late.yaml" in routing(cluster, "by-label"))

    # All: any namespace.
    cluster.create(pool("open", {"from": "All"}))
    cluster.create(chatbot("team-b", "anyone", "open"))
    cluster.wait_for(lambda: (c := accepted(cluster, "team-b", "anyone")) and c["status"] == "True")


def test_a_served_name_claimed_twice_stays_with_the_older_chatbot(cluster, operator):
    cluster.create(pool("names", {"from": "All"}))
    cluster.create(chatbot("team-a", "first", "names", servedName="assistant"))
    cluster.wait_for(lambda: (c := accepted(cluster, "team-a", "first")) and c["status"] == "True")
    cluster.create(chatbot("team-b", "second", "names", servedName="assistant"))
    cond = cluster.wait_for(lambda: accepted(cluster, "team-b", "second"))
    assert (cond["status"], cond["reason"]) == ("False", "NameConflict")
    assert "team-a/first" in cond["message"]
    assert sorted(routing(cluster, "names")) == ["team-a.first.yaml"]
    assert routing(cluster, "names")["team-a.first.yaml"]["model"] == "assistant"
    st = cluster.wait_for(lambda: (s := pool_status(cluster, "names")) and len(s.get("chatbots") or []) == 2 and s)
    assert {c["name"]: c["reason"] for c in st["chatbots"]} == {"first": "Accepted", "second": "NameConflict"}

    # The holder leaves: the name passes to the other.
    cluster.delete(API, CBD, "team-a", "first")
    cluster.wait_for(lambda: (c := accepted(cluster, "team-b", "second")) and c["status"] == "True",
                     message="the name passes on")
    cluster.wait_for(lambda: sorted(routing(cluster, "names")) == ["team-b.second.yaml"])


def test_api_keys_reach_the_pool_only_as_digests(cluster, operator):
    key = "sk-team-a-0123456789abcdef"
    cluster.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bot-keys", "namespace": "team-a"},
                    "data": {"current": base64.b64encode(key.encode()).decode()}})
    cluster.create(pool("keyed", {"from": "All"}))
    cluster.create(chatbot("team-a", "keyed-bot", "keyed", auth={"apiKeySecretRef": {"name": "bot-keys"}}))
    tables = cluster.wait_for(lambda: routing(cluster, "keyed").get("team-a.keyed-bot.yaml"))
    assert tables["apiKeySha256"] == [hashlib.sha256(key.encode()).hexdigest()]
    cm = cluster.get("v1", "ConfigMap", POOL_NS, "keyed-routing")
    assert key not in json.dumps(cm) and key not in json.dumps(cluster.get(API, CBD, "team-a", "keyed-bot"))

    # A key Secret that is missing fails closed: a digest no key has.
    cluster.create(chatbot("team-a", "no-secret", "keyed", auth={"apiKeySecretRef": {"name": "missing"}}))
    table = cluster.wait_for(lambda: routing(cluster, "keyed").get("team-a.no-secret.yaml"))
    assert table["apiKeySha256"] == ["0" * 64]


INFERENCE_POOL_CRD = {
    # The Gateway API Inference Extension's CRD, as far as the emulator needs it (its schema is the GIE's own).
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "inferencepools.inference.networking.k8s.io"},
    "spec": {"group": "inference.networking.k8s.io", "scope": "Namespaced",
             "names": {"kind": "InferencePool", "plural": "inferencepools", "singular": "inferencepool",
                       "listKind": "InferencePoolList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_an_inference_pool_is_emitted_where_the_cluster_serves_one(cluster, operator):
    cluster.create(pool("plain", {"from": "Same"}))
    cluster.wait_for(lambda: cluster.get_or_none("apps/v1", "Deployment", POOL_NS, "plain-vllm"))
    assert not _served(cluster)  # no InferencePool API: the pool converges without one

    cluster.call(cluster.emulator.add_crd, INFERENCE_POOL_CRD)
    # Discovered on the next pass: the pool made before the API was served gets one too.
    cluster.wait_for(lambda: cluster.get_or_none("inference.networking.k8s.io/v1", "InferencePool", POOL_NS, "plain"))
    cluster.create(pool("gie", {"from": "Same"}))
    ip = cluster.wait_for(lambda: cluster.get_or_none("inference.networking.k8s.io/v1", "InferencePool",
                                                      POOL_NS, "gie"))
    vllm = cluster.get("apps/v1", "Deployment", POOL_NS, "gie-vllm")
    assert ip["spec"]["selector"]["matchLabels"] == vllm["spec"]["selector"]["matchLabels"]
    assert ip["spec"]["targetPorts"] == [{"number": 8000}]
    assert ip["spec"]["endpointPickerRef"] == {"kind": "Service", "name": "gie-epp", "portNumber": 9002,
                                               "failureMode": "FailClose"}
    assert ip["metadata"]["ownerReferences"][0]["kind"] == "ModelPool"

    cluster.patch(API, "ModelPool", POOL_NS, "gie", {"spec": {"inferencePool": {"enabled": False}}})
    cluster.wait_for(lambda: cluster.get_or_none("inference.networking.k8s.io/v1", "InferencePool",
                                                 POOL_NS, "gie") is None, message="InferencePool removed")


def _served(cluster) -> bool:
    try:
        cluster.call(cluster.emulator.type_for, "inference.networking.k8s.io/v1", "InferencePool")
    except KeyError:
        return False
    return True
