"""Which object runs a training run: a batch/v1 Job on one node, a JobSet on several. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.finetunejob import FineTuneJob, FineTuneJobSpec, RunStatus
from ..config import OperatorConfig
from .training_job import training_job
from .training_jobset import JOBSET_API, JOBSET_NAME_LABEL, training_jobset


@dataclass(frozen=True)
class WorkloadKind:
    """The API type of a run's workload and the label its pods carry."""

    api_version: str
    kind: str
    pod_label: str

    def pod_selector(self, name: str) -> str:
        return f"{self.pod_label}={name}"


JOB = WorkloadKind("batch/v1", "Job", "job-name")
JOBSET = WorkloadKind(JOBSET_API, "JobSet", JOBSET_NAME_LABEL)
KINDS = (JOB, JOBSET)


def workload_kind(spec: FineTuneJobSpec) -> WorkloadKind:
    return JOBSET if spec.resources.nodes > 1 else JOB


def training_workload(ftj: FineTuneJob, run: RunStatus, cfg: OperatorConfig, *, sharded: bool = False) -> dict[str, Any]:
    """The Job or JobSet of one training run (`sharded`: the plan trains it with FSDP)."""
    build = training_jobset if workload_kind(ftj.spec) is JOBSET else training_job
    return build(ftj, run, cfg, sharded=sharded)
