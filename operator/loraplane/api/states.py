"""Named states of both kinds: phases, condition types and reasons, shared by the trainer and the operator.

Behaviour keys on these, never on message text: a reason may be reworded in a
message, its enum value is the contract (status, events, alerts, Argo CD health).
"""

from __future__ import annotations

from enum import StrEnum


class FineTuneJobPhase(StrEnum):
    """status.phase of a FineTuneJob."""

    PENDING = "Pending"
    VALIDATING = "Validating"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"

    @property
    def terminal(self) -> bool:
        return self in (FineTuneJobPhase.SUCCEEDED, FineTuneJobPhase.FAILED)


class RunPhase(StrEnum):
    """The trainer's own phase of one run, in progress.json."""

    VALIDATING = "Validating"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    PUBLISHING = "Publishing"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class ChatbotPhase(StrEnum):
    """status.phase of a ChatbotDeployment: a display value derived from the rollout and the children."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    CANARY = "Canary"
    HEALTHY = "Healthy"
    ROLLED_BACK = "RolledBack"
    DEGRADED = "Degraded"


class RolloutPhase(StrEnum):
    """status.rollout.state: what the canary state machine reads back (never status.phase)."""

    IDLE = "Idle"  # no canary: the stable serves its share
    RUNNING = "Running"  # a canary takes (or is about to take) traffic
    ROLLED_BACK = "RolledBack"  # the canary failed; it stays named so it is not started again


class ConditionType(StrEnum):
    """Condition types: the kstatus three, then each kind's own."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    # FineTuneJob
    DATASET_VALID = "DatasetValid"
    QUALITY_GATE_PASSED = "QualityGatePassed"
    SUSPENDED = "Suspended"
    HUMAN_EVALUATION_PASSED = "HumanEvaluationPassed"
    # ChatbotDeployment
    ADAPTERS_RESOLVED = "AdaptersResolved"
    CANARY_ANALYSIS = "CanaryAnalysis"
    # ChatbotDeployment on a ModelPool (as a Gateway API route on its listener)
    ACCEPTED = "Accepted"


class Reason(StrEnum):
    """CamelCase reasons of conditions, events and failures."""

    # FineTuneJob: where the run is
    CREATING = "Creating"
    QUEUED = "Queued"
    SCHEDULING = "Scheduling"
    VALIDATING = "Validating"
    TRAINING = "Training"
    EVALUATING = "Evaluating"
    SUCCEEDED = "Succeeded"
    SUSPENDED = "Suspended"
    # FineTuneJob: why a run failed (the trainer's errors carry the first group)
    FAILED = "Failed"
    INVALID_SPEC = "InvalidSpec"
    LICENSE_REFUSED = "LicenseRefused"
    QUANTIZATION_UNSUPPORTED = "QuantizationUnsupported"
    DATASET_INVALID = "DatasetInvalid"
    MODEL_NOT_FOUND = "ModelNotFound"
    AUGMENTATION_FAILED = "AugmentationFailed"
    QUALITY_GATE_FAILED = "QualityGateFailed"
    TRAINING_FAILED = "TrainingFailed"
    BAD_INPUT = "BadInput"
    OUT_OF_MEMORY = "OutOfMemory"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    POD_CONFIG_ERROR = "PodConfigError"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    JOB_FAILED = "JobFailed"
    JOB_REFUSED = "JobRefused"
    # FineTuneJob: domain conditions
    DATASET_CHECKED = "DatasetChecked"
    GATES_PASSED = "GatesPassed"
    AWAITING_HUMAN_EVALUATION = "AwaitingHumanEvaluation"
    HUMAN_EVALUATION_PASSED = "HumanEvaluationPassed"
    HUMAN_EVALUATION_FAILED = "HumanEvaluationFailed"
    # ChatbotDeployment
    RESOLVED = "Resolved"
    ADAPTER_NOT_SERVABLE = "AdapterNotServable"
    ANALYSING = "Analysing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    # ChatbotDeployment on a ModelPool: Accepted's reasons, named as Gateway API names a route's
    ACCEPTED = "Accepted"
    POOL_NOT_FOUND = "PoolNotFound"
    NOT_ALLOWED_BY_POOL = "NotAllowedByPool"
    NAME_CONFLICT = "NameConflict"
    API_KEY_SECRET_NOT_FOUND = "ApiKeySecretNotFound"
    # ModelPool
    CHILDREN_READY = "ChildrenReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"


class NamespacesFrom(StrEnum):
    """Which namespaces' ChatbotDeployments may attach to a ModelPool (Gateway API's FromNamespaces)."""

    SAME = "Same"
    ALL = "All"
    SELECTOR = "Selector"


class HumanEvaluationState(StrEnum):
    """Where an adapter stands with spec.evaluation.human (status.adapter.humanEvaluation.state)."""

    PENDING = "Pending"  # no evaluation attached yet, or too few ratings
    PASSED = "Passed"
    FAILED = "Failed"  # enough ratings, and the people did not prefer it enough


class ProblemKind(StrEnum):
    """What kind of trouble an adapter entry is in; it decides the ChatbotDeployment's phase."""

    WAITING = "Waiting"  # not published yet, or its FineTuneJob not there yet: may resolve by itself
    BROKEN = "Broken"  # rejected by a quality gate or unreadable: needs a change (Degraded)
