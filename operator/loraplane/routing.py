"""The routing table: the one file the operator writes (a ConfigMap) and the router and adapter sync read.

It names the public model, the variants with their weights, the adapters each
vLLM replica must hold, stickiness and cache settings. Both readers reload it
live; a table that fails validation is refused and the last good one stays.

On a shared pool every attached chatbot has its own table (see `pool_routing`):
a table names its chatbot and namespace, and the adapters' names in vLLM carry
both, so no two chatbots' variants can ever share a name upstream.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from .api.chatbotdeployment import SamplingConsent

ROUTING_FILE = "routing.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Variant(_Model):
    """One thing a request can be routed to: an adapter version or the bare base model."""

    # A DNS label, as adapter names are: it names a directory on adapter sync's volume too.
    name: str = Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                      description="Variant name (x-loraplane-variant).")
    weight: int = Field(ge=0, le=100, description="Percent of unpinned requests.")
    adapter_uri: str | None = Field(
        default=None, description="Published adapter prefix; unset means the bare base model."
    )
    sha256: str | None = Field(default=None, description="Expected manifest digest, when known.")


class CacheSettings(_Model):
    enabled: bool = True
    ttl_seconds: float = Field(default=600, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    max_temperature: float = Field(default=0.0, ge=0)


# --- Opt-in traffic sampling (spec.sampling; docs/evaluation.md) ------------------------------------------
class SamplingSettings(_Model):
    """Which requests the router keeps, with their answers, for evaluation; absent: none."""

    rate: float = Field(ge=0, le=1)
    consent: SamplingConsent = SamplingConsent.HEADER
    max_samples: int = Field(default=1000, ge=1, le=10_000)
    retention_seconds: float = Field(default=7 * 86400, gt=0)
# --- end of traffic sampling -------------------------------------------------------------------------------


class RoutingTable(_Model):
    """What routing.yaml holds: one chatbot's routing."""

    model: str = Field(min_length=1, description="Public model name clients ask for (the chatbot's served name).")
    # Who the table belongs to. `chatbot` unset means the served name is the chatbot's name.
    namespace: str = Field(default="default", min_length=1, max_length=63,
                           pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    chatbot: str | None = Field(default=None, min_length=1, max_length=253)
    # Fair-share weight of this chatbot on a shared pool (its `spec.priority`).
    share: int = Field(default=1, ge=1, le=1000)
    # SHA-256 (hex) of each API key this chatbot accepts; empty: no per-chatbot key is asked.
    # Keys are high-entropy secrets, so their digests can sit in a ConfigMap; the keys never do.
    api_key_sha256: list[str] = Field(default_factory=list)
    base_model: str = Field(min_length=1, description="Name vLLM serves the base model under.")
    variants: list[Variant] = Field(min_length=1)
    stickiness_header: str | None = None
    allow_pinning: bool = True
    cache: CacheSettings = Field(default_factory=CacheSettings)
    # Variants loaded in vLLM but taking no traffic (an old stable in its grace period).
    retained: list[Variant] = Field(default_factory=list)
    price_per_gpu_hour: float | None = None
    # The cost estimate turns usage tokens into GPU-seconds: completion tokens plus prompt tokens
    # times prompt_token_weight (prefill is far cheaper per token), divided by the tokens one GPU
    # generates per second at the pool's usual batch size.
    gpu_tokens_per_second: float = Field(default=1000.0, gt=0)
    prompt_token_weight: float = Field(default=0.1, ge=0)
    sampling: SamplingSettings | None = None  # opt-in traffic sampling (the block above)

    @field_validator("variants")
    @classmethod
    def _unique(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique: {', '.join(dupes)}")
        return variants

    @model_validator(mode="after")
    def _weights(self) -> RoutingTable:
        total = sum(v.weight for v in self.variants)
        if total != 100:
            raise ValueError(f"variant weights must sum to 100, got {total}")
        return self

    @property
    def chatbot_name(self) -> str:
        return self.chatbot or self.model

    @property
    def key(self) -> str:
        """`<namespace>.<chatbot>`: the table's identity on a pool (and its file's stem)."""
        return f"{self.namespace}.{self.chatbot_name}"

    def variant(self, name: str) -> Variant | None:
        return next((v for v in [*self.variants, *self.retained] if v.name == name), None)

    def lora_name(self, variant: Variant) -> str:
        """The adapter's name in vLLM: `<namespace>/<chatbot>/<variant>`, unique on a shared pool.

        None of the three parts can hold a `/`, so two chatbots' names never collide.
        """
        return f"{self.namespace}/{self.chatbot_name}/{variant.name}"

    def adapter_dir(self, variant: Variant) -> str:
        """The adapter's directory below adapter sync's volume (the same three parts)."""
        return self.lora_name(variant)

    def upstream_model(self, variant: Variant) -> str:
        """The model name to send to vLLM: the LoRA name of an adapter variant, else the base model."""
        return self.lora_name(variant) if variant.adapter_uri else self.base_model

    def adapters(self) -> list[Variant]:
        """Every adapter that must be loaded in vLLM (routed or retained)."""
        return [v for v in [*self.variants, *self.retained] if v.adapter_uri]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(by_alias=True, exclude_none=True, mode="json"), sort_keys=False)


def load_routing_table(path: str | Path) -> RoutingTable:
    """Parse and validate a routing table file; raises ValueError with the reason."""
    text = Path(path).read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return RoutingTable.model_validate(data)
