"""fsspec URIs: one place that turns a URI into a filesystem and a path.

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_ENDPOINT_URL for MinIO/Ceph/moto), as the pods get them from a Secret; they are
never logged.
"""

from __future__ import annotations

import os
from typing import Any

import fsspec
from fsspec.core import url_to_fs


def storage_options(uri: str) -> dict[str, Any]:
    """fsspec options for a URI, taken from the environment."""
    if uri.startswith(("s3://", "s3a://")):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options: dict[str, Any] = {}
        if endpoint:
            options["client_kwargs"] = {"endpoint_url": endpoint}
        return options
    return {}


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and the path within it for a URI or a local path."""
    fs, path = url_to_fs(uri, **storage_options(uri))
    return fs, path.rstrip("/") if path not in ("/", "") else path


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a URI with exactly one slash between them."""
    out = uri.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def local_path(uri: str) -> str:
    """The local filesystem path of a file:// URI or a plain path."""
    return uri[len("file://"):] if uri.startswith("file://") else uri
