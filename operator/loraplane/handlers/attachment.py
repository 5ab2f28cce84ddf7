"""Which chatbots a ModelPool accepts: the I/O around `tenancy.settle`, shared by both controllers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from .. import kube
from ..api.chatbotdeployment import ChatbotDeploymentSpec
from ..api.modelpool import ModelPool
from ..api.states import NamespacesFrom
from ..builders.serving import derive_max_loras
from ..tenancy import Claim, Verdict, settle


def claim_of(namespace: str, name: str, spec: Mapping[str, Any], created: str) -> Claim:
    """What the index keeps of a chatbot on a pool: enough to settle names and size the pool's slots."""
    try:
        max_loras = derive_max_loras(ChatbotDeploymentSpec.model_validate(dict(spec)))
    except ValidationError:
        max_loras = 1
    return Claim(created=created, namespace=namespace, name=name,
                 served_name=spec.get("servedName") or name, max_loras=max_loras)


async def namespace_labels(allowed_from: NamespacesFrom, namespaces: Iterable[str]) -> dict[str, dict[str, str]]:
    """The labels of these Namespaces, read only when the pool's allowedNamespaces is a Selector."""
    if allowed_from is not NamespacesFrom.SELECTOR:
        return {}
    out = {}
    for ns in sorted(set(namespaces)):
        live = await kube.client().get_or_none("v1", "Namespace", None, ns)
        if live is not None:
            out[ns] = dict(live["metadata"].get("labels") or {})
    return out


async def pool_verdicts(pool: ModelPool, claims: Iterable[Claim]) -> dict[tuple[str, str], Verdict]:
    """Every claim's verdict on this pool (the pool's handler and each chatbot's reach the same)."""
    claims = list(claims)
    allowed = pool.spec.allowed_namespaces
    labels = await namespace_labels(allowed.from_, (c.namespace for c in claims))
    return settle(pool.metadata.namespace or "default", pool.metadata.name, allowed, claims, labels)
