"""How much a job trains on, estimated before the dataset is prepared: from its size in bytes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..api.finetunejob import FineTuneJobSpec
from ..storage.uris import filesystem, is_local
from .plan import DatasetSize

READ_LIMIT = 64 * 1024**2  # files up to this size are read (lines, longest example); larger ones only sized


def _variations(spec: FineTuneJobSpec) -> int:
    pv = spec.augmentation.prompt_variations if spec.augmentation else None
    return pv.per_example if pv else 0


def dataset_size(spec: FineTuneJobSpec, *, storage_options: Mapping[str, Any] | None = None,
                 read: bool | None = None) -> DatasetSize | None:
    """DatasetSize of spec.dataset (inline, or a file's size; local files are read for lines and longest line).

    None for a ConfigMap dataset or an unreadable file: the plan then has no time or cost.
    """
    ds = spec.dataset
    common = {"validation_split": ds.validation_split, "variations_per_example": _variations(spec)}
    if ds.inline:
        lines = [json.dumps(e.model_dump(exclude_none=True)) for e in ds.inline]
        return DatasetSize.of_bytes(sum(map(len, lines)), lines=len(lines), longest_line_bytes=max(map(len, lines)),
                                    source="inline", **common)
    if not ds.uri:
        return None
    try:
        if storage_options:
            from fsspec.core import url_to_fs

            fs, path = url_to_fs(ds.uri, **storage_options)
        else:
            fs, path = filesystem(ds.uri)
        nbytes = int(fs.size(path))
        if (read if read is not None else is_local(ds.uri)) and nbytes <= READ_LIMIT:
            with fs.open(path, "rb") as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
            return DatasetSize.of_bytes(nbytes, lines=len(lines), longest_line_bytes=max(map(len, lines), default=0),
                                        source=ds.uri, **common)
        return DatasetSize.of_bytes(nbytes, source=ds.uri, **common)
    except (OSError, ValueError):
        return None
