"""Uploaded training files in object storage, one prefix per namespace.

    <files-uri>/<namespace>/<file-id>.jsonl    the content, as uploaded
    <files-uri>/<namespace>/<file-id>.json     the FileObject (written after the content: no half files listed)

A FineTuneJob made from a file reads it at `<files-uri>/<namespace>/<file-id>.jsonl`; the
namespace is part of every path, so a caller can only ever name files of its own namespace.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from loraplane.storage import filesystem, join

from .errors import InvalidRequest, NotFound
from .wire import FileObject

FILE_ID = re.compile(r"^file-[0-9a-f]{24}$")
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def new_file_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def check_file_id(file_id: str, param: str) -> str:
    if not FILE_ID.match(file_id or ""):
        raise InvalidRequest(f"invalid file id {file_id!r}: expected file-<24 hex digits>", param=param,
                             code="invalid_file_id")
    return file_id


@dataclass(frozen=True)
class FileStore:
    """Files of all namespaces under one object-storage prefix (any fsspec URI)."""

    uri: str

    def _prefix(self, namespace: str) -> str:
        if not NAMESPACE.match(namespace):
            raise InvalidRequest(f"invalid namespace {namespace!r}")
        return join(self.uri, namespace)

    def content_uri(self, namespace: str, file_id: str) -> str:
        return join(self._prefix(namespace), f"{file_id}.jsonl")

    def _meta_uri(self, namespace: str, file_id: str) -> str:
        return join(self._prefix(namespace), f"{file_id}.json")

    def put(self, namespace: str, filename: str, content: bytes, status_details: str | None) -> FileObject:
        file_id = new_file_id()
        obj = FileObject(id=file_id, bytes=len(content), created_at=int(time.time()), filename=filename,
                         status_details=status_details)
        fs, path = filesystem(self.content_uri(namespace, file_id))
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, content)
        fs, path = filesystem(self._meta_uri(namespace, file_id))
        fs.pipe_file(path, obj.model_dump_json().encode())
        return obj

    def get(self, namespace: str, file_id: str, param: str = "file_id") -> FileObject:
        check_file_id(file_id, param)
        fs, path = filesystem(self._meta_uri(namespace, file_id))
        try:
            return FileObject.model_validate_json(fs.cat_file(path))
        except FileNotFoundError:
            raise NotFound(f"no such file: {file_id}", param=param, code="file_not_found") from None

    def content(self, namespace: str, file_id: str) -> bytes:
        self.get(namespace, file_id)
        fs, path = filesystem(self.content_uri(namespace, file_id))
        return fs.cat_file(path)

    def list(self, namespace: str) -> list[FileObject]:
        """The namespace's files, newest first."""
        fs, path = filesystem(self._prefix(namespace))
        fs.invalidate_cache(path)
        try:
            names = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        files = []
        for name in names:
            stem = name.rstrip("/").rsplit("/", 1)[-1]
            if stem.endswith(".json") and FILE_ID.match(stem[:-5]):
                try:
                    files.append(FileObject.model_validate_json(fs.cat_file(name)))
                except FileNotFoundError:  # deleted meanwhile
                    continue
        return sorted(files, key=lambda f: (f.created_at, f.id), reverse=True)

    def delete(self, namespace: str, file_id: str) -> None:
        self.get(namespace, file_id)
        for uri in (self._meta_uri(namespace, file_id), self.content_uri(namespace, file_id)):
            fs, path = filesystem(uri)
            fs.rm_file(path)
