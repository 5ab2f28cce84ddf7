"""Which chatbots a pool accepts (Gateway API semantics), residency parsing, and one serving code path."""

import pytest
import yaml
from loraplane.api import ChatbotDeployment, ModelPool
from loraplane.api.base import LabelSelector
from loraplane.api.modelpool import AllowedNamespaces
from loraplane.api.states import Reason
from loraplane.builders.serving import build_serving_children, private_pool, serving_pool
from loraplane.config import OperatorConfig
from loraplane.pool_residency import ResidencyError, parse_residency
from loraplane.tenancy import Claim, namespace_allowed, selector_matches, settle

from tests.unit.test_api_types import EXAMPLES, load

pytestmark = pytest.mark.unit

SELECTOR = AllowedNamespaces.model_validate({"from": "Selector", "selector": {
    "matchLabels": {"team": "ml"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["dev"]}]}})


def claim(ns, name, created="2026-01-01T00:00:00Z", served=None):
    return Claim(created=created, namespace=ns, name=name, served_name=served or name)


@pytest.mark.parametrize("labels,ok", [
    ({"team": "ml"}, True), ({"team": "ml", "tier": "prod"}, True), ({"team": "ml", "tier": "dev"}, False),
    ({"team": "web"}, False), ({}, False), (None, False),
])
def test_selector_reads_namespace_labels(labels, ok):
    assert namespace_allowed(SELECTOR, "serving", "team-a", labels) is ok


def test_same_and_all():
    same, every = AllowedNamespaces(), AllowedNamespaces.model_validate({"from": "All"})
    assert namespace_allowed(same, "serving", "serving", None) and not namespace_allowed(same, "serving", "a", {})
    assert namespace_allowed(every, "serving", "anything", None)


@pytest.mark.parametrize("op,values,labels,ok", [
    ("In", ["a", "b"], {"k": "b"}, True), ("In", ["a"], {}, False), ("Exists", [], {"k": ""}, True),
    ("DoesNotExist", [], {"k": "x"}, False), ("NotIn", ["a"], {}, True),
])
def test_match_expressions(op, values, labels, ok):
    sel = LabelSelector.model_validate({"matchExpressions": [{"key": "k", "operator": op, "values": values}]})
    assert selector_matches(sel, labels) is ok


def test_the_older_claim_keeps_a_served_name_ties_by_namespace_and_name():
    claims = [claim("b", "late", "2026-01-02T00:00:00Z", "bot"), claim("z", "early", "2026-01-01T00:00:00Z", "bot"),
              claim("a", "tie", "2026-01-02T00:00:00Z", "bot"), claim("c", "other")]
    v = settle("serving", "pool", AllowedNamespaces.model_validate({"from": "All"}), claims, {})
    assert v[("z", "early")].accepted and v[("c", "other")].accepted
    for loser in (("a", "tie"), ("b", "late")):
        assert (v[loser].accepted, v[loser].reason) == (False, Reason.NAME_CONFLICT)
        assert "z/early" in v[loser].message


def test_a_refused_namespace_claims_no_name():
    # Not attached at all (as a route a listener does not allow): an older refused claim takes no name.
    claims = [claim("outside", "bot", "2026-01-01T00:00:00Z"), claim("serving", "bot", "2026-01-05T00:00:00Z")]
    v = settle("serving", "pool", AllowedNamespaces(), claims, {})
    assert v[("outside", "bot")].reason is Reason.NOT_ALLOWED_BY_POOL and v[("serving", "bot")].accepted


def test_residency_is_sorted_and_validated():
    body = {"replicas": [{"url": "http://b", "healthy": True, "registered": ["n/c/v2", "n/c/v1"]},
                         {"url": "http://a", "healthy": False}]}
    out = parse_residency(body)
    assert [r.url for r in out] == ["http://a", "http://b"] and out[1].registered == ["n/c/v1", "n/c/v2"]
    for bad in ({}, {"replicas": "x"}, {"replicas": [{"healthy": True}]}):
        with pytest.raises(ResidencyError):
            parse_residency(bad)


