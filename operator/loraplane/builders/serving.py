"""The serving children of a pool: one vLLM Deployment for every adapter, the router, and friends.

All adapter versions of one base model share one vLLM Deployment (multi-LoRA), so an
A/B split or a canary costs no extra GPU. A ModelPool's children and those of a
ChatbotDeployment without poolRef (a private pool it owns, `private_pool`) come from
the same functions: the owner names them (`<owner>-vllm`, `<owner>-router`, ...).
Pure functions: spec in, manifests out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.chatbotdeployment import ChatbotDeploymentSpec
from ..api.modelpool import ModelPoolSpec
from ..config import OperatorConfig
from .common import (
    child_metadata,
    child_name,
    container_resources,
    label_value,
    owner_label,
    restricted_security_context,
    selector_labels,
)
from .isolation import (
    KEYS_DIR,
    REQUEST_ID_KEY,
    VLLM_API_KEY,
    build_network_policies,
    key_file,
    keys_volume,
    vllm_api_key_env,
)
from .routing_table import routing_configmap_name, served_base_model

VLLM = "vllm"
ROUTER = "router"
VLLM_PORT = 8000
ROUTER_PORT = 8000
# /metrics and /pool/residency: apart from users' port, so one tenant's users cannot read a shared pool's figures.
ROUTER_ADMIN_PORT = 9090
SYNC_METRICS_PORT = 8001
ROUTING_DIR = "/etc/loraplane"
ADAPTER_DIR = "/adapters"
MODEL_DIR = "/models"
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # what vLLM 0.32 serves
DEFAULT_LORA_RANK = 16
MAX_LORAS = 64


def vllm_name(cbd_name: str) -> str:
    return child_name(cbd_name, VLLM)


def router_name(cbd_name: str) -> str:
    return child_name(cbd_name, ROUTER)


def endpoint(cbd_name: str, namespace: str) -> str:
    """The OpenAI-compatible base URL clients use inside the cluster (pass the pool's name for a shared pool)."""
    return f"http://{router_name(cbd_name)}.{namespace}.svc:{ROUTER_PORT}/v1"


def router_admin_url(owner_name: str, namespace: str) -> str:
    """The router Service's admin port: /metrics and /pool/residency."""
    return f"http://{router_name(owner_name)}.{namespace}.svc:{ROUTER_ADMIN_PORT}"


@dataclass(frozen=True)
class ServingPool:
    """What the serving children are built from: a pool's spec and its GPU adapter slots."""

    spec: ModelPoolSpec
    max_loras: int


def private_pool(spec: ChatbotDeploymentSpec) -> ModelPoolSpec:
    """The pool a ChatbotDeployment without poolRef owns: its own serving fields, as a ModelPool's."""
    if spec.base_model is None:
        raise ValueError("a ChatbotDeployment with poolRef has no private pool")
    return ModelPoolSpec(
        base_model=spec.base_model, replicas=spec.replicas, vllm=spec.vllm, resources=spec.resources,
        router=spec.router, storage_secret_ref=spec.storage_secret_ref, monitoring=spec.monitoring,
    )


def serving_pool(spec: ChatbotDeploymentSpec | ModelPoolSpec, max_loras: int | None = None) -> ServingPool:
    """A chatbot's private pool (slots derived from its adapters) or a ModelPool (slots given or set)."""
    if isinstance(spec, ChatbotDeploymentSpec):
        return ServingPool(private_pool(spec), derive_max_loras(spec))
    return ServingPool(spec, spec.vllm.max_loras or max_loras or 1)


def derive_pool_max_loras(asks: Sequence[int]) -> int:
    """--max-loras of a shared pool without vllm.maxLoras: what its accepted chatbots would each ask for on a
    private pool, summed (capped). Each change restarts vLLM: shared pools should set maxLoras."""
    return max(1, min(MAX_LORAS, sum(asks)))


def derive_max_loras(spec: ChatbotDeploymentSpec) -> int:
    """--max-loras: every adapter entry, plus room for a canary and a retiring old stable of each entry
    that follows a FineTuneJob (those are the ones a rollout adds), so a rollout never restarts vLLM."""
    if spec.vllm.max_loras is not None:
        return spec.vllm.max_loras
    following = sum(1 for a in spec.adapters if a.fine_tune_job_ref and not a.fine_tune_job_ref.version)
    return max(1, min(MAX_LORAS, len(spec.adapters) + 2 * following))


def derive_max_lora_rank(spec: ChatbotDeploymentSpec | ModelPoolSpec, ranks: Sequence[int | None] = ()) -> int:
    """--max-lora-rank: the smallest rank vLLM accepts that fits every known adapter rank (16 if none known)."""
    if spec.vllm.max_lora_rank is not None:
        return spec.vllm.max_lora_rank
    known = [r for r in ranks if r]
    if not known:
        return DEFAULT_LORA_RANK
    need = max(known)
    for rank in LORA_RANKS:
        if rank >= need:
            return rank
    raise ValueError(f"an adapter has LoRA rank {need}; vLLM serves ranks up to {LORA_RANKS[-1]}")


class ImageNotAllowed(ValueError):
    """An image of the spec outside the operator's allowed prefixes."""


def allowed_image(image: str | None, default: str, cfg: OperatorConfig, field: str) -> str:
    """`image` when it starts with one of the operator's allowed prefixes; unset gives the default."""
    if image is None:
        return default
    if not any(image.startswith(p) for p in cfg.allowed_image_prefixes):
        raise ImageNotAllowed(f"{field} {image!r} is not allowed: images must start with one of "
                              f"{', '.join(cfg.allowed_image_prefixes) or '(none configured)'}")
    return image


def _read_only_root() -> dict[str, Any]:
    """The restricted context with a read-only root filesystem: writable paths are emptyDirs."""
    return {**restricted_security_context(), "readOnlyRootFilesystem": True}


TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
KEYS_MOUNT = {"name": "keys", "mountPath": KEYS_DIR, "readOnly": True}


def _token_env(spec: ModelPoolSpec) -> list[dict[str, Any]]:
    """HF_TOKEN from exactly the key named, never the whole Secret."""
    ref = spec.base_model.token_secret_ref
    if ref is None:
        return []
    return [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}]


