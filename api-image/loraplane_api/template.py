"""The platform team's template for FineTuneJobs made through the API, and the FineTuneJob built from a request.

A namespace's template is the ConfigMap `loraplane-finetune-template` in it (key `finetunejob.yaml`: a
FineTuneJob without a dataset; optional key `models.yaml`: model id -> spec.baseModel, the models offered);
without one, the server's own template (`--template`) applies. GPUs, queue, gates, output and credentials
come from the template; the caller chooses only the model (among those offered), the files and the few
hyperparameters OpenAI's API has.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from loraplane.api import FineTuneJob
from loraplane.api.finetunejob import TrainingSpec
from pydantic import ValidationError

from .errors import InvalidRequest, ServerError
from .requests import CreateJob

CONFIGMAP = "loraplane-finetune-template"
TEMPLATE_KEY = "finetunejob.yaml"
MODELS_KEY = "models.yaml"

LABEL_SOURCE = "loraplane.io/created-by"
SOURCE = "openai-api"
ANN_MODEL = "loraplane.io/openai-model"
ANN_TRAINING_FILE = "loraplane.io/openai-training-file"
ANN_VALIDATION_FILE = "loraplane.io/openai-validation-file"
ANN_HYPERPARAMETERS = "loraplane.io/openai-hyperparameters"
ANN_METADATA = "loraplane.io/openai-metadata"
ANN_SEED = "loraplane.io/openai-seed"
ANN_REQUESTED_BY = "loraplane.io/requested-by"
ANN_CANCELLED = "loraplane.io/cancelled-at"
# Nanoseconds since the epoch: creationTimestamp has whole seconds, lists must keep the order of creation.
ANN_CREATED_NS = "loraplane.io/openai-created-ns"


@dataclass(frozen=True)
class Template:
    """A FineTuneJob template (a dict in wire form) and the models it offers."""

    job: Mapping[str, Any]
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "the server's template"

    @classmethod
    def parse(cls, template_yaml: str, models_yaml: str | None, source: str) -> Template:
        try:
            job = yaml.safe_load(template_yaml) or {}
            models = yaml.safe_load(models_yaml) if models_yaml else None
        except yaml.YAMLError as err:
            raise ServerError(f"{source}: not valid YAML: {err}") from err
        if not isinstance(job, dict) or not isinstance(job.get("spec"), dict):
            raise ServerError(f"{source}: expected a FineTuneJob with a spec")
        if models is not None and not isinstance(models, dict):
            raise ServerError(f"{source}: {MODELS_KEY} must map model ids to spec.baseModel")
        if models is None:
            base = job["spec"].get("baseModel") or {}
            models = {base["name"]: base} if base.get("name") else {}
        return cls(job, models, source)

    @classmethod
    def from_configmap(cls, cm: Mapping[str, Any]) -> Template:
        data = cm.get("data") or {}
        source = f"ConfigMap {cm['metadata'].get('namespace')}/{cm['metadata']['name']}"
        if TEMPLATE_KEY not in data:
            raise ServerError(f"{source}: no key {TEMPLATE_KEY}")
        return cls.parse(data[TEMPLATE_KEY], data.get(MODELS_KEY), source)

    def base_model(self, model: str) -> dict[str, Any]:
        if model not in self.models:
            offered = ", ".join(sorted(self.models)) or "none"
            raise InvalidRequest(f"model {model!r} is not offered in this namespace; offered: {offered}",
                                 param="model", code="model_not_available")
        return {"name": model, **copy.deepcopy(dict(self.models[model]))}


def job_name(suffix: str | None) -> str:
    """The FineTuneJob's name, which is also the job id: ftjob-[<suffix>-]<random>."""
    rand = secrets.token_hex(6)
    return f"ftjob-{suffix}-{rand}" if suffix else f"ftjob-{rand}"


@dataclass(frozen=True)
class ResolvedHyperparameters:
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float


def build_finetunejob(template: Template, req: CreateJob, *, namespace: str, name: str, training_uri: str,
                      validation_uri: str | None, requested_by: str) -> tuple[dict[str, Any], ResolvedHyperparameters]:
    """The FineTuneJob (wire form) for a request, validated against the API types."""
    job = copy.deepcopy(dict(template.job))
    spec: dict[str, Any] = job["spec"]
    spec["baseModel"] = template.base_model(req.model)
    dataset = spec.setdefault("dataset", {})
    for source in ("uri", "configMapRef", "inline"):
        dataset.pop(source, None)
    dataset["uri"] = training_uri
    dataset.setdefault("format", "auto")
    if validation_uri:
        dataset["validationUri"] = validation_uri
    training = spec.setdefault("training", {})
    hp = req.effective_hyperparameters
    if hp.n_epochs != "auto":
        training["epochs"] = hp.n_epochs
    if hp.batch_size != "auto":
        training["batchSize"] = hp.batch_size
    base_lr = float(training.get("learningRate", TrainingSpec().learning_rate))
    multiplier = 1.0 if hp.learning_rate_multiplier == "auto" else float(hp.learning_rate_multiplier)
    training["learningRate"] = base_lr * multiplier
    if req.seed is not None:
        training["seed"] = req.seed
        dataset["seed"] = req.seed
    spec.pop("schedule", None)  # one API job is one run
    spec["suspend"] = False
    meta = job.setdefault("metadata", {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items()}
    annotations.update({
        ANN_MODEL: req.model,
        ANN_TRAINING_FILE: req.training_file,
        ANN_REQUESTED_BY: requested_by,
    })
    if req.validation_file:
        annotations[ANN_VALIDATION_FILE] = req.validation_file
    if req.metadata:
        annotations[ANN_METADATA] = json.dumps(req.metadata, sort_keys=True)
    job["apiVersion"] = "loraplane.io/v1alpha1"
    job["kind"] = "FineTuneJob"
    job["metadata"] = {"name": name, "namespace": namespace,
                       "labels": {**(meta.get("labels") or {}), LABEL_SOURCE: SOURCE},
                       "annotations": annotations}
    try:
        typed = FineTuneJob.model_validate(job)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"the FineTuneJob built from {template.source} and this request is invalid: "
                             f"{where}: {first['msg']}") from None
    resolved = ResolvedHyperparameters(typed.spec.training.epochs, typed.spec.training.batch_size, multiplier)
    seed = typed.spec.training.seed
    job["metadata"]["annotations"][ANN_SEED] = str(seed)
    job["metadata"]["annotations"][ANN_HYPERPARAMETERS] = json.dumps(
        {"n_epochs": resolved.n_epochs, "batch_size": resolved.batch_size,
         "learning_rate_multiplier": resolved.learning_rate_multiplier}, sort_keys=True)
    return job, resolved
