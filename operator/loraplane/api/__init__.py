"""The LoRAPlane API types: the single source of truth for the CRDs."""

from .base import Condition, ObjectMeta
from .chatbotdeployment import (
    BASE_VARIANT,
    ChatbotDeployment,
    ChatbotDeploymentSpec,
    ChatbotDeploymentStatus,
)
from .finetunejob import FineTuneJob, FineTuneJobSpec, FineTuneJobStatus
from .modelpool import ModelPool, ModelPoolSpec, ModelPoolStatus

KINDS = (FineTuneJob, ChatbotDeployment, ModelPool)

__all__ = [
    "BASE_VARIANT",
    "KINDS",
    "ChatbotDeployment",
    "ChatbotDeploymentSpec",
    "ChatbotDeploymentStatus",
    "Condition",
    "FineTuneJob",
    "FineTuneJobSpec",
    "FineTuneJobStatus",
    "ModelPool",
    "ModelPoolSpec",
    "ModelPoolStatus",
    "ObjectMeta",
]