def _image_pull_secrets(cfg: OperatorConfig) -> list[dict[str, str]]:
    return [{"name": s} for s in cfg.image_pull_secrets]


def _routing_volume(cbd_name: str) -> dict[str, Any]:
    # Mounted as a directory: one table file per chatbot (`<namespace>.<chatbot>.yaml`), reloaded live.
    return {"name": "routing", "configMap": {"name": routing_configmap_name(cbd_name)}}


def vllm_args(pool: ServingPool, owner_name: str, ranks: Sequence[int | None] = ()) -> list[str]:
    """The vLLM OpenAI server's arguments."""
    spec = pool.spec
    model = f"{MODEL_DIR}/base" if spec.base_model.uri else spec.base_model.name
    args = [
        "--model", str(model),
        "--served-model-name", served_base_model(spec.base_model, owner_name),
        "--host", "0.0.0.0",
        "--port", str(VLLM_PORT),
        "--enable-lora",
        "--max-loras", str(pool.max_loras),
        "--max-lora-rank", str(derive_max_lora_rank(spec, ranks)),
        "--gpu-memory-utilization", str(spec.vllm.gpu_memory_utilization),
        "--max-model-len", str(spec.vllm.max_model_len),
        "--dtype", spec.vllm.dtype,
    ]
    if spec.base_model.uri and spec.base_model.gguf_file:
        args[1] = f"{MODEL_DIR}/base/{spec.base_model.gguf_file}"
        args += ["--tokenizer", f"{MODEL_DIR}/base"]
    if spec.vllm.max_cpu_loras is not None:
        args += ["--max-cpu-loras", str(spec.vllm.max_cpu_loras)]
    if spec.resources.gpus > 1:
        args += ["--tensor-parallel-size", str(spec.resources.gpus)]
    return args + list(spec.vllm.extra_args)


def adapter_sync_args(pool: ServingPool) -> list[str]:
    """The adapter sync sidecar's arguments: every flag it takes is set here, and only here."""
    return [
        "--routing-table", ROUTING_DIR,
        "--vllm-url", f"http://127.0.0.1:{VLLM_PORT}",
        "--adapters-dir", ADAPTER_DIR,
        "--port", str(SYNC_METRICS_PORT),
        "--vllm-api-key-file", key_file(VLLM_API_KEY),
    ]


def _storage_env_from(spec: ModelPoolSpec) -> list[dict[str, Any]]:
    if spec.storage_secret_ref is None:
        return []
    return [{"secretRef": {"name": spec.storage_secret_ref.name}}]


