"""Which ChatbotDeployments a ModelPool accepts, decided as Gateway API decides a listener's routes.

Pure functions. A chatbot is attached when its poolRef names the pool; it is
accepted when the pool's `allowedNamespaces` admits its namespace (Same, All, or
a label Selector on the Namespace) and no older accepted chatbot on the pool
claims the same served name. Conflicts are settled the way Gateway API settles
conflicting routes: the oldest creationTimestamp wins, ties broken by
`<namespace>/<name>`; the others get Accepted=False, reason NameConflict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .api.base import LabelSelector
from .api.modelpool import AllowedNamespaces
from .api.states import NamespacesFrom, Reason


@dataclass(frozen=True, order=True)
class Claim:
    """One ChatbotDeployment's claim on a pool (what the operator indexes of it)."""

    created: str  # creationTimestamp (RFC 3339, UTC: orders as text)
    namespace: str
    name: str
    served_name: str
    max_loras: int = 1  # the GPU slots it would ask for on a private pool

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class Verdict:
    """Accepted or not, with the reason and message of the chatbot's Accepted condition."""

    accepted: bool
    reason: Reason
    message: str


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression holds."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In" and not (present and labels[req.key] in req.values):
            return False
        if req.operator == "NotIn" and present and labels[req.key] in req.values:
            return False
        if req.operator == "Exists" and not present:
            return False
        if req.operator == "DoesNotExist" and present:
            return False
    return True


def namespace_allowed(allowed: AllowedNamespaces, pool_namespace: str, namespace: str,
                      labels: Mapping[str, str] | None) -> bool:
    """Whether a chatbot of `namespace` (its Namespace's labels; None: not read or gone) may attach."""
    if allowed.from_ is NamespacesFrom.ALL:
        return True
    if allowed.from_ is NamespacesFrom.SAME:
        return namespace == pool_namespace
    return labels is not None and allowed.selector is not None and selector_matches(allowed.selector, labels)


def settle(pool_namespace: str, pool_name: str, allowed: AllowedNamespaces, claims: Iterable[Claim],
           namespace_labels: Mapping[str, Mapping[str, str]]) -> dict[tuple[str, str], Verdict]:
    """The verdict of every claim on one pool."""
    out: dict[tuple[str, str], Verdict] = {}
    holders: dict[str, Claim] = {}
    for claim in sorted(set(claims)):  # oldest first, then namespace/name
        if not namespace_allowed(allowed, pool_namespace, claim.namespace, namespace_labels.get(claim.namespace)):
            out[claim.key] = Verdict(False, Reason.NOT_ALLOWED_BY_POOL,
                                     f"ModelPool {pool_namespace}/{pool_name} does not allow namespace "
                                     f"{claim.namespace} (allowedNamespaces.from: {allowed.from_.value})")
            continue
        holder = holders.setdefault(claim.served_name, claim)
        if holder is claim:
            out[claim.key] = Verdict(True, Reason.ACCEPTED,
                                     f"served as {claim.served_name!r} on ModelPool {pool_namespace}/{pool_name}")
        else:
            out[claim.key] = Verdict(False, Reason.NAME_CONFLICT,
                                     f"served name {claim.served_name!r} is held on ModelPool "
                                     f"{pool_namespace}/{pool_name} by the older ChatbotDeployment "
                                     f"{holder.namespace}/{holder.name}")
    return out


def accepted(verdicts: Mapping[tuple[str, str], Verdict]) -> list[tuple[str, str]]:
    return sorted(k for k, v in verdicts.items() if v.accepted)
