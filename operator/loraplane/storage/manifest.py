"""The adapter manifest: written last, it is what makes an adapter exist.

A version directory without `manifest.json` is not published. Readers (the
operator, adapter sync) trust an adapter only after every file matches the
manifest's size and sha256.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..api.finetunejob import AdapterStatus
from .uris import filesystem, join

MANIFEST_FILE = "manifest.json"
# The model card may be amended after publishing (a human evaluation's results): it is listed and verified
# like every file, but it is not part of the digest that names the adapter, so amending it reloads nothing.
CARD_FILE = "README.md"
CHUNK = 1 << 20


class ManifestError(Exception):
    """An adapter whose files do not match its manifest, or that has none."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class FileEntry(_Model):
    path: str
    sha256: str
    size: int


class AdapterManifest(_Model):
    """What manifest.json holds."""

    api_version: str = "loraplane.io/v1alpha1"
    kind: Literal["AdapterManifest"] = "AdapterManifest"
    job: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    run_id: str | None = None
    version: str
    verdict: Literal["accepted", "rejected"]
    reason: str | None = None
    base_model: str
    lora_rank: int | None = None
    created_at: datetime
    dataset_hash: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    files: list[FileEntry]

    @property
    def digest(self) -> str:
        """sha256 over the sorted (path, sha256) pairs but the model card's: one value naming this exact adapter."""
        h = hashlib.sha256()
        for entry in sorted(self.files, key=lambda e: e.path):
            if entry.path == CARD_FILE:
                continue
            h.update(f"{entry.path}\0{entry.sha256}\n".encode())
        return h.hexdigest()

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), indent=2, sort_keys=True) + "\n"


def adapter_status(manifest: AdapterManifest, uri: str) -> AdapterStatus:
    """A published version as FineTuneJob status shows it: the one shape of progress.json, result.json and status."""
    return AdapterStatus(version=manifest.version, uri=uri, sha256=manifest.digest, verdict=manifest.verdict,
                         reason=manifest.reason[:1024] if manifest.reason else None, published_at=manifest.created_at)


def sha256_stream(stream) -> tuple[str, int]:
    """sha256 and size of a binary stream, read in chunks."""
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def read_manifest(prefix_uri: str) -> AdapterManifest | None:
    """The manifest of an adapter prefix, or None when it is not published."""
    fs, path = filesystem(join(prefix_uri, MANIFEST_FILE))
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return AdapterManifest.model_validate_json(f.read())


def verify_files(prefix_uri: str, manifest: AdapterManifest) -> None:
    """Check every file under prefix_uri against the manifest; raise ManifestError naming the first bad one."""
    fs, base = filesystem(prefix_uri)
    for entry in manifest.files:
        path = f"{base}/{entry.path}"
        if not fs.exists(path):
            raise ManifestError(f"{join(prefix_uri, entry.path)}: listed in the manifest but missing")
        with fs.open(path, "rb") as f:
            digest, size = sha256_stream(f)
        if size != entry.size or digest != entry.sha256:
            raise ManifestError(
                f"{join(prefix_uri, entry.path)}: sha256 {digest[:12]}… size {size} does not match the manifest "
                f"(sha256 {entry.sha256[:12]}… size {entry.size})"
            )
