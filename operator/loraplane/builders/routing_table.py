"""ChatbotDeployment + resolved adapters + current weights -> its routing table, and the pool's ConfigMap.

A pool's routing ConfigMap (`<pool>-routing`; a private pool's: `<chatbot>-routing`) holds
one key per accepted chatbot, `<namespace>.<chatbot>.yaml` (`pool_routing.table_file`).
Each chatbot's reconcile writes its own key with a JSON merge patch that names only that
key, so chatbots never overwrite each other; the pool's reconcile creates the ConfigMap
and removes the keys of chatbots that are gone or no longer accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.base import parse_duration
from ..api.chatbotdeployment import BASE_VARIANT, ChatbotDeploymentSpec, ServedBaseModel
from ..pool_routing import table_file
from ..routing import CacheSettings, RoutingTable, SamplingSettings, Variant
from .common import child_metadata, child_name

COMPONENT = "routing"


@dataclass(frozen=True)
class ServedVariant:
    """A variant the pool can serve: an adapter version (uri set) or the bare base model."""

    name: str
    uri: str | None = None
    sha256: str | None = None
    lora_rank: int | None = None


def routing_configmap_name(cbd_name: str) -> str:
    return child_name(cbd_name, "routing")


def served_base_model(base_model: ServedBaseModel | ChatbotDeploymentSpec, owner_name: str) -> str:
    """The name vLLM serves the base model under (its Hub id, or `<pool owner>-base` for a URI)."""
    if isinstance(base_model, ChatbotDeploymentSpec):
        if base_model.base_model is None:
            raise ValueError("a ChatbotDeployment with poolRef serves its pool's base model")
        base_model = base_model.base_model
    return base_model.name or f"{owner_name}-base"


def served_name(spec: ChatbotDeploymentSpec, cbd_name: str) -> str:
    """The model name a chatbot's users send."""
    return spec.served_name or cbd_name


@dataclass(frozen=True)
class TableOwner:
    """Whose table it is on the pool, and what only the operator can read for it."""

    namespace: str = "default"
    base_model: str | None = None  # the pool's served base-model name; unset: the chatbot's private pool's
    api_key_sha256: tuple[str, ...] = ()


def build_routing_table(
    cbd_name: str,
    spec: ChatbotDeploymentSpec,
    variants: Sequence[ServedVariant],
    weights: Mapping[str, int],
    retained: Sequence[ServedVariant] = (),
    owner: TableOwner = TableOwner(),
) -> RoutingTable:
    """The routing table: every servable variant (weight 0 when it takes no share), plus retained ones.

    Raises ValueError when the weights name a variant that cannot be served or do not sum to 100.
    """
    by_name = {v.name: v for v in variants}
    by_name.setdefault(BASE_VARIANT, ServedVariant(BASE_VARIANT))
    unknown = sorted(n for n, w in weights.items() if w > 0 and n not in by_name)
    if unknown:
        raise ValueError(f"weights name variants that cannot be served: {', '.join(unknown)}")
    rows = [
        Variant(name=v.name, weight=int(weights.get(v.name, 0)), adapter_uri=v.uri, sha256=v.sha256)
        for v in by_name.values()
        if v.name != BASE_VARIANT or weights.get(BASE_VARIANT, 0) > 0 or v.name in weights
    ]
    if not rows:
        rows = [Variant(name=BASE_VARIANT, weight=100)]
    routed = {r.name for r in rows}
    return RoutingTable(
        model=served_name(spec, cbd_name),
        namespace=owner.namespace,
        chatbot=cbd_name,
        share=spec.priority,
        api_key_sha256=list(owner.api_key_sha256),
        base_model=owner.base_model or served_base_model(spec, cbd_name),
        variants=rows,
        stickiness_header=spec.stickiness.header,
        allow_pinning=spec.router.allow_pinning,
        cache=CacheSettings(
            enabled=spec.cache.enabled,
            ttl_seconds=parse_duration(spec.cache.ttl).total_seconds(),
            max_entries=spec.cache.max_entries,
            max_temperature=spec.cache.max_temperature,
        ),
        retained=[Variant(name=r.name, weight=0, adapter_uri=r.uri, sha256=r.sha256)
                  for r in retained if r.uri and r.name not in routed],
        price_per_gpu_hour=spec.resources.price_per_gpu_hour,
        sampling=sampling_settings(spec),
    )


def sampling_settings(spec: ChatbotDeploymentSpec) -> SamplingSettings | None:
    """spec.sampling as the router reads it; None while it is off."""
    s = spec.sampling
    if not s.enabled:
        return None
    return SamplingSettings(rate=s.rate, consent=s.consent, max_samples=s.max_samples,
                            retention_seconds=parse_duration(s.retention).total_seconds())


def build_routing_configmap(owner: Mapping[str, Any], table: RoutingTable | None = None) -> dict[str, Any]:
    """The pool's routing ConfigMap the router and adapter sync mount as a directory and reload live.

    A private pool's holds its one chatbot's table; a ModelPool's is created empty (chatbots add their keys).
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(owner, routing_configmap_name(owner["metadata"]["name"]), COMPONENT),
        "data": {table_file(table.namespace, table.chatbot_name): table.to_yaml()} if table else {},
    }


def table_patch(table: RoutingTable) -> dict[str, Any]:
    """The merge patch a chatbot writes its own key of a shared pool's ConfigMap with."""
    return {"data": {table_file(table.namespace, table.chatbot_name): table.to_yaml()}}


def removal_patch(keys: Sequence[str]) -> dict[str, Any]:
    """The merge patch that removes these chatbots' keys (null deletes a key in a JSON merge patch)."""
    return {"data": dict.fromkeys(keys)}
