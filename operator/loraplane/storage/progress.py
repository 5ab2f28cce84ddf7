"""progress.json: the trainer's running account of a run, copied into FineTuneJob status by the operator."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler, field_validator
from pydantic.alias_generators import to_camel

from ..api.finetunejob import AdapterStatus, DatasetStatus, MetricsStatus
from ..api.states import Reason, RunPhase
from .uris import filesystem

PROGRESS_FILE = "progress.json"


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
    # The status models themselves: what the trainer writes is what the operator copies into status.
    dataset: DatasetStatus | None = None  # once validation ran
    metrics: MetricsStatus | None = None  # final evaluation figures, once known
    adapter: AdapterStatus | None = None  # the published adapter, once known
    # Failure classification for the operator: e.g. DatasetInvalid, LicenseRefused, QualityGateFailed.
    reason: Reason | str | None = None

    @field_validator("dataset", "metrics", "adapter", mode="wrap")
    @classmethod
    def _drop_invalid(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """A part that does not fit the status schema is dropped, not the whole progress.

        The API server would refuse (or prune) a status patch carrying it; the rest of
        the run's progress still shows.
        """
        try:
            return handler(value)
        except ValidationError:
            return None

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
