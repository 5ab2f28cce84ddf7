"""Resolve a ChatbotDeployment's adapter entries to servable variants. Pure: the caller fetches.

- `uri` entries: servable when their manifest exists and its verdict is accepted.
- `fineTuneJobRef` with a `version`: that version from the FineTuneJob's status, if accepted (one held for
  a human evaluation, verdict `pending`, waits).
- `fineTuneJobRef` without a version follows the FineTuneJob: every accepted version is
  servable as variant `<entry>-<version>` (two versions run side by side during a canary).

Rejected, unpublished and missing adapters are never servable; the reason is kept for status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.chatbotdeployment import AdapterRef, ChatbotDeploymentSpec
from ..api.states import ProblemKind
from ..builders.routing_table import ServedVariant
from ..storage import AdapterManifest

_VERSION = re.compile(r"^v([0-9]+)$")


@dataclass
class EntryResolution:
    """One spec.adapters entry, resolved."""

    entry: str
    following: bool  # follows a FineTuneJob's latest accepted version
    versions: list[ServedVariant] = field(default_factory=list)  # servable, oldest first
    version_of: dict[str, str] = field(default_factory=dict)  # variant -> adapter version
    problem: str | None = None
    problem_kind: ProblemKind | None = None

    def refuse(self, kind: ProblemKind, message: str) -> EntryResolution:
        """Record why the entry cannot be served (its kind decides Degraded or Progressing)."""
        self.problem, self.problem_kind = message, kind
        return self

    @property
    def latest(self) -> ServedVariant | None:
        return self.versions[-1] if self.versions else None

    def get(self, variant: str | None) -> ServedVariant | None:
        return next((v for v in self.versions if v.name == variant), None)


def variant_name(entry: str, version: str) -> str:
    """`<entry>-<version>`, cut to a DNS label."""
    return f"{entry[: 62 - len(version)].rstrip('-')}-{version}"


def _version_key(version: str) -> int:
    m = _VERSION.match(version or "")
    return int(m.group(1)) if m else -1


def _ftj_versions(ftj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every adapter version a FineTuneJob reports, oldest first, one per version."""
    status = ftj.get("status") or {}
    by_version: dict[str, dict[str, Any]] = {}
    for v in [*(status.get("versions") or []), *([status["adapter"]] if status.get("adapter") else [])]:
        if v.get("version"):
            by_version[v["version"]] = v
    return sorted(by_version.values(), key=lambda v: _version_key(v["version"]))


def _ftj_rank(ftj: Mapping[str, Any]) -> int | None:
    return ((ftj.get("spec") or {}).get("lora") or {}).get("r")


def resolve_entry(entry: AdapterRef, ftjs: Mapping[str, Mapping[str, Any] | None],
                  manifests: Mapping[str, AdapterManifest | Exception | None]) -> EntryResolution:
    """Resolve one entry against the FineTuneJobs and the manifests the caller read."""
    if entry.uri is not None:
        res = EntryResolution(entry.name, following=False)
        found = manifests.get(entry.uri)
        if isinstance(found, Exception):
            res.refuse(ProblemKind.BROKEN, f"adapter {entry.name}: cannot read {entry.uri}: {found}")
        elif found is None:
            res.refuse(ProblemKind.WAITING, f"adapter {entry.name}: no manifest.json at {entry.uri} (not published)")
        elif found.verdict != "accepted":
            res.refuse(ProblemKind.BROKEN, f"adapter {entry.name}: {entry.uri} was rejected: {found.reason or 'quality gate'}")
        else:
            res.versions.append(ServedVariant(entry.name, entry.uri, found.digest, found.lora_rank))
            res.version_of[entry.name] = found.version
        return res

    ref = entry.fine_tune_job_ref
    assert ref is not None  # the CRD's CEL rule requires exactly one of uri and fineTuneJobRef
    res = EntryResolution(entry.name, following=ref.version is None)
    ftj = ftjs.get(ref.name)
    if ftj is None:
        return res.refuse(ProblemKind.WAITING, f"adapter {entry.name}: FineTuneJob {ref.name} not found")
    versions = _ftj_versions(ftj)
    rank = _ftj_rank(ftj)
    if ref.version is not None:
        v = next((v for v in versions if v["version"] == ref.version), None)
        if v is None:
            res.refuse(ProblemKind.WAITING, f"adapter {entry.name}: FineTuneJob {ref.name} has not published {ref.version}")
        elif v.get("verdict") == "pending":
            res.refuse(ProblemKind.WAITING, f"adapter {entry.name}: {ref.name} {ref.version} awaits its human "
                                              "evaluation (spec.evaluation.human)")
        elif v.get("verdict") != "accepted":
            res.refuse(ProblemKind.BROKEN, f"adapter {entry.name}: {ref.name} {ref.version} was rejected: "
                                             f"{v.get('reason') or 'quality gate'}")
        else:
            res.versions.append(ServedVariant(entry.name, v["uri"], v.get("sha256"), rank))
            res.version_of[entry.name] = ref.version
        return res
    for v in versions:
        if v.get("verdict") == "accepted" and v.get("uri"):
            name = variant_name(entry.name, v["version"])
            res.versions.append(ServedVariant(name, v["uri"], v.get("sha256"), rank))
            res.version_of[name] = v["version"]
    if not res.versions:
        res.refuse(ProblemKind.WAITING, f"adapter {entry.name}: FineTuneJob {ref.name} has no accepted version yet")
    return res


def resolve(spec: ChatbotDeploymentSpec, ftjs: Mapping[str, Mapping[str, Any] | None],
            manifests: Mapping[str, AdapterManifest | Exception | None]) -> list[EntryResolution]:
    """Every entry of spec.adapters, in order."""
    return [resolve_entry(a, ftjs, manifests) for a in spec.adapters]
