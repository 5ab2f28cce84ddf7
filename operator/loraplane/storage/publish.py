"""Atomic adapter publishing: upload every file, verify it, then write manifest.json last.

An adapter version exists only once its manifest does. A publish that cannot
complete removes what it uploaded and raises `PublishError`, so nothing that
looks published is left behind. Publishing is idempotent per run: a run that
already published (found by `runId` in a manifest) gets its version back
instead of a second one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from ..api.finetunejob import AdapterStatus
from .layout import VersionLayout, job_prefix, version_number
from .manifest import MANIFEST_FILE, AdapterManifest, FileEntry, adapter_status, read_manifest, sha256_stream
from .uris import filesystem, join

log = logging.getLogger(__name__)


class PublishError(Exception):
    """The adapter could not be published; nothing of it is left that looks published."""


@dataclass(frozen=True)
class PublishedAdapter:
    version: str
    uri: str
    manifest: AdapterManifest

    @property
    def sha256(self) -> str:
        return self.manifest.digest

    def status(self) -> AdapterStatus:
        """How FineTuneJob status (and progress.json, result.json) show this version."""
        return adapter_status(self.manifest, self.uri)


def _fs_and_path(uri: str, fs: fsspec.AbstractFileSystem | None) -> tuple[fsspec.AbstractFileSystem, str]:
    real_fs, path = filesystem(uri)
    return (fs or real_fs), path


def list_versions(output_uri: str, job: str, *, fs: fsspec.AbstractFileSystem | None = None) -> list[str]:
    """Names of the vN directories under <output>/<job>/, published or not, sorted by N."""
    fs, base = _fs_and_path(job_prefix(output_uri, job), fs)
    try:
        entries = fs.ls(base, detail=False)
    except FileNotFoundError:
        return []
    names = {entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries}
    return sorted((n for n in names if version_number(n) is not None), key=version_number)


def published_versions(output_uri: str, job: str) -> list[PublishedAdapter]:
    """Every version of a job that has a manifest, oldest first."""
    out = []
    for version in list_versions(output_uri, job):
        prefix = VersionLayout(output_uri, job, version).prefix
        manifest = read_manifest(prefix)
        if manifest is not None:
            out.append(PublishedAdapter(version, prefix + "/", manifest))
    return out


def find_published(output_uri: str, job: str, run_id: str) -> PublishedAdapter | None:
    """The version a run already published, if any (so a resumed run never publishes twice)."""
    for adapter in published_versions(output_uri, job):
        if adapter.manifest.run_id == run_id:
            return adapter
    return None


def next_version(output_uri: str, job: str) -> str:
    """The next free version: one past the highest published one (unpublished leftovers are reused)."""
    published = [version_number(a.version) or 0 for a in published_versions(output_uri, job)]
    return f"v{max(published, default=0) + 1}"


def _sha256_file(path: Path) -> tuple[str, int]:
    with path.open("rb") as f:
        return sha256_stream(f)


def _retry(what: str, fn: Callable[[], Any], *, retries: int, backoff: float) -> Any:
    """Call fn, retrying with exponential backoff; the last error propagates."""
    for attempt in range(retries + 1):
        try:
            return fn()
        except Exception as exc:  # storage clients raise many types; every one is worth a retry
            if attempt == retries:
                raise
            delay = backoff * (2**attempt)
            log.warning("%s failed (%s: %s); retry %d/%d in %.1fs", what, type(exc).__name__, exc,
                        attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _upload_verified(fs: fsspec.AbstractFileSystem, local: Path, remote: str, sha256: str, size: int) -> None:
    fs.makedirs(remote.rsplit("/", 1)[0], exist_ok=True)  # local filesystems need parents; object stores ignore it
    fs.put_file(str(local), remote)
    with fs.open(remote, "rb") as f:
        got, got_size = sha256_stream(f)
    if got != sha256 or got_size != size:
        raise OSError(f"{remote}: read back sha256 {got[:12]}… size {got_size}, expected {sha256[:12]}… size {size}")


def _remove_quietly(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except Exception as exc:  # cleanup is best effort; the missing manifest already marks it unpublished
        log.warning("could not remove %s: %s", path, exc)


def publish_adapter(
    local_dir: str | os.PathLike,
    output_uri: str,
    job: str,
    *,
    run_id: str,
    verdict: str,
    base_model: str,
    reason: str | None = None,
    retries: int = 4,
    backoff: float = 0.5,
    fs: fsspec.AbstractFileSystem | None = None,
    **manifest_fields: Any,
) -> PublishedAdapter:
    """Publish every file of local_dir as the next version of job under output_uri.

    Each file is uploaded with retries and backoff and read back to check its
    sha256; manifest.json (sizes and digests of all files) is written last. On
    failure the version directory is removed and PublishError raised.
    `manifest_fields` are further AdapterManifest fields (namespace, uid, metrics, ...).
    """
    local_dir = Path(local_dir)
    already = find_published(output_uri, job, run_id)
    if already is not None:
        log.info("run %s already published %s; not publishing again", run_id, already.version)
        return already

    files = sorted(p for p in local_dir.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    if not files:
        raise PublishError(f"{local_dir}: nothing to publish")
    version = next_version(output_uri, job)
    prefix = VersionLayout(output_uri, job, version).prefix
    fs, base = _fs_and_path(prefix, fs)
    # A leftover of a publish that died before its manifest: not published, so it is reused.
    _remove_quietly(fs, base)

    entries: list[FileEntry] = []
    try:
        for path in files:
            rel = path.relative_to(local_dir).as_posix()
            digest, size = _sha256_file(path)
            remote = f"{base}/{rel}"
            _retry(f"upload {join(prefix, rel)}",
                   lambda path=path, remote=remote, digest=digest, size=size:
                   _upload_verified(fs, path, remote, digest, size),
                   retries=retries, backoff=backoff)
            entries.append(FileEntry(path=rel, sha256=digest, size=size))
        manifest = AdapterManifest(
            job=job,
            run_id=run_id,
            version=version,
            verdict=verdict,
            reason=reason,
            base_model=base_model,
            created_at=datetime.now(UTC),
            files=entries,
            **manifest_fields,
        )
        body = manifest.to_json().encode()
        _retry(f"write {join(prefix, MANIFEST_FILE)}",
               lambda: _write_manifest(fs, f"{base}/{MANIFEST_FILE}", body),
               retries=retries, backoff=backoff)
    except Exception as exc:
        _remove_quietly(fs, base)
        raise PublishError(f"publishing {prefix}/ failed, nothing was published: {type(exc).__name__}: {exc}") from exc
    log.info("published %s (%d files, sha256 %s)", prefix + "/", len(entries), manifest.digest[:12])
    return PublishedAdapter(version, prefix + "/", manifest)


def _write_manifest(fs: fsspec.AbstractFileSystem, path: str, body: bytes) -> None:
    fs.pipe_file(path, body)
    with fs.open(path, "rb") as f:
        if hashlib.sha256(f.read()).digest() != hashlib.sha256(body).digest():
            raise OSError(f"{path}: manifest read back differs from what was written")
