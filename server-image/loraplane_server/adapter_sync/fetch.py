"""Download a published adapter and verify every file against its manifest before anything may load it.

An adapter prefix without manifest.json is not published; a manifest whose
verdict is not "accepted" is refused; a file whose sha256 or size differs from
the manifest is refused. The local copy (what vLLM reads) is verified, not the
remote one, so a corruption in transit is caught too. The directory appears
under its final name only after verification (rename), so a half-downloaded
adapter is never visible.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from loraplane.storage import AdapterManifest, ManifestError, filesystem, read_manifest, verify_files
from loraplane.storage.manifest import CARD_FILE
from loraplane.storage.uris import join


class AdapterRefused(Exception):
    """An adapter that must not be loaded; the message says which and why."""


@dataclass(frozen=True)
class FetchedAdapter:
    path: Path
    manifest: AdapterManifest


def local_name(name: str, manifest: AdapterManifest) -> str:
    return f"{name}-{manifest.digest[:16]}"


def _refresh_card(local: Path, uri: str, manifest: AdapterManifest) -> bool:
    """A local copy whose only stale file is the model card (amended after publishing, outside the digest):
    fetch the card alone. False when anything else differs."""
    rest = manifest.model_copy(update={"files": [e for e in manifest.files if e.path != CARD_FILE]})
    if len(rest.files) == len(manifest.files):
        return False
    try:
        verify_files(str(local), rest)
        fs, base = filesystem(uri)
        fs.get(f"{base}/{CARD_FILE}", str(local / CARD_FILE))
        verify_files(str(local), manifest)
    except (ManifestError, OSError):
        return False
    (local / "manifest.json").write_text(manifest.to_json())
    return True


def published_manifest(name: str, uri: str, expected_digest: str | None = None) -> AdapterManifest:
    """The manifest of a published, accepted adapter (what it weighs, before any download); raises AdapterRefused."""
    try:
        manifest = read_manifest(uri)
    except (ValueError, OSError) as exc:
        raise AdapterRefused(f"{name}: {join(uri, 'manifest.json')} is unreadable: {exc}") from exc
    if manifest is None:
        raise AdapterRefused(f"{name}: {uri} has no manifest.json: the adapter is not published (yet)")
    if manifest.verdict != "accepted":
        raise AdapterRefused(f"{name}: {uri} was rejected by its quality gate: {manifest.reason or 'no reason given'}")
    if expected_digest and manifest.digest != expected_digest:
        raise AdapterRefused(
            f"{name}: {uri} manifest digest {manifest.digest[:12]}… differs from the routing table's "
            f"sha256 {expected_digest[:12]}…"
        )
    for entry in manifest.files:
        p = PurePosixPath(entry.path)
        if p.is_absolute() or ".." in p.parts:
            raise AdapterRefused(f"{name}: manifest lists an unsafe path {entry.path!r}")
    return manifest


def adapter_bytes(manifest: AdapterManifest) -> int:
    """What the verified local copy takes on disk (its files plus manifest.json, roughly)."""
    return sum(entry.size for entry in manifest.files) + len(manifest.to_json())


def fetch_adapter(
    name: str, uri: str, root: Path, expected_digest: str | None = None, manifest: AdapterManifest | None = None,
) -> FetchedAdapter:
    """Download the adapter at `uri` into `root/<name>-<digest>/` and verify it; raises AdapterRefused.

    `manifest`: one already read by `published_manifest` (it is not read twice).
    """
    manifest = manifest or published_manifest(name, uri, expected_digest)
    root.mkdir(parents=True, exist_ok=True)
    final = root / local_name(name, manifest)
    if final.resolve().parent != root.resolve():
        # vLLM loads only what sync placed under its own volume: a name never reaches outside it.
        raise AdapterRefused(f"{name}: not a valid adapter name (it would be stored outside {root})")
    if final.exists():
        try:
            verify_files(str(final), manifest)
            return FetchedAdapter(final, manifest)
        except ManifestError:
            if _refresh_card(final, uri, manifest):
                return FetchedAdapter(final, manifest)
            shutil.rmtree(final)  # a damaged local copy: fetch again
    partial = root / f".{final.name}.partial-{secrets.token_hex(4)}"
    try:
        fs, base = filesystem(uri)
        for entry in manifest.files:
            size = fs.size(f"{base}/{entry.path}")
            if size is not None and size != entry.size:
                # Before the download: a swapped or padded file costs no disk and no transfer.
                raise AdapterRefused(f"{name}: refused, {entry.path} is {size} bytes, the manifest says {entry.size}")
            target = partial / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get(f"{base}/{entry.path}", str(target))
        try:
            verify_files(str(partial), manifest)
        except ManifestError as exc:
            raise AdapterRefused(f"{name}: refused, {exc}") from exc
        (partial / "manifest.json").write_text(manifest.to_json())
        partial.rename(final)
    except FileNotFoundError as exc:
        raise AdapterRefused(f"{name}: {uri}: a file listed in the manifest is missing: {exc}") from exc
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return FetchedAdapter(final, manifest)