def build_vllm_deployment(
    owner: Mapping[str, Any], pool: ServingPool | ChatbotDeploymentSpec, cfg: OperatorConfig,
    ranks: Sequence[int | None] = (),
) -> dict[str, Any]:
    """One vLLM Deployment serving the base model and every adapter (multi-LoRA), with adapter sync beside it."""
    pool = pool if isinstance(pool, ServingPool) else serving_pool(pool)
    spec = pool.spec
    name = owner["metadata"]["name"]
    health = {"httpGet": {"path": "/health", "port": "http"}}
    vllm = {
        "name": "vllm",
        "image": allowed_image(spec.vllm.image, cfg.vllm_image, cfg, "spec.vllm.image"),
        "imagePullPolicy": cfg.image_pull_policy,
        "args": vllm_args(pool, name, ranks),
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": [
            # Adapter sync loads and unloads adapters at run time through the server's API,
            # which the API key closes to everyone but adapter sync and the router.
            {"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"},
            vllm_api_key_env(name),
            {"name": "HF_HOME", "value": f"{MODEL_DIR}/hf"},
            {"name": "HOME", "value": "/tmp"},  # caches vLLM and its libraries write under $HOME
            *_token_env(spec),
        ],
        "resources": container_resources(cpu=spec.resources.cpu, memory=spec.resources.memory,
                                         gpus=spec.resources.gpus),
        # Loading weights takes minutes on a cold node: a generous startup probe, then tight checks.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": 90},
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {**health, "periodSeconds": 15, "failureThreshold": 4},
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODEL_DIR},
            {"name": "adapters", "mountPath": ADAPTER_DIR, "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
            TMP_MOUNT,
        ],
        "securityContext": _read_only_root(),
    }
    sync = {
        "name": "adapter-sync",
        "image": cfg.adapter_sync_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "args": adapter_sync_args(pool),
        "ports": [{"name": "sync-metrics", "containerPort": SYNC_METRICS_PORT, "protocol": "TCP"}],
        # Ready only when every adapter of the table is loaded: a replica takes traffic with its adapters.
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "sync-metrics"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "sync-metrics"}, "periodSeconds": 15,
                          "failureThreshold": 4},
        "envFrom": _storage_env_from(spec),
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "volumeMounts": [
            {"name": "routing", "mountPath": ROUTING_DIR, "readOnly": True},
            {"name": "adapters", "mountPath": ADAPTER_DIR},
            KEYS_MOUNT,
            TMP_MOUNT,
        ],
        "securityContext": _read_only_root(),
    }
    init: list[dict[str, Any]] = []
    if spec.base_model.uri:
        # A base model in object storage is copied to the cache once per pod, with the storage
        # layer every LoRAPlane image carries (fsspec; credentials from the storage Secret).
        init.append({
            "name": "fetch-base-model",
            "image": cfg.adapter_sync_image,
            "imagePullPolicy": cfg.image_pull_policy,
            "command": ["python", "-c",
                        "import sys; from loraplane.storage import filesystem; "
                        "fs, path = filesystem(sys.argv[1]); fs.get(path.rstrip('/') + '/', sys.argv[2], recursive=True)",
                        spec.base_model.uri, f"{MODEL_DIR}/base"],
            "envFrom": _storage_env_from(spec),
            "volumeMounts": [{"name": "model-cache", "mountPath": MODEL_DIR}, TMP_MOUNT],
            "securityContext": _read_only_root(),
        })
    pod_spec: dict[str, Any] = {
        "containers": [vllm, sync],
        # Neither vLLM nor adapter sync talks to the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "terminationGracePeriodSeconds": 60,
        "volumes": [
            {"name": "model-cache", "emptyDir": {"sizeLimit": cfg.cache_size}},
            {"name": "adapters", "emptyDir": {"sizeLimit": spec.adapter_storage.size}},
            {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": cfg.shm_size}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            _routing_volume(name),
            keys_volume(name, VLLM_API_KEY),
        ],
    }
    if init:
        pod_spec["initContainers"] = init
    node_selector = dict(spec.resources.node_selector)
    if spec.resources.gpu_type:
        node_selector["nvidia.com/gpu.product"] = spec.resources.gpu_type
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = [t.to_wire() for t in spec.resources.tolerations]
    if spec.resources.gpus:
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = _image_pull_secrets(cfg)
    selector = selector_labels(owner, VLLM)
    meta = child_metadata(owner, vllm_name(name), VLLM)
    deployment_spec: dict[str, Any] = {}
    if not spec.autoscaling.enabled:
        deployment_spec["replicas"] = spec.replicas  # with an HPA the count is the HPA's
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            **deployment_spec,
            "selector": {"matchLabels": selector},
            # GPUs are scarce: replace a pod only after its successor is ready, one at a time.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": meta["labels"]}, "spec": pod_spec},
        },
    }


