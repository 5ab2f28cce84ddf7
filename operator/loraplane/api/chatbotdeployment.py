"""The ChatbotDeployment API: adapter versions served on one vLLM pool behind a canarying router."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .base import (
    SERVICE_NAME_RULE,
    ApiModel,
    Condition,
    DnsLabel,
    Duration,
    LabelValue,
    ObjectMeta,
    SecretRef,
    StatusModel,
    Toleration,
    Uri,
    cel,
)
from .states import ChatbotPhase, RolloutPhase

BASE_VARIANT = "base"


class TokenSecretRef(ApiModel):
    """The key of a Secret holding a Hugging Face token (only that key reaches the pod, as HF_TOKEN)."""

    name: DnsLabel = Field(description="Name of the Secret.")
    key: str = Field(default="HF_TOKEN", min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
                     description="Key within the Secret.")


class ServedBaseModel(ApiModel):
    """The base model every adapter of this chatbot was trained on."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("has(self.name) != has(self.uri)", "baseModel needs exactly one of name or uri"),
            ]
        }
    }

    name: str | None = Field(default=None, min_length=1, max_length=256, description="Hugging Face Hub id.")
    uri: Uri | None = Field(default=None, description="Local directory or fsspec URI of a Hugging Face model directory.")
    gguf_file: str | None = Field(default=None, max_length=256, description="GGUF file name inside uri.")
    token_secret_ref: TokenSecretRef | None = Field(default=None, description="Hub token for gated models.")


class FineTuneJobRef(ApiModel):
    """An adapter taken from a FineTuneJob of the same namespace."""

    name: DnsLabel = Field(description="Name of the FineTuneJob.")
    version: str | None = Field(
        default=None,
        pattern=r"^v[0-9]+$",
        description="A pinned version (v3); unset follows the latest accepted version.",
    )


class AdapterRef(ApiModel):
    """One adapter version served by the pool."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("has(self.uri) != has(self.fineTuneJobRef)", "an adapter needs exactly one of uri or fineTuneJobRef"),
            ]
        }
    }

    name: DnsLabel = Field(description="Variant name, used in traffic, metrics and the x-loraplane-variant header.")
    uri: Uri | None = Field(default=None, description="Prefix of a published adapter (a directory with manifest.json).")
    fine_tune_job_ref: FineTuneJobRef | None = Field(default=None, description="Take the adapter from a FineTuneJob.")


class TrafficWeight(ApiModel):
    """Share of requests sent to one variant."""

    adapter: DnsLabel = Field(description='An adapter name, or "base" for the bare base model.')
    weight: int = Field(ge=0, le=100, description="Percent of requests.")


class CanaryAnalysis(ApiModel):
    """Limits a canary must stay within at every step; missing figures mean no decision yet."""

    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Highest share of 5xx answers.")
    max_p95_latency_seconds: float | None = Field(default=None, gt=0, description="Highest absolute p95 latency.")
    max_latency_increase: float | None = Field(
        default=None, ge=0, description="Highest p95 latency rise relative to stable (0.2 = 20%)."
    )
    min_feedback_delta: float | None = Field(
        default=None, ge=-5, le=5, description="Lowest mean feedback score minus stable's (e.g. -0.1)."
    )
    min_feedback_count: int = Field(default=10, ge=0, description="Feedback scores needed before feedback is judged.")
    probe_set_uri: Uri | None = Field(
        default=None, description="JSONL of prompt/completion probes sent through the router to the canary."
    )
    min_probe_exact_match: float | None = Field(default=None, ge=0, le=1, description="Lowest probe exact match.")
    min_human_win_rate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Lowest win rate of the canary in a blind human evaluation attached to its adapter "
        "(`loraplane eval results --attach`); promotion waits until one with enough ratings exists.",
    )
    prometheus_url: Uri | None = Field(
        default=None, description="Prometheus query API; unset reads the router's own /metrics."
    )


class RolloutSpec(ApiModel):
    """How a new adapter version reaches users."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.steps.isSorted() && self.steps.all(s, self.steps.filter(t, t == s).size() == 1)",
                    "rollout.steps must be strictly increasing",
                ),
            ]
        }
    }

    auto_canary: bool = Field(default=False, description="A new version of a referenced FineTuneJob becomes the canary.")
    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary weights, strictly increasing, at most 100; the last step promotes.",
        json_schema_extra={"items": {"type": "integer", "minimum": 1, "maximum": 100}},
    )
    interval: Duration = Field(default="10m", description="Time spent at each step before it is judged.")
    min_requests: int = Field(default=100, ge=0, description="Canary requests needed at a step before it is judged.")
    analysis: CanaryAnalysis = Field(default_factory=CanaryAnalysis, description="Analysis thresholds.")
    paused: bool = Field(default=False, description="Hold the canary at its current step.")
    promotion_grace_period: Duration = Field(
        default="5m", description="How long the old stable stays loaded after a promotion."
    )


