"""Which run a FineTuneJob asks for now (status.currentRun). Pure.

A run is one generation's spec trained once: editing `suspend` or `schedule` keeps
the run (no retraining), any other spec change starts the run of the new generation,
and a scheduled retrain starts a run of the same generation with a suffix.
"""

from __future__ import annotations

import hashlib
import json

from ..api.finetunejob import FineTuneJob, FineTuneJobSpec, RunStatus
from ..builders.training_job import job_name
from ..storage import run_id

# Changing these pauses or schedules; it does not make a new run.
NOT_RETRAINING = frozenset({"suspend", "schedule"})


def training_spec_hash(spec: FineTuneJobSpec) -> str:
    """Hash of the spec fields that define a run (all but suspend and schedule).

    Fields at their defaults are left out, so a newer API type with one more defaulted
    field does not retrain every job.
    """
    wire = spec.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json")
    relevant = {k: v for k, v in wire.items() if k not in NOT_RETRAINING}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def make_run(ftj: FineTuneJob, generation: int, digest: str, suffix: str | None = None) -> RunStatus:
    meta = ftj.metadata
    return RunStatus(generation=generation, spec_hash=digest, suffix=suffix,
                     run_id=run_id(meta.uid or "", generation, suffix),
                     job_name=job_name(meta.name, generation, suffix, ftj.spec.resources.nodes))


def current_run(ftj: FineTuneJob, suffix: str | None = None) -> RunStatus:
    """The run asked for now: the recorded one while the spec trains the same, else the new generation's.

    `suffix` (a scheduled retrain) starts a new run of the recorded generation.
    """
    digest = training_spec_hash(ftj.spec)
    recorded = ftj.status.current_run if ftj.status else None
    if recorded is not None and recorded.spec_hash == digest:
        if suffix is None:
            return recorded
        return make_run(ftj, recorded.generation, digest, suffix)
    return make_run(ftj, ftj.metadata.generation or 1, digest, suffix)
