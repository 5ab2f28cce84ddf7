"""Read a run's progress.json and published manifest from object storage, with the job's own credentials.

The training pod writes them; the operator only reads. Credentials come from the
FineTuneJob's output.credentialsSecretRef (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL, AWS_DEFAULT_REGION), else from the operator's environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from fsspec.core import url_to_fs

from ..api.finetunejob import AdapterStatus, FineTuneJobSpec
from ..evaluation.attached import HUMAN_EVALUATION_FILE, HumanEvaluation
from ..storage import AdapterManifest, RunLayout, RunProgress, VersionLayout
from ..storage.manifest import adapter_status
from ..storage.uris import storage_options


def secret_env(secret: Mapping[str, Any] | None) -> dict[str, str]:
    """The decoded data of a Secret."""
    if not secret:
        return {}
    out = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    out.update(secret.get("stringData") or {})
    return out


def fs_options(uri: str, creds: Mapping[str, str]) -> dict[str, Any]:
    """fsspec options for uri: the operator's environment, overridden by the job's credentials."""
    options = storage_options(uri)
    if uri.startswith(("s3://", "s3a://")):
        # Progress changes under the same key: never serve a cached listing.
        options["use_listings_cache"] = False
        if creds.get("AWS_ACCESS_KEY_ID"):
            options["key"] = creds["AWS_ACCESS_KEY_ID"]
            options["secret"] = creds.get("AWS_SECRET_ACCESS_KEY")
        endpoint = creds.get("AWS_ENDPOINT_URL_S3") or creds.get("AWS_ENDPOINT_URL")
        region = creds.get("AWS_DEFAULT_REGION") or creds.get("AWS_REGION")
        client_kwargs = dict(options.get("client_kwargs") or {})
        if endpoint:
            client_kwargs["endpoint_url"] = endpoint
        if region:
            client_kwargs["region_name"] = region
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
    return options


def _read(uri: str, creds: Mapping[str, str]) -> bytes | None:
    fs, path = url_to_fs(uri, **fs_options(uri, creds))
    try:
        with fs.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_run_progress(output_uri: str, job: str, run_id: str, creds: Mapping[str, str]) -> RunProgress | None:
    """The run's progress.json, or None while there is none (or it is unreadable mid-write)."""
    raw = _read(RunLayout(output_uri, job, run_id).progress, creds)
    if raw is None:
        return None
    try:
        return RunProgress.model_validate_json(raw)
    except ValueError:
        return None


def read_published_adapter(output_uri: str, job: str, version: str, creds: Mapping[str, str]) -> AdapterStatus | None:
    """status.adapter of a published version, from its manifest (None when it has no manifest)."""
    layout = VersionLayout(output_uri, job, version)
    raw = _read(layout.manifest, creds)
    if raw is None:
        return None
    return adapter_status(AdapterManifest.model_validate_json(raw), layout.prefix + "/")


def read_human_evaluation(adapter_uri: str, creds: Mapping[str, str]) -> HumanEvaluation | None:
    """human-evaluation.json beside a published adapter (None while none is attached); ValueError if malformed."""
    raw = _read(adapter_uri.rstrip("/") + "/" + HUMAN_EVALUATION_FILE, creds)
    return None if raw is None else HumanEvaluation.model_validate_json(raw)


def dataset_fingerprint(spec: FineTuneJobSpec, creds: Mapping[str, str], config_map: Mapping | None) -> str | None:
    """A cheap fingerprint of the dataset: object ETag/size/mtime, or a hash of inline/ConfigMap content.

    A scheduled retrain is skipped while it is unchanged.
    """
    ds = spec.dataset
    if ds.inline is not None:
        inline = [e.model_dump(by_alias=True, exclude_none=True, mode="json") for e in ds.inline]
        return "sha256:" + hashlib.sha256(json.dumps(inline, sort_keys=True).encode()).hexdigest()
    if ds.config_map_ref:
        data = ((config_map or {}).get("data") or {}).get(ds.config_map_ref.key)
        return None if data is None else "sha256:" + hashlib.sha256(data.encode()).hexdigest()
    uri = ds.uri
    if not uri or "://" not in uri:
        return None
    try:
        fs, path = url_to_fs(uri, **fs_options(uri, creds))
        info = fs.info(path)
    except (FileNotFoundError, OSError):
        return None
    parts = [str(info.get(k)) for k in ("ETag", "etag", "size", "LastModified", "mtime") if info.get(k) is not None]
    return "info:" + hashlib.sha256("|".join(parts).encode()).hexdigest()


def delete_adapters(output_uri: str, job: str, creds: Mapping[str, str]) -> None:
    """Remove every published version and run of a job (spec.output.deleteAdaptersOnDelete)."""
    prefix = output_uri.rstrip("/") + "/" + job
    fs, path = url_to_fs(prefix, **fs_options(prefix, creds))
    if fs.exists(path):
        fs.rm(path, recursive=True)
