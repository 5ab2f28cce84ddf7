"""A ChatbotDeployment's adapters resolved without a cluster, and the routing table for them.

In a cluster the operator resolves `fineTuneJobRef` from FineTuneJob status.
Locally, a reference resolves from an adapters root laid out as the trainer
writes it (`<root>/<job>/<version>/`, default ./loraplane-out); a pinned
version is used as is, an unpinned one is the latest published accepted
version. `uri` adapters (a directory or s3:// with AWS_* in the environment)
are used as given. Every adapter must be published (manifest.json present).
"""

from __future__ import annotations

from pathlib import Path

from ..api.chatbotdeployment import BASE_VARIANT, AdapterRef, ChatbotDeployment
from ..builders.routing_table import ServedVariant, build_routing_table
from ..routing import RoutingTable
from ..storage import read_manifest
from ..storage.layout import version_number
from ..storage.uris import filesystem, is_local, join


class ResolveError(Exception):
    """An adapter that cannot be served; the message names it and says why."""


def _latest_version(root: str, job: str) -> str | None:
    fs, base = filesystem(join(root, job))
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(base, detail=False)]
    except FileNotFoundError:
        return None
    versions = sorted((n for n in names if version_number(n) is not None), key=version_number, reverse=True)
    for version in versions:
        manifest = read_manifest(join(root, job, version))
        if manifest is not None and manifest.verdict == "accepted":
            return version
    return None


def resolve_adapter(ref: AdapterRef, adapters_root: str) -> ServedVariant:
    """The published adapter an AdapterRef names; raises ResolveError saying which and why."""
    if ref.uri:
        uri = str(Path(ref.uri).resolve()) if is_local(ref.uri) and "://" not in ref.uri else ref.uri
        where = f"uri {ref.uri}"
    else:
        job = ref.fine_tune_job_ref
        version = job.version or _latest_version(adapters_root, job.name)
        if version is None:
            raise ResolveError(
                f"adapter {ref.name}: FineTuneJob {job.name} has no published accepted version under "
                f"{join(adapters_root, job.name)} (train it with `loraplane train`, or pass --adapters-root)"
            )
        uri = join(adapters_root, job.name, version)
        if is_local(uri):
            uri = str(Path(uri).resolve())
        where = f"fineTuneJobRef {job.name}/{version} -> {uri}"
    try:
        manifest = read_manifest(uri)
    except Exception as exc:  # credentials, network, malformed JSON: all unresolvable here
        hint = " (set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL)" if uri.startswith("s3") else ""
        raise ResolveError(f"adapter {ref.name}: {where}: cannot read manifest.json: {exc}{hint}") from exc
    if manifest is None:
        raise ResolveError(f"adapter {ref.name}: {where}: no manifest.json, the adapter is not published")
    if manifest.verdict != "accepted":
        raise ResolveError(f"adapter {ref.name}: {where}: rejected by its quality gate ({manifest.reason})")
    return ServedVariant(ref.name, uri=uri, sha256=manifest.digest, lora_rank=manifest.lora_rank)


def local_routing_table(cbd: ChatbotDeployment, adapters_root: str = "loraplane-out") -> RoutingTable:
    """The routing table for a ChatbotDeployment served locally, at its spec.traffic weights."""
    spec = cbd.spec
    errors, variants = [], []
    for ref in spec.adapters:
        try:
            variants.append(resolve_adapter(ref, adapters_root))
        except ResolveError as exc:
            errors.append(str(exc))
    if errors:
        raise ResolveError("\n".join(errors))
    weights = {t.adapter: t.weight for t in spec.traffic}
    if not weights:
        weights = {(variants[0].name if variants else BASE_VARIANT): 100}
    return build_routing_table(cbd.metadata.name or "chatbot", spec, variants, weights)