class StickinessSpec(ApiModel):
    """Keep a user on one variant."""

    header: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9-]+$", max_length=64, description="Request header naming the user."
    )


class CacheSpec(ApiModel):
    """Response cache for deterministic requests, per variant."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [cel("duration(self.ttl) > duration('0s')", "cache.ttl must be longer than 0s")]
        }
    }

    enabled: bool = Field(default=True, description="Cache deterministic answers.")
    ttl: Duration = Field(default="10m", description="How long an answer stays cached (more than 0s).")

    @field_validator("ttl")
    @classmethod
    def _positive(cls, ttl: str) -> str:
        if not any(c in "123456789" for c in ttl):
            raise ValueError("cache.ttl must be longer than 0s")
        return ttl
    max_entries: int = Field(default=10_000, ge=1, le=10_000_000, description="Entries per router replica.")
    max_temperature: float = Field(default=0.0, ge=0, le=2, description="Requests up to this temperature are cacheable.")


class VllmSpec(ApiModel):
    """vLLM engine settings."""

    image: str | None = Field(default=None, max_length=512, description="vLLM image; unset uses the operator's default.")
    gpu_memory_utilization: float = Field(default=0.9, ge=0.1, le=0.99, description="--gpu-memory-utilization.")
    max_model_len: int = Field(default=4096, ge=128, le=1_048_576, description="--max-model-len.")
    max_loras: int | None = Field(
        default=None, ge=1, le=64, description="--max-loras; unset is derived from the adapters."
    )
    max_cpu_loras: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="--max-cpu-loras: adapters kept in host memory beyond the GPU slots; unset is vLLM's "
        "default (maxLoras).",
    )
    max_lora_rank: Literal[8, 16, 32, 64, 128, 256, 320, 512] | None = Field(
        default=None, description="--max-lora-rank; unset is derived from the adapters (16 when unknown)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(default="auto", description="--dtype.")
    extra_args: list[str] = Field(default_factory=list, max_length=64, description="More vLLM arguments.")


class AutoscalingSpec(ApiModel):
    """HorizontalPodAutoscaler of the router."""

    enabled: bool = Field(default=False, description="Create an HPA for the router.")
    min_replicas: int = Field(default=2, ge=1, le=100, description="Lowest router replicas.")
    max_replicas: int = Field(default=10, ge=1, le=1000, description="Highest router replicas.")
    target_cpu_utilization: int = Field(default=70, ge=1, le=100, description="Target CPU utilisation percent.")
    target_queue_depth: int | None = Field(
        default=None, ge=1, description="Target mean queue depth per router pod (needs a custom-metrics adapter)."
    )


class RouterSpec(ApiModel):
    """The A/B router in front of the pool."""

    image: str | None = Field(default=None, max_length=512, description="Router image; unset uses the operator's default.")
    replicas: int = Field(default=2, ge=1, le=1000, description="Router replicas.")
    queue_size: int = Field(default=64, ge=1, le=100_000, description="Requests queued per vLLM replica before 429.")
    max_in_flight: int = Field(default=32, ge=1, le=10_000, description="Requests sent at once to one vLLM replica.")
    allow_pinning: bool = Field(default=True, description="A request naming a variant explicitly is sent to it.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Router autoscaling.")


class SamplingConsent(StrEnum):
    """Which requests may be sampled."""

    HEADER = "Header"  # only requests whose client sent x-loraplane-sample-consent: yes
    DECLARED = "Declared"  # the chatbot's owner declares every user consented (e.g. in the terms of use)


class TrafficSamplingSpec(ApiModel):
    """Opt-in sampling of prompt/answer pairs from live traffic, for evaluation sessions and preferences."""

    enabled: bool = Field(default=False, description="Keep a sample of requests and their answers.")
    rate: float = Field(default=0.05, ge=0, le=1, description="Share of consenting requests kept.")
    consent: SamplingConsent = Field(default=SamplingConsent.HEADER, description="Header, or Declared.")
    max_samples: int = Field(default=1000, ge=1, le=10_000, description="Samples kept per router replica.")
    retention: Duration = Field(default="168h", description="Samples older than this are dropped.")


class ServingResources(ApiModel):
    """Resources of each vLLM replica."""

    gpus: int = Field(default=1, ge=0, le=16, description="nvidia.com/gpu per vLLM pod (tensor parallel when > 1).")
    gpu_type: LabelValue | None = Field(default=None, description="nvidia.com/gpu.product to require.")
    cpu: str | None = Field(default=None, pattern=r"^[0-9]+(\.[0-9]+)?m?$", description="CPU request.")
    memory: str | None = Field(
        default=None, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$", description="Memory request."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels to require.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32, description="Pod tolerations.")
    price_per_gpu_hour: float | None = Field(default=None, ge=0, description="For estimated cost per request.")


class MonitoringSpec(ApiModel):
    """Prometheus Operator integration."""

    service_monitor: bool = Field(default=False, description="Create a ServiceMonitor for router and vLLM.")


# A model name users send (OpenAI `model`): no ':' so "<served-name>:<variant>" pins stay unambiguous.
SERVED_NAME_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$"
# Fields a chatbot on a pool takes from the pool: refused on the chatbot (CEL and pydantic say the same).
POOL_OWNED_FIELDS = ("baseModel", "vllm", "resources")
POOL_REF_RULE = "has(self.poolRef) != has(self.baseModel)"
POOL_REF_MESSAGE = "a ChatbotDeployment needs exactly one of baseModel or poolRef"
POOL_FIELDS_RULE = "!has(self.poolRef) || (!has(self.vllm) && !has(self.resources))"
POOL_FIELDS_MESSAGE = "a ChatbotDeployment with poolRef takes baseModel, vllm and resources from its ModelPool"


class PoolRef(ApiModel):
    """The ModelPool a chatbot is served on."""

    name: DnsLabel = Field(description="Name of the ModelPool.")
    namespace: DnsLabel | None = Field(
        default=None, description="Namespace of the ModelPool; unset is the chatbot's own. The pool's "
        "allowedNamespaces must admit the chatbot's namespace."
    )


class ApiKeySecretRef(ApiModel):
    """A Secret of the chatbot's namespace holding its API keys."""

    name: DnsLabel = Field(description="Name of the Secret.")
    key: str | None = Field(
        default=None, min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="One key of the Secret; unset accepts the value of every key (so keys can be rotated).",
    )


