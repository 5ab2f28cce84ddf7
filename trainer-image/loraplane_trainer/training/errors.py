"""Failures that retrying cannot fix: each carries the reason the operator shows and the exit code."""

from __future__ import annotations

from loraplane.exitcodes import BAD_INPUT


class TrainerError(Exception):
    """A run that must stop with `reason` (a CamelCase word for status) and `exit_code`."""

    reason = "Failed"
    exit_code = 1

    def __init__(self, message: str, *, reason: str | None = None):
        super().__init__(message)
        if reason:
            self.reason = reason


class BadInput(TrainerError):
    """Bad spec, dataset or model: the Job fails at once (exit 42), it is not retried."""

    reason = "InvalidSpec"
    exit_code = BAD_INPUT


class LicenseRefused(BadInput):
    reason = "LicenseRefused"


class QuantizationUnsupported(BadInput):
    reason = "QuantizationUnsupported"


class DatasetInvalid(BadInput):
    reason = "DatasetInvalid"


class ModelNotFound(BadInput):
    reason = "ModelNotFound"
