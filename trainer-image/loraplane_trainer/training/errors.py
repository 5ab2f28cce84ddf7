"""Failures that retrying cannot fix: each carries the reason the operator shows and the exit code."""

from __future__ import annotations

from loraplane.api.states import Reason
from loraplane.exitcodes import BAD_INPUT


class TrainerError(Exception):
    """A run that must stop with `reason` (shown in status) and `exit_code`."""

    reason: Reason = Reason.FAILED
    exit_code = 1

    def __init__(self, message: str, *, reason: Reason | None = None):
        super().__init__(message)
        if reason:
            self.reason = reason


class BadInput(TrainerError):
    """Bad spec, dataset or model: the Job fails at once (exit 42), it is not retried."""

    reason = Reason.INVALID_SPEC
    exit_code = BAD_INPUT


class LicenseRefused(BadInput):
    reason = Reason.LICENSE_REFUSED


class QuantizationUnsupported(BadInput):
    reason = Reason.QUANTIZATION_UNSUPPORTED


class DatasetInvalid(BadInput):
    reason = Reason.DATASET_INVALID


class ModelNotFound(BadInput):
    reason = Reason.MODEL_NOT_FOUND
