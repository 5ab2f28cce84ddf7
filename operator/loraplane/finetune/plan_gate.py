"""The plan of a FineTuneJob in the controller: computed before the Job exists, and a refusal when it cannot fit.

A job whose predicted peak memory per GPU exceeds the GPU it asks for fails at once with
reason DoesNotFit and the plan in its message, and no Job (no pod) is created. A job whose
model shape is unknown (no config.json reachable) or whose GPU type is not in the table is
planned as far as possible and never refused.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.finetunejob import FineTuneJobSpec
from ..planning import Plan, ShapeUnknown, make_plan, model_shape
from ..planning.dataset import dataset_size
from ..planning.report import plan_status
from ..status.conditions import ConditionSet, kstatus
from .runs import fs_options

DOES_NOT_FIT = "DoesNotFit"


@dataclass(frozen=True)
class JobPlan:
    plan: Plan | None
    error: str | None = None  # why there is no plan

    @property
    def refuses(self) -> bool:
        return self.plan is not None and self.plan.fits is False

    @property
    def sharded(self) -> bool:
        """The plan trains the job with FSDP (the trainer is told so: `--strategy fsdp`)."""
        return self.plan is not None and self.plan.job is not None and self.plan.job.strategy.sharded


@functools.lru_cache(maxsize=512)
def _plan(spec_json: str, creds_json: str) -> JobPlan:
    creds = json.loads(creds_json)
    try:
        spec = FineTuneJobSpec.model_validate(json.loads(spec_json))
    except ValidationError as exc:
        return JobPlan(None, f"spec: {exc.errors()[0]['msg']}")
    base = spec.base_model
    try:
        options = fs_options(base.uri, creds) if base.uri else None
        shape = model_shape(base.name, base.uri, base.revision, storage_options=options)
    except (ShapeUnknown, OSError, ValueError) as exc:
        return JobPlan(None, f"no plan: {exc}")
    data_options = fs_options(spec.dataset.uri, creds) if spec.dataset.uri else None
    return JobPlan(make_plan(spec, shape, dataset_size(spec, storage_options=data_options, read=False)))


def job_plan(spec: Mapping[str, Any], creds: Mapping[str, str]) -> JobPlan:
    """The plan of a spec (cached per spec and credentials: reconciles repeat often). Blocking I/O: run in a thread."""
    return _plan(json.dumps(spec, sort_keys=True), json.dumps(dict(creds), sort_keys=True))


def with_plan(status: dict[str, Any], job_plan: JobPlan, *, refused: bool, generation: int | None,
              now: str) -> dict[str, Any]:
    """status with status.plan, and, when refused, phase Failed for DoesNotFit (Ready False, Stalled)."""
    out = dict(status)
    if job_plan.plan is not None:
        out["plan"] = plan_status(job_plan.plan)
    elif job_plan.error:
        out["plan"] = {"message": job_plan.error[:1024]}
    if refused and job_plan.plan is not None:
        message = f"does not fit: {job_plan.plan.summary()}"[:4096]
        conds = ConditionSet(out.get("conditions"), generation=generation, now=now)
        kstatus(conds, ready=False, reason=DOES_NOT_FIT, message=message, stalled=True)
        out.update(phase="Failed", message=message, conditions=conds.to_list())
    return out
