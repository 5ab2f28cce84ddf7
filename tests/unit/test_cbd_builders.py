"""ChatbotDeployment builders: children valid against Kubernetes' own schemas, one pool, right weights."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml
from loraplane.api import ChatbotDeployment
from loraplane.builders.routing_table import ServedVariant, build_routing_configmap, build_routing_table
from loraplane.builders.serving import (
    build_serving_children,
    build_vllm_deployment,
    derive_max_lora_rank,
    derive_max_loras,
    endpoint,
)
from loraplane.config import OperatorConfig
from loraplane.routing import RoutingTable

# Same as the API-server emulator: the oldest and the newest Kubernetes versions supported.
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
CFG = OperatorConfig(image_pull_secrets=("regcred",))


def cbd(**spec) -> tuple[dict, ChatbotDeployment]:
    obj = {
        "apiVersion": "loraplane.io/v1alpha1",
        "kind": "ChatbotDeployment",
        "metadata": {"name": "support-bot", "namespace": "chatbots", "uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000001"},
        "spec": {
            "baseModel": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
            "adapters": [
                {"name": "v2", "fineTuneJobRef": {"name": "support-bot", "version": "v2"}},
                {"name": "v3", "uri": "s3://adapters/support-bot/v3/"},
            ],
            "traffic": [{"adapter": "v2", "weight": 90}, {"adapter": "v3", "weight": 10}],
            **spec,
        },
    }
    return obj, ChatbotDeployment.model_validate(obj)


def assert_valid(manifest: dict) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_two_adapters_render_one_vllm_deployment_and_the_table_weights():
    owner, model = cbd()
    children = build_serving_children(owner, model.spec, CFG, ranks=[8, 8])
    deployments = [c for c in children if c["kind"] == "Deployment"]
    assert sorted(d["metadata"]["name"] for d in deployments) == ["support-bot-router", "support-bot-vllm"]
    vllm = next(d for d in deployments if d["metadata"]["name"] == "support-bot-vllm")
    args = vllm["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable-lora" in args
    assert args[args.index("--max-loras") + 1] == "2"
    assert args[args.index("--max-lora-rank") + 1] == "8"

    variants = [ServedVariant("v2", "s3://adapters/support-bot/v2/", "aa"), ServedVariant("v3", "s3://adapters/support-bot/v3/")]
    table = build_routing_table("support-bot", model.spec, variants, {"v2": 90, "v3": 10})
    assert {v.name: v.weight for v in table.variants} == {"v2": 90, "v3": 10}
    cm = build_routing_configmap(owner, table)
    assert cm["metadata"]["name"] == "support-bot-routing"
    parsed = RoutingTable.model_validate(yaml.safe_load(cm["data"]["default.support-bot.yaml"]))
    assert parsed == table
    assert_valid(cm)


def test_every_child_is_valid_kubernetes_in_oldest_and_newest_versions():
    owner, model = cbd(
        router={"autoscaling": {"enabled": True, "minReplicas": 2, "targetQueueDepth": 8}},
        monitoring={"serviceMonitor": True},
        resources={"gpus": 2, "gpuType": "nvidia-l4", "cpu": "8", "memory": "32Gi",
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]},
        vllm={"extraArgs": ["--enable-prefix-caching"], "gpuMemoryUtilization": 0.8, "maxModelLen": 2048},
        storageSecretRef={"name": "s3-creds"},
    )
    children = build_serving_children(owner, model.spec, CFG)
    kinds = sorted(c["kind"] for c in children)
    assert kinds == ["Deployment", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "NetworkPolicy",
                     "PodDisruptionBudget", "PodDisruptionBudget", "Service", "Service", "ServiceMonitor"]
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "chatbots"
        assert meta["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "loraplane-operator"
        if child["kind"] != "ServiceMonitor":  # a prometheus-operator CRD, not in Kubernetes' schemas
            assert_valid(child)
    vllm = children[0]["spec"]["template"]["spec"]
    engine = vllm["containers"][0]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert vllm["nodeSelector"]["nvidia.com/gpu.product"] == "nvidia-l4"
    assert engine["args"][-1] == "--enable-prefix-caching"
    assert engine["args"][engine["args"].index("--tensor-parallel-size") + 1] == "2"
    assert engine["readinessProbe"]["httpGet"]["path"] == "/health"
    assert [c["name"] for c in vllm["containers"]] == ["vllm", "adapter-sync"]
    assert vllm["containers"][1]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert vllm["imagePullSecrets"] == [{"name": "regcred"}]
    router = children[2]
    assert "replicas" not in router["spec"]  # the HPA owns it
    assert endpoint("support-bot", "chatbots") == "http://support-bot-router.chatbots.svc:8000/v1"


def test_base_model_from_object_storage_is_fetched_by_an_init_container():
    owner, model = cbd(baseModel={"uri": "s3://models/smollm2/", "ggufFile": "model.gguf"},
                       storageSecretRef={"name": "s3-creds"})
    deployment = build_vllm_deployment(owner, model.spec, CFG)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["initContainers"][0]["command"][-2:] == ["s3://models/smollm2/", "/models/base"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--model") + 1] == "/models/base/model.gguf"
    assert args[args.index("--served-model-name") + 1] == "support-bot-base"
    assert_valid(deployment)


@pytest.mark.parametrize(
    ("adapters", "vllm", "ranks", "loras", "rank"),
    [
        ([], {}, [], 1, 16),
        ([{"name": "a", "uri": "s3://x/"}], {}, [None], 1, 16),
        ([{"name": "a", "fineTuneJobRef": {"name": "j"}}], {}, [12], 3, 16),
        ([{"name": "a", "uri": "s3://x/"}, {"name": "b", "uri": "s3://y/"}], {}, [8, 64], 2, 64),
        ([{"name": "a", "uri": "s3://x/"}], {"maxLoras": 7, "maxLoraRank": 32}, [64], 7, 32),
        ([{"name": "a", "uri": "s3://x/"}], {}, [300], 1, 320),  # vLLM serves 320 and 512 too
        ([{"name": "a", "uri": "s3://x/"}], {"maxLoraRank": 512}, [8], 1, 512),
    ],
)
def test_lora_limits_are_derived_from_the_adapters(adapters, vllm, ranks, loras, rank):
    _, model = cbd(adapters=adapters, traffic=[], vllm=vllm)
    assert derive_max_loras(model.spec) == loras
    assert derive_max_lora_rank(model.spec, ranks) == rank


def test_unservable_weights_are_refused():
    _, model = cbd()
    with pytest.raises(ValueError, match="cannot be served: v9"):
        build_routing_table("support-bot", model.spec, [ServedVariant("v2", "s3://a/")], {"v9": 100})
    with pytest.raises(ValueError, match="sum to 100"):
        build_routing_table("support-bot", model.spec, [ServedVariant("v2", "s3://a/")], {"v2": 50})


def test_base_variant_and_retained_adapters_in_the_table():
    _, model = cbd(stickiness={"header": "x-user-id"}, cache={"ttl": "90s"})
    table = build_routing_table(
        "support-bot", model.spec, [ServedVariant("v3", "s3://a/v3/")], {"v3": 80, "base": 20},
        retained=[ServedVariant("v2", "s3://a/v2/")],
    )
    assert [(v.name, v.weight, v.adapter_uri) for v in table.variants] == [("v3", 80, "s3://a/v3/"), ("base", 20, None)]
    assert [v.name for v in table.retained] == ["v2"]
    assert table.stickiness_header == "x-user-id" and table.cache.ttl_seconds == 90
    assert table.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_long_names_sharing_63_characters_get_distinct_selectors():
    from loraplane.builders.common import label_value
    from loraplane.builders.serving import build_vllm_service

    stem = "a" * 63
    selectors = []
    for name in (stem + "-team-one", stem + "-team-two"):
        owner, _ = cbd()
        owner["metadata"]["name"] = name
        selectors.append(build_vllm_service(owner)["spec"]["selector"])
        assert_valid(build_vllm_service(owner))
    assert selectors[0] != selectors[1]
    assert all(len(v) <= 63 for s in selectors for v in s.values())
    assert label_value("support-bot") == "support-bot"  # short, valid values are kept as they are


def test_vllm_is_reachable_only_by_its_router_and_only_with_the_key():
    from loraplane.builders.isolation import build_keys_secret

    owner, model = cbd(baseModel={"name": "org/gated", "tokenSecretRef": {"name": "hf", "key": "token"}})
    children = build_serving_children(owner, model.spec, CFG)
    policies = {c["metadata"]["name"]: c["spec"] for c in children if c["kind"] == "NetworkPolicy"}
    for c in children:
        if c["kind"] == "NetworkPolicy":
            assert_valid(c)
    vllm_ingress = policies["support-bot-vllm"]["ingress"]
    router_pods = {"app.kubernetes.io/name": "loraplane", "app.kubernetes.io/instance": "support-bot",
                   "app.kubernetes.io/component": "router"}
    assert vllm_ingress[0] == {"from": [{"podSelector": {"matchLabels": router_pods}}],
                               "ports": [{"protocol": "TCP", "port": 8000}]}
    assert all(p["port"] != 8000 for rule in vllm_ingress[1:] for p in rule["ports"])
    router_egress = policies["support-bot-router"]["egress"]
    assert router_egress[0]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "vllm"

    pod = children[0]["spec"]["template"]["spec"]
    engine, sync = pod["containers"]
    env = {e["name"]: e for e in engine["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "support-bot-keys", "key": "vllm-api-key"}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}  # that key only
    assert "envFrom" not in engine
    assert sync["args"][sync["args"].index("--vllm-api-key-file") + 1] == "/var/run/loraplane/keys/vllm-api-key"
    keys = next(v for v in pod["volumes"] if v["name"] == "keys")["secret"]
    assert [i["key"] for i in keys["items"]] == ["vllm-api-key"]  # vLLM's pod never holds the signing key
    router = children[2]["spec"]["template"]["spec"]
    assert "--signing-key-file" in router["containers"][0]["args"]
    secret = build_keys_secret(owner)
    assert_valid(secret)
    assert set(secret["data"]) == {"vllm-api-key", "request-id-key"}
    assert build_keys_secret(owner)["data"] != secret["data"]  # random, so the controller creates it only once


def test_serving_pods_have_no_token_and_read_only_roots():
    owner, model = cbd(baseModel={"uri": "s3://models/base/"})
    children = build_serving_children(owner, model.spec, CFG)
    for pod in (children[0]["spec"]["template"]["spec"], children[2]["spec"]["template"]["spec"]):
        assert pod["automountServiceAccountToken"] is False
        for c in pod["containers"] + pod.get("initContainers", []):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]


def test_images_outside_the_allowed_prefixes_are_refused():
    from loraplane.builders.serving import ImageNotAllowed

    owner, model = cbd(vllm={"image": "evil.example/vllm:latest"})
    with pytest.raises(ImageNotAllowed, match="spec.vllm.image 'evil.example/vllm:latest' is not allowed"):
        build_serving_children(owner, model.spec, CFG)
    owner, model = cbd(vllm={"image": "vllm/vllm-openai:v0.32.0"})
    assert build_serving_children(owner, model.spec, CFG)[0]["spec"]["template"]["spec"]["containers"][0][
        "image"] == "vllm/vllm-openai:v0.32.0"
