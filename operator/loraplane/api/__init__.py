"""The LoRAPlane API types: the single source of truth for the CRDs."""

from .base import Condition, ObjectMeta
from .chatbotdeployment import (
    BASE_VARIANT,
    ChatbotDeployment,
    ChatbotDeploymentSpec,
    ChatbotDeploymentStatus,
)
from .finetunejob import FineTuneJob, FineTuneJobSpec, FineTuneJobStatus

KINDS = (FineTuneJob, ChatbotDeployment)

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
    "ObjectMeta",
]
