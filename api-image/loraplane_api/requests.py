"""The body of POST /v1/fine_tuning/jobs, typed. Unknown fields, other methods and integrations are refused."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidRequest

SUFFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
UNSUPPORTED_METHODS = ("dpo", "reinforcement")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HyperparametersIn(Strict):
    batch_size: int | Literal["auto"] = Field(default="auto")
    learning_rate_multiplier: float | Literal["auto"] = Field(default="auto")
    n_epochs: int | Literal["auto"] = Field(default="auto")


class SupervisedIn(Strict):
    hyperparameters: HyperparametersIn = Field(default_factory=HyperparametersIn)


class MethodIn(Strict):
    type: Literal["supervised"]
    supervised: SupervisedIn = Field(default_factory=SupervisedIn)


class CreateJob(Strict):
    model: str = Field(min_length=1, max_length=256)
    training_file: str
    validation_file: str | None = None
    hyperparameters: HyperparametersIn | None = None
    method: MethodIn | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    integrations: list[Any] | None = None

    @property
    def effective_hyperparameters(self) -> HyperparametersIn:
        if self.method is not None:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or HyperparametersIn()


def _param(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("int", "float", "literal['auto']", "str"):  # union branch names are not fields
            out += ("." if out else "") + str(part)
    return out


def parse_create(body: Any) -> CreateJob:
    """The typed request, or InvalidRequest naming the field at fault."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    method = body.get("method")
    if isinstance(method, dict) and method.get("type") in UNSUPPORTED_METHODS:
        raise InvalidRequest(f"method {method['type']!r} is not supported here: only 'supervised' (LoRA SFT) is",
                             param="method.type", code="unsupported_method")
    if body.get("integrations"):
        raise InvalidRequest("integrations are not supported here", param="integrations", code="unsupported_parameter")
    if body.get("hyperparameters") and body.get("method"):
        raise InvalidRequest("give hyperparameters in method.supervised.hyperparameters or in hyperparameters, "
                             "not both", param="hyperparameters")
    try:
        req = CreateJob.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        param = _param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise InvalidRequest(f"unsupported parameter {param!r}", param=param,
                                 code="unsupported_parameter") from None
        raise InvalidRequest(f"{param}: {first['msg']}", param=param) from None
    if req.suffix is not None and (not SUFFIX.match(req.suffix) or len(req.suffix) > 40):
        raise InvalidRequest("suffix must be at most 40 lowercase letters, digits and '-' (it becomes part of the "
                             "model name)", param="suffix")
    for key, value in (req.metadata or {}).items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequest("metadata keys are at most 64 characters, values at most 512", param="metadata")
    hp = req.effective_hyperparameters
    for name, value in (("n_epochs", hp.n_epochs), ("batch_size", hp.batch_size)):
        if value != "auto" and value < 1:
            raise InvalidRequest(f"{name} must be at least 1", param=f"hyperparameters.{name}")
    if hp.learning_rate_multiplier != "auto" and hp.learning_rate_multiplier <= 0:
        raise InvalidRequest("learning_rate_multiplier must be greater than 0",
                             param="hyperparameters.learning_rate_multiplier")
    return req
