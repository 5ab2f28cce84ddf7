"""A ModelPool's Gateway API Inference Extension InferencePool (inference.networking.k8s.io/v1).

Emitted only where the cluster serves that API. It selects the pool's vLLM pods on
vLLM's port, so a GIE-capable gateway (with its Endpoint Picker) can front the pool
directly; our router keeps what is per chatbot (split, stickiness, canary, tenancy,
fair share) and is the front door LoRAPlane documents (docs/serving.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..api.modelpool import ModelPoolSpec
from .common import child_metadata, child_name, selector_labels

GROUP = "inference.networking.k8s.io"
API_VERSION = f"{GROUP}/v1"
KIND = "InferencePool"
PLURAL = "inferencepools"
COMPONENT = "inference-pool"


def build_inference_pool(owner: Mapping[str, Any], spec: ModelPoolSpec, vllm_component: str,
                         vllm_port: int) -> dict[str, Any] | None:
    """The InferencePool selecting the pool's vLLM pods; None when the pool turns it off."""
    settings = spec.inference_pool
    if not settings.enabled:
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": child_metadata(owner, name, COMPONENT),
        "spec": {
            "selector": {"matchLabels": selector_labels(owner, vllm_component)},
            "targetPorts": [{"number": vllm_port}],
            "endpointPickerRef": {
                "kind": "Service",
                "name": settings.endpoint_picker_name or child_name(name, "epp"),
                "portNumber": settings.endpoint_picker_port,
                "failureMode": settings.failure_mode,
            },
        },
    }
