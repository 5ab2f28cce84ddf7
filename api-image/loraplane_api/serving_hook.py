"""`metadata.chatbot_deployment`: hand the job's adapter to a ChatbotDeployment's canary rollout.

The ChatbotDeployment must have `rollout.autoCanary` and no static `spec.traffic` (its rollout chooses the
split). The job is appended to its `spec.adapters` as an entry that follows the FineTuneJob
(`{name: <job id>, fineTuneJobRef: {name: <job id>}}`): once the job publishes v1, variant
`<job id>-v1` (the job's `fine_tuned_model`) becomes the canary, and the rollout promotes or rolls it back.
The caller needs `patch` on chatbotdeployments in the namespace as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from loraplane.api.chatbotdeployment import ChatbotDeploymentSpec

from .errors import InvalidRequest

METADATA_KEY = "chatbot_deployment"
PARAM = f"metadata.{METADATA_KEY}"
MAX_ADAPTERS = ChatbotDeploymentSpec.model_fields["adapters"].metadata[0].max_length


def check_chatbot(cbd: Mapping[str, Any] | None, name: str) -> None:
    """Refuse a ChatbotDeployment whose rollout would not pick the job up."""
    if cbd is None:
        raise InvalidRequest(f"no ChatbotDeployment {name} in this namespace", param=PARAM)
    spec = cbd.get("spec") or {}
    if not (spec.get("rollout") or {}).get("autoCanary"):
        raise InvalidRequest(f"ChatbotDeployment {name} does not set rollout.autoCanary: its rollout would not "
                             "canary the new adapter", param=PARAM)
    if spec.get("traffic"):
        raise InvalidRequest(f"ChatbotDeployment {name} has a static spec.traffic split: only a rollout-managed "
                             "split takes new adapters", param=PARAM)
    if len(spec.get("adapters") or []) >= MAX_ADAPTERS:
        raise InvalidRequest(f"ChatbotDeployment {name} already lists {MAX_ADAPTERS} adapters", param=PARAM)


def add_adapter_patch(cbd: Mapping[str, Any], job_id: str) -> list[dict[str, Any]]:
    """A JSON patch appending the job to spec.adapters, refused if the object changed since it was read."""
    entry = {"name": job_id, "fineTuneJobRef": {"name": job_id}}
    ops: list[dict[str, Any]] = [{"op": "test", "path": "/metadata/resourceVersion",
                                  "value": cbd["metadata"]["resourceVersion"]}]
    if "adapters" in (cbd.get("spec") or {}):
        ops.append({"op": "add", "path": "/spec/adapters/-", "value": entry})
    else:
        ops.append({"op": "add", "path": "/spec/adapters", "value": [entry]})
    return ops
