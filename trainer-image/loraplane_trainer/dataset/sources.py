"""Where examples come from: files (local, file://, s3://, any fsspec URI), ConfigMaps, inline specs.

Readers stream: JSONL is read line by line in bytes (a line longer than MAX_LINE_BYTES is
reported, not loaded), so checking a large file costs memory per example, not per byte.
Every reader yields `Example`s and `Malformed` records in file order, and hashes the raw
bytes it read (the dataset's content hash).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from loraplane.storage import filesystem

from .example import Example
from .formats import Mapping, RecordError, to_example

# One example is at most a few thousand tokens: a longer line is hostile or broken, and every
# check's cost grows with it. JSON arrays hold each record to the same limit.
MAX_LINE_BYTES = 1024 * 1024
CONFIGMAP_DIR_ENV = "LORAPLANE_CONFIGMAP_DIR"
DEFAULT_CONFIGMAP_DIR = "/etc/loraplane/configmaps"
_BOM = b"\xef\xbb\xbf"


class SourceError(RuntimeError):
    """The dataset cannot be read at all (missing file, unreachable storage)."""


@dataclass(frozen=True)
class Malformed:
    """A line that could not be loaded."""

    file: str
    line: int
    message: str
    skipped: bool = True


Item = Example | Malformed


class Reader:
    """Iterates the examples of one source; `sha256` is the hash of what was read."""

    def __init__(self, label: str, opener: Callable[[], IO[bytes]], kind: str, fmt: str, mapping: Mapping | None):
        self.label, self._opener, self.kind, self.fmt, self.mapping = label, opener, kind, fmt, mapping
        self._hash = hashlib.sha256()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def __iter__(self) -> Iterator[Item]:
        self._hash = hashlib.sha256()
        try:
            stream = self._opener()
        except FileNotFoundError as e:
            raise SourceError(f"dataset {self.label}: file not found") from e
        except OSError as e:
            raise SourceError(f"dataset {self.label}: cannot open: {e}") from e
        with stream:
            if self.kind == "csv" or self.kind == "tsv":
                yield from self._csv(stream)
            else:
                head = stream.read(64)
                self._hash.update(head)
                body = io.BufferedReader(_Prefixed(head, stream, self._hash))  # type: ignore[arg-type]
                if self.kind == "json" or head.lstrip(_BOM + b" \t\r\n").startswith(b"["):
                    yield from self._array(body)
                else:
                    yield from self._lines(body)

    def _example(self, record: Any, line: int) -> Item:
        try:
            ex = to_example(record, self.fmt, self.mapping)
        except RecordError as e:
            return Malformed(self.label, line, str(e))
        ex.file, ex.line = self.label, line
        return ex

    def _lines(self, stream: IO[bytes]) -> Iterator[Item]:
        lineno = 0
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := stream.readline(1 << 20)) and not rest.endswith(b"\n"):
                    pass
                yield Malformed(self.label, lineno, f"line longer than {MAX_LINE_BYTES} bytes")
                continue
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM):]
                yield Malformed(self.label, 1, "file starts with a UTF-8 byte order mark (stripped)", skipped=False)
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Malformed(self.label, lineno, f"invalid UTF-8 at byte {e.start} of the line")
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                yield Malformed(self.label, lineno, f"invalid JSON: {e.msg} (column {e.colno})")
                continue
            except RecursionError:
                yield Malformed(self.label, lineno, "invalid JSON: nested too deeply")
                continue
            except ValueError as e:  # e.g. an integer of more digits than Python converts (4,300)
                yield Malformed(self.label, lineno, f"invalid JSON: {str(e).split(';')[0]}")
                continue
            yield self._example(record, lineno)

    def _array(self, stream: IO[bytes]) -> Iterator[Item]:
        raw = stream.read()
        if raw.startswith(_BOM):
            raw = raw[len(_BOM):]
            yield Malformed(self.label, 1, "file starts with a UTF-8 byte order mark (stripped)", skipped=False)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield Malformed(self.label, raw.count(b"\n", 0, e.start) + 1, f"invalid UTF-8 at byte {e.start}")
            return
        decoder = json.JSONDecoder()
        pos, line, counted = _skip_ws(text, 0), 1, 0
        if not text.startswith("[", pos):
            yield Malformed(self.label, 1, "a JSON dataset must be an array of objects")
            return
        pos = _skip_ws(text, pos + 1)
        while pos < len(text) and text[pos] != "]":
            line += text.count("\n", counted, pos)
            counted = pos
            try:
                record, end = decoder.raw_decode(text, pos)
            except (ValueError, RecursionError) as e:
                msg = getattr(e, "msg", None) or (str(e).split(";")[0] if isinstance(e, ValueError) else
                                                  "nested too deeply")
                yield Malformed(self.label, line, f"invalid JSON: {msg}; the rest of the file is skipped")
                return
            if end - pos > MAX_LINE_BYTES:
                yield Malformed(self.label, line, f"record longer than {MAX_LINE_BYTES} bytes")
            else:
                yield self._example(record, line)
            pos = _skip_ws(text, end)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif not text.startswith("]", pos):
                yield Malformed(self.label, line + text.count("\n", counted, pos), "expected ',' or ']' in array")
                return

    def _csv(self, stream: IO[bytes]) -> Iterator[Item]:
        hashed = _Hashing(stream, self._hash)
        text = io.TextIOWrapper(hashed, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
        reader = csv.DictReader(text, delimiter="\t" if self.kind == "tsv" else ",")
        start = 2
        try:
            for row in reader:
                if None in row:
                    yield Malformed(self.label, start, "more cells than header columns")
                else:
                    yield self._example({k: v for k, v in row.items() if v is not None}, start)
                start = reader.line_num + 1
        except (UnicodeDecodeError, csv.Error) as e:
            yield Malformed(self.label, start, f"unreadable CSV: {e}; the rest of the file is skipped")


class _Prefixed(io.RawIOBase):
    """A raw stream that replays already-read bytes, then hashes and passes on the rest."""

    def __init__(self, head: bytes, stream: IO[bytes], hasher: Any):
        self._head, self._stream, self._hasher = head, stream, hasher

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._stream.read(len(buffer))
        self._hasher.update(data)
        buffer[: len(data)] = data
        return len(data)


class _Hashing(_Prefixed):
    def __init__(self, stream: IO[bytes], hasher: Any):
        super().__init__(b"", stream, hasher)


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _kind(name: str) -> str:
    lowered = name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        lowered = lowered.removesuffix(suffix)
    for ext in ("csv", "tsv", "json"):
        if lowered.endswith("." + ext):
            return ext
    return "jsonl"


def open_uri(uri: str, *, base_dir: Path | None = None, fmt: str = "auto", mapping: Mapping | None = None) -> Reader:
    """A reader for a local path (relative to base_dir) or any fsspec URI."""
    if "://" not in uri:
        path = Path(uri)
        if not path.is_absolute():
            # Relative to the FineTuneJob file first, then to the working directory (a repo-relative path).
            tried = [(base_dir or Path.cwd()) / path, Path.cwd() / path]
            path = next((p for p in tried if p.exists()), tried[0])
        if not path.exists():
            raise SourceError(f"dataset {uri}: file not found (looked in {path.parent})")
        return Reader(uri, lambda: open(path, "rb"), _kind(uri), fmt, mapping)

    def opener() -> IO[bytes]:
        fs, path = filesystem(uri)
        return fs.open(path, "rb", compression="infer")

    return Reader(uri, opener, _kind(uri), fmt, mapping)


def open_configmap(name: str, key: str, *, fmt: str = "auto", mapping: Mapping | None = None) -> Reader:
    """A reader for a ConfigMap key mounted as a file (the training pod has no API access)."""
    root = Path(os.environ.get(CONFIGMAP_DIR_ENV, DEFAULT_CONFIGMAP_DIR))
    path = root / name / key
    if not path.exists():
        raise SourceError(f"dataset configMapRef {name}/{key}: not mounted at {path}")
    return Reader(f"configmap/{name}/{key}", lambda: open(path, "rb"), _kind(key), fmt, mapping)


def open_inline(examples: list[Any], *, fmt: str = "auto") -> Reader:
    """A reader for examples written into the spec; line n is the n-th example."""
    payload = "\n".join(
        json.dumps(e.model_dump(exclude_none=True) if hasattr(e, "model_dump") else e) for e in examples
    ).encode()
    return Reader("inline", lambda: io.BytesIO(payload), "jsonl", fmt, None)


def open_dataset(dataset: Any, *, base_dir: Path | None = None) -> Reader:
    """The reader of a FineTuneJob's spec.dataset (exactly one of uri, configMapRef, inline)."""
    mapping = Mapping.from_spec(dataset.field_mapping)
    if dataset.uri:
        return open_uri(dataset.uri, base_dir=base_dir, fmt=dataset.format, mapping=mapping)
    if dataset.config_map_ref:
        ref = dataset.config_map_ref
        return open_configmap(ref.name, ref.key, fmt=dataset.format, mapping=mapping)
    if dataset.inline:
        return open_inline(dataset.inline, fmt=dataset.format)
    raise SourceError("spec.dataset needs one of uri, configMapRef or inline")
