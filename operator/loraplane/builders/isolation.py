"""What keeps one ChatbotDeployment's serving pods to themselves: its keys Secret and its NetworkPolicies.

- The keys Secret holds vLLM's API key (only the router and adapter sync get it, so nothing
  else may call vLLM's `/v1/*`, its runtime LoRA API included) and the key the routers sign
  request ids with (shared by every router replica). It is generated once: `generated_keys`
  makes fresh random values and the controller creates the Secret only when it is missing.
- NetworkPolicies: only this chatbot's router pods reach vLLM's port; adapter sync's metrics
  port stays open for scraping; routers send only to their vLLM pods and DNS.

Pure functions: owner in, manifests out (the keys are the one random input).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from .common import child_metadata, child_name, selector_labels

KEYS = "keys"
VLLM_API_KEY = "vllm-api-key"
REQUEST_ID_KEY = "request-id-key"
KEYS_DIR = "/var/run/loraplane/keys"


def keys_secret_name(cbd_name: str) -> str:
    return child_name(cbd_name, KEYS)


def generated_keys() -> dict[str, str]:
    return {VLLM_API_KEY: secrets.token_urlsafe(32), REQUEST_ID_KEY: secrets.token_urlsafe(32)}


def build_keys_secret(owner: Mapping[str, Any], keys: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The chatbot's keys Secret (created once, never rewritten: rotating means deleting it)."""
    keys = keys or generated_keys()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(owner, keys_secret_name(owner["metadata"]["name"]), KEYS),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in keys.items()},
    }


def keys_volume(cbd_name: str, *keys: str) -> dict[str, Any]:
    """The keys Secret as a volume holding only `keys` (each a file named after it)."""
    return {"name": KEYS, "secret": {"secretName": keys_secret_name(cbd_name), "defaultMode": 0o440,
                                     "items": [{"key": k, "path": k} for k in keys]}}


def key_file(key: str) -> str:
    return f"{KEYS_DIR}/{key}"


def vllm_api_key_env(cbd_name: str) -> dict[str, Any]:
    """vLLM reads its API key from VLLM_API_KEY; with it set, every /v1/* call needs the key."""
    return {"name": "VLLM_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": keys_secret_name(cbd_name), "key": VLLM_API_KEY}}}


def _admin_ingress(port: int, namespaces: tuple[str, ...]) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}]}
    if namespaces:
        rule["from"] = [{"namespaceSelector": {"matchExpressions": [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)}]}}]
    return rule


_DNS = {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def build_network_policies(owner: Mapping[str, Any], vllm_component: str, router_component: str,
                           vllm_port: int, router_port: int, sync_metrics_port: int,
                           router_admin_port: int | None = None,
                           admin_namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Ingress to vLLM only from this chatbot's routers; router egress only to its vLLM pods and DNS."""
    name = owner["metadata"]["name"]
    vllm = selector_labels(owner, vllm_component)
    router = selector_labels(owner, router_component)
    vllm_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, child_name(name, vllm_component), vllm_component),
        "spec": {
            "podSelector": {"matchLabels": vllm},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": router}}],
                 "ports": [{"protocol": "TCP", "port": vllm_port}]},
                # Adapter sync's /metrics and /readyz: read-only, for Prometheus in any namespace.
                {"ports": [{"protocol": "TCP", "port": sync_metrics_port}]},
            ],
        },
    }
    router_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": child_metadata(owner, child_name(name, router_component), router_component),
        "spec": {
            "podSelector": {"matchLabels": router},
            "policyTypes": ["Ingress", "Egress"],
            # Clients come from anywhere the cluster allows; the router itself is the chatbot's front door.
            "ingress": [{"ports": [{"protocol": "TCP", "port": router_port}]},
                        # /metrics and /pool/residency: for Prometheus and the operator only, where their
                        # namespaces are configured; a shared pool's tenants then cannot read each other's figures.
                        *([_admin_ingress(router_admin_port, admin_namespaces)] if router_admin_port else [])],
            "egress": [
                {"to": [{"podSelector": {"matchLabels": vllm}}], "ports": [{"protocol": "TCP", "port": vllm_port}]},
                _DNS,
            ],
        },
    }
    return [vllm_policy, router_policy]