def build_vllm_service(owner: Mapping[str, Any]) -> dict[str, Any]:
    """A headless Service: the router resolves it to one upstream per vLLM pod and balances itself."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, vllm_name(name), VLLM),
        "spec": {
            "clusterIP": "None",
            "selector": selector_labels(owner, VLLM),
            "ports": [
                {"name": "http", "port": VLLM_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "sync-metrics", "port": SYNC_METRICS_PORT, "targetPort": "sync-metrics", "protocol": "TCP"},
            ],
            "publishNotReadyAddresses": False,
        },
    }


def build_router_deployment(owner: Mapping[str, Any], pool: ServingPool | ChatbotDeploymentSpec,
                            cfg: OperatorConfig) -> dict[str, Any]:
    """The A/B router: per-chatbot split, stickiness, cache, feedback, fair share and per-variant metrics."""
    spec = (pool if isinstance(pool, ServingPool) else serving_pool(pool)).spec
    name = owner["metadata"]["name"]
    namespace = owner["metadata"]["namespace"]
    probe_port = {"port": "http"}
    container = {
        "name": "router",
        "image": allowed_image(spec.router.image, cfg.router_image, cfg, "spec.router.image"),
        "imagePullPolicy": cfg.image_pull_policy,
        "args": [
            "--routing-table", ROUTING_DIR,
            "--upstream-dns", f"{vllm_name(name)}.{namespace}.svc:{VLLM_PORT}",
            "--port", str(ROUTER_PORT),
            "--admin-port", str(ROUTER_ADMIN_PORT),
            "--max-in-flight", str(spec.router.max_in_flight),
            "--queue-size", str(spec.router.queue_size),
            "--signing-key-file", key_file(REQUEST_ID_KEY),
            "--upstream-api-key-file", key_file(VLLM_API_KEY),
        ],
        "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"},
                  {"name": "admin", "containerPort": ROUTER_ADMIN_PORT, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe_port}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", **probe_port}, "periodSeconds": 10, "failureThreshold": 3},
        "volumeMounts": [{"name": "routing", "mountPath": ROUTING_DIR, "readOnly": True}, KEYS_MOUNT],
        "securityContext": _read_only_root(),
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "automountServiceAccountToken": False,  # the router never talks to the Kubernetes API
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [_routing_volume(name), keys_volume(name, REQUEST_ID_KEY, VLLM_API_KEY)],
    }
    if cfg.image_pull_secrets:
        pod_spec["imagePullSecrets"] = _image_pull_secrets(cfg)
    meta = child_metadata(owner, router_name(name), ROUTER)
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(owner, ROUTER)},
        "template": {"metadata": {"labels": meta["labels"]}, "spec": pod_spec},
    }
    if not spec.router.autoscaling.enabled:
        # With an HPA the replica count is the HPA's: leaving it out keeps the operator from fighting it.
        deployment_spec["replicas"] = spec.router.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": deployment_spec}


def build_router_service(owner: Mapping[str, Any]) -> dict[str, Any]:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(owner, router_name(name), ROUTER),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(owner, ROUTER),
            "ports": [{"name": "http", "port": ROUTER_PORT, "targetPort": "http", "protocol": "TCP"},
                      {"name": "admin", "port": ROUTER_ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"}],
        },
    }


def build_pdbs(owner: Mapping[str, Any], pool: ServingPool | ChatbotDeploymentSpec) -> list[dict[str, Any]]:
    """Voluntary evictions (node drains) take one vLLM pod and keep at least one router pod."""
    spec = (pool if isinstance(pool, ServingPool) else serving_pool(pool)).spec
    name = owner["metadata"]["name"]
    out = [{
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": child_metadata(owner, vllm_name(name), VLLM),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(owner, VLLM)}},
    }]
    routers = spec.router.autoscaling.min_replicas if spec.router.autoscaling.enabled else spec.router.replicas
    if routers > 1:
        out.append({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": child_metadata(owner, router_name(name), ROUTER),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": selector_labels(owner, ROUTER)}},
        })
    return out


def build_vllm_hpa(owner: Mapping[str, Any], pool: ServingPool) -> dict[str, Any] | None:
    """The vLLM replicas' HorizontalPodAutoscaler, on vLLM's waiting requests (a custom-metrics adapter serves it)."""
    auto = pool.spec.autoscaling
    if not auto.enabled:
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(owner, vllm_name(name), VLLM),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": vllm_name(name)},
            "minReplicas": auto.min_replicas,
            "maxReplicas": max(auto.max_replicas, auto.min_replicas),
            "metrics": [{
                "type": "Pods",
                "pods": {"metric": {"name": "vllm:num_requests_waiting"},
                         "target": {"type": "AverageValue", "averageValue": str(auto.target_waiting_requests)}},
            }],
        },
    }


def build_router_hpa(owner: Mapping[str, Any], pool: ServingPool | ChatbotDeploymentSpec) -> dict[str, Any] | None:
    """The router's HorizontalPodAutoscaler: on CPU, and on queue depth when a custom-metrics adapter serves it."""
    spec = (pool if isinstance(pool, ServingPool) else serving_pool(pool)).spec
    auto = spec.router.autoscaling
    if not auto.enabled:
        return None
    name = owner["metadata"]["name"]
    metrics: list[dict[str, Any]] = [{
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": auto.target_cpu_utilization}},
    }]
    if auto.target_queue_depth is not None:
        metrics.append({
            "type": "Pods",
            "pods": {
                "metric": {"name": "loraplane_router_queue_depth"},
                "target": {"type": "AverageValue", "averageValue": str(auto.target_queue_depth)},
            },
        })
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(owner, router_name(name), ROUTER),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": router_name(name)},
            "minReplicas": auto.min_replicas,
            "maxReplicas": max(auto.max_replicas, auto.min_replicas),
            "metrics": metrics,
        },
    }


