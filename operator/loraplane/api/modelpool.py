"""The ModelPool API: one base model on N vLLM replicas behind one router, shared by many ChatbotDeployments."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from .base import (
    SERVICE_NAME_RULE,
    ApiModel,
    Condition,
    DnsLabel,
    LabelSelector,
    ObjectMeta,
    SecretRef,
    StatusModel,
    cel,
)
from .chatbotdeployment import (
    MonitoringSpec,
    RouterSpec,
    ServedBaseModel,
    ServingResources,
    VllmSpec,
)
from .states import NamespacesFrom

# A Kubernetes quantity of bytes (emptyDir sizeLimit).
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"


class AllowedNamespaces(ApiModel):
    """Which namespaces may attach ChatbotDeployments, as a Gateway API listener's allowedRoutes.namespaces."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("has(self.selector) == (has(self.from) && self.from == 'Selector')",
                    "allowedNamespaces.selector is needed by, and read only with, from: Selector"),
            ]
        }
    }

    from_: NamespacesFrom = Field(
        default=NamespacesFrom.SAME,
        alias="from",
        description="Same: only the pool's namespace; All: every namespace; Selector: namespaces whose labels "
        "match selector.",
    )
    selector: LabelSelector | None = Field(default=None, description="Namespace labels, for from: Selector.")


class AdapterStorageSpec(ApiModel):
    """The local volume of each vLLM pod that holds verified adapter copies (LRU on disk beyond it)."""

    size: str = Field(
        default="20Gi",
        pattern=QUANTITY_PATTERN,
        description="sizeLimit of the adapters volume; adapter sync keeps what fits and evicts the least "
        "recently used copy (after unregistering it) when it is full.",
    )


