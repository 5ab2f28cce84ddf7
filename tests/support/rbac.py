"""RBAC authorisation as the Kubernetes API server's RBAC authorizer decides it, for the emulator.

`allowed(objects, user, groups, attrs)` looks at the Roles, ClusterRoles, RoleBindings and
ClusterRoleBindings held by the emulator: a ClusterRoleBinding grants its ClusterRole everywhere, a
RoleBinding grants its Role or ClusterRole in its own namespace; a rule matches when its apiGroups,
resources (with `resource/subresource` and `*`), verbs and resourceNames all match. Not emulated:
aggregated ClusterRoles, nonResourceURLs, the built-in system: roles (bind what you need explicitly).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResourceAttributes:
    namespace: str
    verb: str
    group: str
    resource: str
    subresource: str = ""
    name: str = ""

    @classmethod
    def from_review(cls, attrs: Mapping[str, Any]) -> ResourceAttributes:
        return cls(attrs.get("namespace", ""), attrs.get("verb", ""), attrs.get("group", ""),
                   attrs.get("resource", ""), attrs.get("subresource", ""), attrs.get("name", ""))


def _subject_matches(subject: Mapping[str, Any], user: str, groups: Iterable[str], binding_ns: str | None) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user
    if kind == "Group":
        return subject.get("name") in set(groups)
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


def rule_matches(rule: Mapping[str, Any], attrs: ResourceAttributes) -> bool:
    def has(values: Iterable[str] | None, value: str) -> bool:
        values = list(values or [])
        return "*" in values or value in values

    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    names = rule.get("resourceNames") or []
    return (has(rule.get("apiGroups"), attrs.group) and has(rule.get("verbs"), attrs.verb)
            and (has(rule.get("resources"), resource)
                 or (attrs.subresource and f"{attrs.resource}/*" in (rule.get("resources") or [])))
            and (not names or attrs.name in names))


def allowed(objects: Iterable[Mapping[str, Any]], user: str, groups: Iterable[str],
            attrs: ResourceAttributes) -> tuple[bool, str]:
    """(allowed, reason) for one request, from the RBAC objects among `objects`."""
    groups = list(groups)
    roles: dict[tuple[str, str | None, str], Mapping[str, Any]] = {}
    bindings: list[Mapping[str, Any]] = []
    for obj in objects:
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if kind in ("Role", "ClusterRole"):
            roles[(kind, meta.get("namespace") if kind == "Role" else None, meta["name"])] = obj
        elif kind in ("RoleBinding", "ClusterRoleBinding"):
            bindings.append(obj)
    for binding in bindings:
        meta = binding["metadata"]
        binding_ns = meta.get("namespace") if binding["kind"] == "RoleBinding" else None
        if binding_ns is not None and binding_ns != attrs.namespace:
            continue
        if not any(_subject_matches(s, user, groups, binding_ns) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        role = roles.get((ref.get("kind"), binding_ns if ref.get("kind") == "Role" else None, ref.get("name")))
        if role is None:
            continue
        for rule in role.get("rules") or []:
            if rule_matches(rule, attrs):
                where = f"RoleBinding {binding_ns}/{meta['name']}" if binding_ns else f"ClusterRoleBinding {meta['name']}"
                return True, f'RBAC: allowed by {where} of {ref.get("kind")} "{ref.get("name")}"'
    return False, ""
