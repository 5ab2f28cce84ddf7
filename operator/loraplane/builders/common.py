"""Names, labels and ownerReferences shared by every child the operator creates.

Use them so a restarted operator finds what it made and never duplicates it:

    meta = child_metadata(owner, child_name(owner_name, "vllm"), component="vllm")
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": ...}

`owner` is the custom resource as the API server returned it (a dict with
apiVersion, kind, metadata.name/namespace/uid). Names are deterministic; labels
follow the app.kubernetes.io conventions plus `loraplane.io/<kind>: <name>`, which
is what `owner_selector` selects on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from .. import __version__

MANAGED_BY = "loraplane-operator"
PART_OF = "loraplane"
MAX_NAME = 63  # a DNS label: Jobs, Services and pod labels need names this short

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_VERSION = "app.kubernetes.io/version"
LABEL_GENERATION = "loraplane.io/generation"
LABEL_RUN = "loraplane.io/run"

_LABEL_VALUE_RE = re.compile(r"[^A-Za-z0-9._-]")


def owner_label(kind: str) -> str:
    """The label naming the owner of a child: `loraplane.io/finetunejob`, `loraplane.io/chatbotdeployment`."""
    return f"loraplane.io/{kind.lower()}"


def child_name(owner_name: str, *suffix: str | int, max_length: int = MAX_NAME) -> str:
    """`<owner>-<suffix...>`, shortened with a stable hash when longer than max_length."""
    name = "-".join([owner_name, *(str(s) for s in suffix)])
    if len(name) <= max_length:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    tail = "-".join(str(s) for s in suffix)
    keep = max_length - len(tail) - len(digest) - 2
    if keep < 1:
        return f"{name[: max_length - 9].rstrip('-')}-{digest}"
    return f"{owner_name[:keep].rstrip('-')}-{digest}-{tail}"


MAX_LABEL_VALUE = 63


def label_value(value: str) -> str:
    """A string made safe for a label value (63 chars, alphanumeric at both ends).

    A value that had to change (cut to 63 characters, characters replaced) ends in a hash of
    the whole original, so two names sharing their first 63 characters get different labels
    and never select each other's pods.
    """
    clean = _LABEL_VALUE_RE.sub("-", value).strip("-_.")
    if clean == value and len(clean) <= MAX_LABEL_VALUE:
        return clean
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    head = clean[: MAX_LABEL_VALUE - len(digest) - 1].strip("-_.")
    return f"{head}-{digest}" if head else digest


def is_owned_by(child: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """True when `child` has an ownerReference to this very object (its uid), not just a same-named one."""
    uid = owner["metadata"].get("uid")
    return bool(uid) and uid in [r.get("uid") for r in child["metadata"].get("ownerReferences") or []]


def labels(owner: Mapping[str, Any], component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The standard labels of a child of `owner`."""
    name = owner["metadata"]["name"]
    out = {
        LABEL_NAME: PART_OF,
        LABEL_INSTANCE: label_value(name),
        LABEL_COMPONENT: label_value(component),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_PART_OF: PART_OF,
        LABEL_VERSION: label_value(__version__),
        owner_label(owner["kind"]): label_value(name),
    }
    out.update(extra or {})
    return out


def selector_labels(owner: Mapping[str, Any], component: str) -> dict[str, str]:
    """The immutable subset of `labels` for selectors (Deployment.spec.selector, Service.spec.selector)."""
    name = owner["metadata"]["name"]
    return {
        LABEL_NAME: PART_OF,
        LABEL_INSTANCE: label_value(name),
        LABEL_COMPONENT: label_value(component),
    }


def owner_selector(owner: Mapping[str, Any], component: str | None = None) -> str:
    """A label selector string finding the children of `owner` (optionally of one component)."""
    parts = [f"{owner_label(owner['kind'])}={label_value(owner['metadata']['name'])}", f"{LABEL_MANAGED_BY}={MANAGED_BY}"]
    if component:
        parts.append(f"{LABEL_COMPONENT}={label_value(component)}")
    return ",".join(parts)


def owner_reference(owner: Mapping[str, Any], controller: bool = True) -> dict[str, Any]:
    """An ownerReference to `owner`: deleting the owner deletes the child (garbage collection)."""
    meta = owner["metadata"]
    if not meta.get("uid"):
        raise ValueError(f"{owner.get('kind')} {meta.get('name')} has no metadata.uid: read it from the API first")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def child_metadata(
    owner: Mapping[str, Any],
    name: str,
    component: str,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """metadata of a child: name, the owner's namespace, labels, ownerReference."""
    meta: dict[str, Any] = {
        "name": name,
        "namespace": owner["metadata"]["namespace"],
        "labels": labels(owner, component, extra_labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def restricted_security_context() -> dict[str, Any]:
    """Container securityContext meeting the Pod Security 'restricted' profile."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


GPU_RESOURCE = "nvidia.com/gpu"


def container_resources(*, cpu: str | None, memory: str | None, gpus: int | None) -> dict[str, Any]:
    """A container's resources: CPU requested, memory requested and capped, GPUs requested and limited.

    Extended resources such as GPUs must have equal requests and limits; both are written
    so the manifest says so instead of relying on the default.
    """
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if gpus:
        requests[GPU_RESOURCE] = limits[GPU_RESOURCE] = str(gpus)
    if cpu:
        requests["cpu"] = cpu
    if memory:
        requests["memory"] = limits["memory"] = memory
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out