def build_service_monitor(owner: Mapping[str, Any], pool: ServingPool | ChatbotDeploymentSpec) -> dict[str, Any] | None:
    """A prometheus-operator ServiceMonitor scraping the router and the vLLM pods (engine + adapter sync)."""
    spec = (pool if isinstance(pool, ServingPool) else serving_pool(pool)).spec
    if not spec.monitoring.service_monitor:
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": child_metadata(owner, child_name(name, "metrics"), "metrics"),
        "spec": {
            "selector": {"matchLabels": {owner_label(owner["kind"]): label_value(name)}},
            "namespaceSelector": {"matchNames": [owner["metadata"]["namespace"]]},
            "endpoints": [
                # The router's series carry the chatbot's own namespace and chatbot labels: they win over
                # the target's namespace, so a shared pool's series stay apart per chatbot.
                {"port": "admin", "path": "/metrics", "interval": "15s", "honorLabels": True},
                # vLLM's engine metrics (the router is not in front of this port: its Service is headless).
                {"port": "http", "path": "/metrics", "interval": "15s"},
                {"port": "sync-metrics", "path": "/metrics", "interval": "30s"},
            ],
        },
    }


def build_serving_children(
    owner: Mapping[str, Any], spec: ChatbotDeploymentSpec | ModelPoolSpec | ServingPool, cfg: OperatorConfig,
    ranks: Sequence[int | None] = (),
) -> list[dict[str, Any]]:
    """Every serving child of a pool but the routing ConfigMap and the keys Secret.

    `owner` is the ModelPool, or the ChatbotDeployment for its private pool (`spec` its own spec).
    """
    pool = spec if isinstance(spec, ServingPool) else serving_pool(spec)
    children = [
        build_vllm_deployment(owner, pool, cfg, ranks),
        build_vllm_service(owner),
        build_router_deployment(owner, pool, cfg),
        build_router_service(owner),
        *build_pdbs(owner, pool),
        *build_network_policies(owner, VLLM, ROUTER, VLLM_PORT, ROUTER_PORT, SYNC_METRICS_PORT, ROUTER_ADMIN_PORT,
                                cfg.admin_namespaces),
    ]
    for optional in (build_vllm_hpa(owner, pool), build_router_hpa(owner, pool), build_service_monitor(owner, pool)):
        if optional is not None:
            children.append(optional)
    return children