class AuthSpec(ApiModel):
    """Per-chatbot API keys: the router accepts only these keys for this chatbot's served name."""

    api_key_secret_ref: ApiKeySecretRef | None = Field(
        default=None,
        description="Secret with the accepted keys (sent as Authorization: Bearer <key>); only their SHA-256 "
        "digests leave the Secret.",
    )


class ChatbotDeploymentSpec(ApiModel):
    """Desired state of a ChatbotDeployment."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel(
                    "self.adapters.all(a, self.adapters.filter(b, b.name == a.name).size() == 1)",
                    "adapter names must be unique",
                ),
                cel("!self.adapters.exists(a, a.name == 'base')", 'adapter name "base" is reserved for the base model'),
                cel(
                    "!has(self.traffic) || self.traffic.size() == 0 || self.traffic.map(t, t.weight).sum() == 100",
                    "traffic weights must sum to 100",
                ),
                cel(
                    "!has(self.traffic) || self.traffic.all(t, t.adapter == 'base' || "
                    "self.adapters.exists(a, a.name == t.adapter))",
                    'every traffic entry must name an adapter of spec.adapters or "base"',
                ),
                cel(
                    "!has(self.traffic) || self.traffic.all(t, self.traffic.filter(u, u.adapter == t.adapter).size() == 1)",
                    "each variant may appear once in traffic",
                ),
                cel(POOL_REF_RULE, POOL_REF_MESSAGE),
                cel(POOL_FIELDS_RULE, POOL_FIELDS_MESSAGE),
            ]
        }
    }

    base_model: ServedBaseModel | None = Field(
        default=None, description="The base model of its private pool; unset with poolRef (the pool's)."
    )
    pool_ref: PoolRef | None = Field(
        default=None,
        description="Serve on this ModelPool instead of a private pool; base model, vLLM and resources then come "
        "from the pool.",
    )
    served_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=SERVED_NAME_PATTERN,
        description="The model name its users send; unset is the ChatbotDeployment's name. Unique on a pool: "
        "the older chatbot keeps a contested name.",
    )
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Per-chatbot API keys.")
    priority: int = Field(
        default=1, ge=1, le=1000, description="Fair-share weight on a shared pool (2 gets twice the share of 1)."
    )
    adapters: list[AdapterRef] = Field(
        default_factory=list, max_length=32, description="Adapter versions loaded into the pool."
    )
    traffic: list[TrafficWeight] = Field(
        default_factory=list,
        max_length=33,
        description="Static split; weights sum to 100. During a canary the rollout moves the weights.",
    )
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="Canary rollout.")
    stickiness: StickinessSpec = Field(default_factory=StickinessSpec, description="Sticky cohorts.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Response cache.")
    replicas: int = Field(default=1, ge=0, le=1000, description="vLLM replicas.")
    vllm: VllmSpec = Field(default_factory=VllmSpec, description="vLLM engine settings.")
    router: RouterSpec = Field(default_factory=RouterSpec, description="Router settings.")
    resources: ServingResources = Field(default_factory=ServingResources, description="vLLM pod resources.")
    storage_secret_ref: SecretRef | None = Field(
        default=None, description="Secret with object-storage credentials for adapter sync."
    )
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Prometheus integration.")
    sampling: TrafficSamplingSpec = Field(
        default_factory=TrafficSamplingSpec, description="Opt-in sampling of live prompts and answers."
    )

    @model_validator(mode="after")
    def _pool_or_private(self) -> ChatbotDeploymentSpec:
        # The same two rules as the CEL ones, for objects read without the API server (local mode, CLI).
        if (self.pool_ref is None) == (self.base_model is None):
            raise ValueError(POOL_REF_MESSAGE)
        if self.pool_ref is not None and {"vllm", "resources"} & self.model_fields_set:
            raise ValueError(POOL_FIELDS_MESSAGE)
        return self


class AnalysisResult(StatusModel):
    """One judged metric of the last canary analysis."""

    metric: str = Field(max_length=64, description="errorRate, p95Latency, latencyIncrease, feedbackDelta, probeExactMatch, humanWinRate.")
    stable: float | None = Field(default=None, description="Figure of the stable variant.")
    canary: float | None = Field(default=None, description="Figure of the canary.")
    limit: float | None = Field(default=None, description="Threshold it was judged against.")
    passed: bool | None = Field(default=None, description="True passed, False failed, unset: not enough data.")
    message: str | None = Field(default=None, max_length=512, description="Detail.")


class ResolvedAdapter(StatusModel):
    """An adapter as the operator resolved it."""

    name: str = Field(max_length=63, description="Variant name.")
    uri: str | None = Field(default=None, max_length=2048, description="Resolved adapter prefix.")
    version: str | None = Field(default=None, max_length=63, description="Resolved version.")
    sha256: str | None = Field(default=None, max_length=80, description="Manifest digest.")
    ready: bool = Field(default=False, description="Published, accepted and resolvable.")
    message: str | None = Field(default=None, max_length=512, description="Why it is not ready.")


class RolloutStatus(StatusModel):
    """The rollout's own state: the canary state machine reads this back, never the display phase."""

    state: RolloutPhase = Field(default=RolloutPhase.IDLE, description="Idle, Running or RolledBack.")
    stable: str | None = Field(default=None, max_length=63, description="Stable variant.")
    canary: str | None = Field(default=None, max_length=63, description="Canary variant (kept after a rollback).")
    canary_weight: int = Field(default=0, ge=0, le=100, description="Canary weight of the current step.")
    step: int | None = Field(default=None, ge=0, description="Index of the current step.")
    step_started_at: datetime | None = Field(
        default=None, description="When the analysis window of the step began; unset until the metrics answer."
    )
    baseline: dict[str, Any] | None = Field(
        default=None,
        description="Router counters when the step began (the analysis window starts there).",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )


