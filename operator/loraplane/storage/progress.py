"""progress.json: the trainer's running account of a run, copied into FineTuneJob status by the operator."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from .uris import filesystem

PROGRESS_FILE = "progress.json"

RunPhase = Literal["Validating", "Training", "Evaluating", "Publishing", "Succeeded", "Failed"]


class RunProgress(BaseModel):
    """What progress.json holds. Written often, atomically (write then rename where the store allows)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    phase: RunPhase
    run_id: str | None = None
    epoch: float | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    tokens_per_second: float | None = None
    eta: datetime | None = None
    gpu_seconds: float | None = None
    updated_at: datetime | None = None
    message: str | None = None
    # Compact dataset summary (the shape of FineTuneJob status.dataset), once validation ran.
    dataset: dict[str, Any] | None = None
    # Final evaluation figures (the shape of FineTuneJob status.metrics), once known.
    metrics: dict[str, Any] | None = None
    # Published adapter, once known: {version, uri, sha256, verdict, reason}.
    adapter: dict[str, Any] | None = None
    # Failure classification for the operator: e.g. DatasetInvalid, LicenseRefused, QualityGateFailed.
    reason: str | None = None

    @property
    def percent(self) -> int | None:
        if self.step is None or not self.total_steps:
            return None
        return max(0, min(100, int(100 * self.step / self.total_steps)))

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True, mode="json"), indent=2) + "\n"


def read_progress(uri: str) -> RunProgress | None:
    """The progress at uri, or None when there is none yet (or it is mid-write and unreadable)."""
    fs, path = filesystem(uri)
    # progress.json is rewritten while readers poll it: a cached listing would pin an old ETag (S3 answers 412).
    fs.invalidate_cache(path)
    try:
        with fs.open(path, "rb") as f:
            return RunProgress.model_validate_json(f.read())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