def test_a_private_pool_builds_the_same_children_as_the_same_modelpool():
    raw = load("chatbotdeployment.yaml")
    cbd = ChatbotDeployment.model_validate(raw)
    owner = {**raw, "metadata": {**raw["metadata"], "uid": "u1"}}
    private = build_serving_children(owner, cbd.spec, OperatorConfig(), ranks=[8])
    pool = serving_pool(private_pool(cbd.spec), serving_pool(cbd.spec).max_loras)
    shared_path = build_serving_children(owner, pool, OperatorConfig(), ranks=[8])
    assert private == shared_path
    assert {c["metadata"]["name"] for c in private} >= {"support-bot-vllm", "support-bot-router"}


def test_pool_children_are_named_after_the_pool_and_carry_its_capacity():
    raw = load("modelpool.yaml")
    pool = ModelPool.model_validate(raw)
    owner = {**raw, "metadata": {**raw["metadata"], "uid": "u2"}}
    children = build_serving_children(owner, pool.spec, OperatorConfig())
    by = {(c["kind"], c["metadata"]["name"]): c for c in children}
    vllm = by[("Deployment", "shared-smollm-vllm")]["spec"]["template"]["spec"]
    args = vllm["containers"][0]["args"]
    assert args[args.index("--max-loras") + 1] == "4" and args[args.index("--max-cpu-loras") + 1] == "32"
    assert {v["name"]: v for v in vllm["volumes"]}["adapters"]["emptyDir"]["sizeLimit"] == "20Gi"
    sync = vllm["containers"][1]["args"]
    assert sync[sync.index("--routing-table") + 1] == "/etc/loraplane"  # the directory: one file per chatbot
    router = by[("Deployment", "shared-smollm-router")]["spec"]["template"]["spec"]["containers"][0]
    assert router["args"][router["args"].index("--admin-port") + 1] == "9090"
    service = by[("Service", "shared-smollm-router")]["spec"]["ports"]
    assert [(p["name"], p["port"]) for p in service] == [("http", 8000), ("admin", 9090)]
    policy = by[("NetworkPolicy", "shared-smollm-router")]["spec"]["ingress"]
    assert [r["ports"][0]["port"] for r in policy] == [8000, 9090]


def test_pool_examples_parse():
    for doc in yaml.safe_load_all((EXAMPLES / "pool-chatbots.yaml").read_text()):
        assert ChatbotDeployment.model_validate(doc).spec.pool_ref.name == "shared-smollm"


def test_the_admin_port_opens_only_to_the_configured_namespaces_and_the_vllm_hpa():
    raw = load("modelpool.yaml")
    raw["spec"]["autoscaling"] = {"enabled": True, "minReplicas": 2, "maxReplicas": 6}
    raw["spec"]["monitoring"] = {"serviceMonitor": True}
    pool = ModelPool.model_validate(raw)
    owner = {**raw, "metadata": {**raw["metadata"], "uid": "u3"}}
    cfg = OperatorConfig(admin_namespaces=("loraplane-system", "monitoring"))
    by = {(c["kind"], c["metadata"]["name"]): c for c in build_serving_children(owner, pool.spec, cfg)}
    admin = by[("NetworkPolicy", "shared-smollm-router")]["spec"]["ingress"][1]
    assert admin["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["loraplane-system", "monitoring"]
    hpa = by[("HorizontalPodAutoscaler", "shared-smollm-vllm")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["scaleTargetRef"]["name"]) == (2, 6, "shared-smollm-vllm")
    assert "replicas" not in by[("Deployment", "shared-smollm-vllm")]["spec"]  # the HPA's
    endpoints = by[("ServiceMonitor", "shared-smollm-metrics")]["spec"]["endpoints"]
    assert endpoints[0] == {"port": "admin", "path": "/metrics", "interval": "15s", "honorLabels": True}
    assert OperatorConfig.from_env({"LORAPLANE_ADMIN_NAMESPACES": "a, b"}).admin_namespaces == ("a", "b")