class ChatbotDeploymentStatus(StatusModel):
    """Observed state of a ChatbotDeployment."""

    phase: ChatbotPhase | None = Field(default=None, description="Rollout phase.")
    observed_generation: int | None = Field(default=None, ge=0, description="Generation the status describes.")
    conditions: list[Condition] = Field(default_factory=list, max_length=16, description="kstatus conditions.")
    message: str | None = Field(default=None, max_length=4096, description="One line on the current state.")
    stable: str | None = Field(default=None, max_length=63, description="Stable variant.")
    canary: str | None = Field(default=None, max_length=63, description="Canary variant, when one runs.")
    canary_weight: int | None = Field(default=None, ge=0, le=100, description="Current canary weight.")
    weights: dict[str, int] = Field(default_factory=dict, description="Current weight of each variant.")
    step: int | None = Field(default=None, ge=0, description="Index of the current canary step.")
    step_started_at: datetime | None = Field(default=None, description="When the current step began.")
    analysis: list[AnalysisResult] = Field(default_factory=list, max_length=16, description="Last analysis.")
    adapters: list[ResolvedAdapter] = Field(default_factory=list, max_length=32, description="Resolved adapters.")
    replicas: int | None = Field(default=None, ge=0, description="Desired vLLM replicas.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready vLLM replicas.")
    endpoint: str | None = Field(default=None, max_length=512, description="OpenAI-compatible base URL.")
    retiring: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=32,
        description="Old stable variants kept loaded until their grace period ends.",
        json_schema_extra={"items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
    )
    step_baseline: dict[str, Any] | None = Field(
        default=None,
        description="Router counters when the current step began (a copy of rollout.baseline).",
        json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    )
    rollout: RolloutStatus | None = Field(default=None, description="The rollout's state machine.")


class ChatbotDeployment(ApiModel):
    """Serves adapter versions of one base model on a shared vLLM pool, with A/B splits and canaries."""

    model_config = {
        "extra": "ignore",
        "json_schema_extra": {"x-kubernetes-validations": [
            cel(SERVICE_NAME_RULE, "a ChatbotDeployment's name must start with a letter and hold no dots: "
                                   "its Services are named after it"),
        ]},
    }
    kind_name: ClassVar[str] = "ChatbotDeployment"
    plural: ClassVar[str] = "chatbotdeployments"
    singular: ClassVar[str] = "chatbotdeployment"
    short_names: ClassVar[list[str]] = ["cbd"]
    printer_columns: ClassVar[list[dict[str, Any]]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Stable", "type": "string", "jsonPath": ".status.stable"},
        {"name": "Canary", "type": "string", "jsonPath": ".status.canary"},
        {"name": "Weight", "type": "integer", "jsonPath": ".status.canaryWeight"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]

    api_version: Literal["loraplane.io/v1alpha1"] = "loraplane.io/v1alpha1"
    kind: Literal["ChatbotDeployment"] = "ChatbotDeployment"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ChatbotDeploymentSpec
    status: ChatbotDeploymentStatus | None = None
