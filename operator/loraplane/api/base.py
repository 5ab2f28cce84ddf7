"""Shared building blocks of the API types: the camelCase base model and small reusable types."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# A Kubernetes-style duration such as "90s", "10m", "1h30m"; at most 6 digits a part, so every
# admitted duration fits a datetime (a century and more), and none overflows in the operator.
DURATION_PATTERN = r"^([0-9]{1,6}(ms|s|m|h))+$"
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# An RFC 1123 label: names of adapters, variants and Kubernetes objects.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
# A label value: node labels (gpu.product), Kueue's queue-name label.
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
LabelValue = Annotated[str, Field(pattern=LABEL_VALUE_PATTERN, max_length=63)]
# An RFC 1123 subdomain: PriorityClass names and other cluster-scoped object names.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A name that can also be a Service's (RFC 1035: a letter first, no dots): the children are named after it.
# (generateName objects have no name yet when rules run: has() keeps the rule total.)
SERVICE_NAME_RULE = "!has(self.metadata.name) || self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')"
# Any fsspec URI (file://, s3://, gs://, ...) or a local path.
Uri = Annotated[str, Field(min_length=1, max_length=2048)]


def parse_duration(text: str) -> timedelta:
    """A Kubernetes-style duration ("90s", "10m", "1h30m", "500ms") as a timedelta."""
    parts = _DURATION_PART.findall(text or "")
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 30s, 10m, 1h30m)")
    return timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))


def cel(rule: str, message: str, **extra: Any) -> dict[str, Any]:
    """One `x-kubernetes-validations` entry."""
    return {"rule": rule, "message": message, **extra}


class ApiModel(BaseModel):
    """Base of every API type: camelCase on the wire, snake_case in Python, unknown fields refused."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as it is stored in Kubernetes: camelCase, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class StatusModel(ApiModel):
    """Status types tolerate fields written by newer operators."""

    model_config = ConfigDict(extra="ignore")


class SecretKeyRef(ApiModel):
    """A key in a Secret of the object's namespace."""

    name: DnsLabel = Field(description="Name of the Secret.")
    key: str = Field(min_length=1, max_length=253, description="Key within the Secret.")


class SecretRef(ApiModel):
    """A whole Secret of the object's namespace."""

    name: DnsLabel = Field(description="Name of the Secret.")


class LabelSelectorRequirement(ApiModel):
    """One matchExpressions entry of a metav1.LabelSelector."""

    key: str = Field(min_length=1, max_length=316, description="Label key.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(description="In, NotIn, Exists or DoesNotExist.")
    values: list[str] = Field(
        default_factory=list, max_length=64, description="Values for In and NotIn; empty for Exists and DoesNotExist."
    )


class LabelSelector(ApiModel):
    """A metav1.LabelSelector: every matchLabels pair and every expression must hold; empty matches all."""

    match_labels: dict[str, str] = Field(default_factory=dict, description="Labels that must be present with these values.")
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list, max_length=32, description="Set-based requirements."
    )


class ConfigMapKeyRef(ApiModel):
    """A key in a ConfigMap of the object's namespace."""

    name: DnsLabel = Field(description="Name of the ConfigMap.")
    key: str = Field(min_length=1, max_length=253, description="Key within the ConfigMap.")


class Toleration(ApiModel):
    """A core/v1 Toleration."""

    model_config = {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                cel("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "a toleration with operator Exists must not have a value"),
            ]
        }
    }

    key: str | None = Field(default=None, max_length=316, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value for Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all."
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="How long a NoExecute taint is tolerated."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(StatusModel):
    """A kstatus-style condition, as in metav1.Condition."""

    type: str = Field(max_length=316, description="Condition type, e.g. Ready, Reconciling, Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", max_length=1024, description="CamelCase reason for the last transition.")
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed for."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the status last changed."
    )


class ObjectMeta(BaseModel):
    """The part of metadata the API types look at; everything else is kept as is."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)

    name: str = ""
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