class PoolAutoscalingSpec(ApiModel):
    """HorizontalPodAutoscaler of the vLLM replicas, on vLLM's waiting-requests gauge."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("self.minReplicas <= self.maxReplicas", "autoscaling.minReplicas must not exceed maxReplicas"),
            ]
        }
    }

    enabled: bool = Field(default=False, description="Create an HPA for the vLLM Deployment.")
    min_replicas: int = Field(default=1, ge=1, le=1000, description="Lowest vLLM replicas.")
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Highest vLLM replicas.")
    target_waiting_requests: int = Field(
        default=8,
        ge=1,
        le=10_000,
        description="Target mean vllm:num_requests_waiting per replica (needs a custom-metrics adapter).",
    )


class InferencePoolSettings(ApiModel):
    """The Gateway API Inference Extension InferencePool emitted for this pool, where the cluster serves one."""

    enabled: bool = Field(
        default=True, description="Emit an inference.networking.k8s.io/v1 InferencePool selecting the vLLM pods."
    )
    endpoint_picker_name: DnsLabel | None = Field(
        default=None, description="Service of the Endpoint Picker (EPP) the gateway asks; unset: <pool>-epp."
    )
    endpoint_picker_port: int = Field(default=9002, ge=1, le=65535, description="Port of the Endpoint Picker.")
    failure_mode: Literal["FailOpen", "FailClose"] = Field(
        default="FailClose", description="What the gateway does when the Endpoint Picker does not answer."
    )


class ModelPoolSpec(ApiModel):
    """Desired state of a ModelPool."""

    base_model: ServedBaseModel = Field(description="The base model every attached chatbot's adapters were trained on.")
    replicas: int = Field(default=1, ge=0, le=1000, description="vLLM replicas (ignored while autoscaling is on).")
    autoscaling: PoolAutoscalingSpec = Field(default_factory=PoolAutoscalingSpec, description="vLLM autoscaling.")
    vllm: VllmSpec = Field(
        default_factory=VllmSpec,
        description="vLLM engine settings: maxLoras GPU slots, maxCpuLoras host cache, maxLoraRank, maxModelLen.",
    )
    resources: ServingResources = Field(
        default_factory=ServingResources, description="vLLM pod resources; gpus > 1 is tensor parallel."
    )
    adapter_storage: AdapterStorageSpec = Field(
        default_factory=AdapterStorageSpec, description="Local adapter volume of each vLLM pod."
    )
    router: RouterSpec = Field(default_factory=RouterSpec, description="The router in front of the pool.")
    allowed_namespaces: AllowedNamespaces = Field(
        default_factory=AllowedNamespaces, description="Namespaces whose ChatbotDeployments may attach."
    )
    storage_secret_ref: SecretRef | None = Field(
        default=None, description="Secret with object-storage credentials for adapter sync (pool's namespace)."
    )
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Prometheus integration.")
    inference_pool: InferencePoolSettings = Field(
        default_factory=InferencePoolSettings, description="Gateway API Inference Extension integration."
    )


class AttachedChatbot(StatusModel):
    """A ChatbotDeployment that names this pool in its poolRef."""

    namespace: str = Field(max_length=63, description="Namespace of the ChatbotDeployment.")
    name: str = Field(max_length=63, description="Name of the ChatbotDeployment.")
    served_name: str = Field(max_length=253, description="The model name its users send.")
    accepted: bool = Field(description="Routed by the pool; false: see reason.")
    reason: str = Field(default="", max_length=64, description="Accepted, NotAllowedByPool or NameConflict.")
    adapters: int = Field(default=0, ge=0, description="Adapters of this chatbot registered on the pool.")


class ReplicaResidency(StatusModel):
    """What one vLLM replica holds, as the router reads it from vLLM."""

    url: str = Field(max_length=512, description="The replica's vLLM URL.")
    healthy: bool = Field(default=False, description="The router's health check passes.")
    registered: list[str] = Field(default_factory=list, max_length=4096, description="LoRA names vLLM lists.")
    running: list[str] = Field(default_factory=list, max_length=4096, description="LoRAs of running requests.")
    waiting: list[str] = Field(default_factory=list, max_length=4096, description="LoRAs of waiting requests.")


class ModelPoolStatus(StatusModel):
    """Observed state of a ModelPool."""

    observed_generation: int | None = Field(default=None, ge=0, description="Generation the status describes.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="kstatus conditions.")
    message: str | None = Field(default=None, max_length=4096, description="One line on the current state.")
    replicas: int | None = Field(default=None, ge=0, description="Desired vLLM replicas.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready vLLM replicas.")
    attached_chatbots: int | None = Field(default=None, ge=0, description="Accepted ChatbotDeployments.")
    registered_adapters: int | None = Field(default=None, ge=0, description="Adapters in the pool's routing.")
    chatbots: list[AttachedChatbot] = Field(
        default_factory=list, max_length=1000, description="Every ChatbotDeployment naming this pool."
    )
    residency: list[ReplicaResidency] = Field(
        default_factory=list, max_length=1000, description="Which replica holds which adapter."
    )
    endpoint: str | None = Field(default=None, max_length=512, description="In-cluster URL of the pool's router.")


class ModelPool(ApiModel):
    """One base model served by N vLLM replicas behind one router, shared by the ChatbotDeployments attached to it."""

    model_config = {
        "extra": "ignore",
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(SERVICE_NAME_RULE, "a ModelPool's name must start with a letter and hold no dots: "
                                   "its Services are named after it"),
        ]},
    }
    kind_name: ClassVar[str] = "ModelPool"
    plural: ClassVar[str] = "modelpools"
    singular: ClassVar[str] = "modelpool"
    short_names: ClassVar[list[str]] = ["mpool"]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas"},
        {"name": "Chatbots", "type": "integer", "jsonPath": ".status.attachedChatbots"},
        {"name": "Adapters", "type": "integer", "jsonPath": ".status.registeredAdapters"},
        {"name": "Base", "type": "string", "jsonPath": ".spec.baseModel.name", "priority": 1},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: Literal["loraplane.io/v1alpha1"] = "loraplane.io/v1alpha1"
    kind: Literal["ModelPool"] = "ModelPool"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ModelPoolSpec
    status: ModelPoolStatus | None = None
