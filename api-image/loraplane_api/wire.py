"""The OpenAI wire shapes this API answers with, as the official SDK (openai-python) parses them.

Field names, types and literals follow `openai.types` (FileObject, FileDeleted, FineTuningJob,
FineTuningJobEvent, FineTuningJobCheckpoint) and the SDK's cursor pages (`data`, `has_more`, next page
`after=<last id>`). The tests parse every answer with the SDK's own models in strict mode.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class JobStatus(StrEnum):
    """OpenAI's fine-tuning job statuses."""

    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FilePurpose(StrEnum):
    FINE_TUNE = "fine-tune"


class FileStatus(StrEnum):
    PROCESSED = "processed"


class EventLevel(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


class EventType(StrEnum):
    MESSAGE = "message"
    METRICS = "metrics"


class FileObject(Wire):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: FilePurpose = FilePurpose.FINE_TUNE
    status: FileStatus = FileStatus.PROCESSED
    status_details: str | None = None
    expires_at: int | None = None


class FileDeleted(Wire):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


class JobError(Wire):
    code: str
    message: str
    param: str | None = None


class Hyperparameters(Wire):
    batch_size: int | Literal["auto"] | None = None
    learning_rate_multiplier: float | Literal["auto"] | None = None
    n_epochs: int | Literal["auto"] | None = None


class SupervisedMethod(Wire):
    hyperparameters: Hyperparameters | None = None


class Method(Wire):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class FineTuningJob(Wire):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: Hyperparameters
    model: str
    organization_id: str
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: JobStatus
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: Method | None = None


class FineTuningJobEvent(Wire):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: EventLevel = EventLevel.INFO
    message: str
    data: dict[str, Any] | None = None
    type: EventType = EventType.MESSAGE


class CheckpointMetrics(Wire):
    full_valid_loss: float | None = None
    full_valid_mean_token_accuracy: float | None = None
    step: float | None = None
    train_loss: float | None = None
    train_mean_token_accuracy: float | None = None
    valid_loss: float | None = None
    valid_mean_token_accuracy: float | None = None


class FineTuningJobCheckpoint(Wire):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: CheckpointMetrics
    step_number: int


class Page(Wire, Generic[T]):
    """A cursor page: the SDK asks for the next one with after=<id of the last item> while has_more."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    first_id: str | None = None
    last_id: str | None = None


def page(items: list[Any], *, after: str | None, limit: int, id_of=lambda item: item.id) -> Page:
    """The page of `items` (already in answer order) that follows the item with id `after`."""
    start = 0
    if after is not None:
        ids = [id_of(item) for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chunk = items[start:start + limit]
    return Page(data=chunk, has_more=start + limit < len(items),
                first_id=id_of(chunk[0]) if chunk else None, last_id=id_of(chunk[-1]) if chunk else None)
