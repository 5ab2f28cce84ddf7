"""kstatus conditions (Ready, Reconciling, Stalled) and domain conditions, as tools like Argo CD read them.

A controller computes the whole desired status in memory, then patches only what
changed, once per reconcile:

    conds = ConditionSet(status.get("conditions"), generation=meta["generation"], now=now)
    conds.set("DatasetValid", True, "Checked", "1850 examples, 3 warnings")
    kstatus(conds, ready=False, reconciling="Training", message="step 120/450")
    new = {**status, "phase": "Training", "conditions": conds.to_list()}
    patch = status_diff(status, new)
    if patch:
        ...  # write `patch` into status (kopf: patch.status.update(patch))

Conventions (kstatus): Reconciling=True while work is in progress, Stalled=True when
it cannot progress without a change from the user, Ready=True when the object
reached its goal. A condition's lastTransitionTime moves only when its status moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from ..api.states import ConditionType

READY = ConditionType.READY
RECONCILING = ConditionType.RECONCILING
STALLED = ConditionType.STALLED

_KSTATUS_ORDER = (READY, RECONCILING, STALLED)


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _status_str(value: bool | str | None) -> str:
    if value is True:
        return "True"
    if value is False:
        return "False"
    return value or "Unknown"


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    type_: str,
    status: bool | str | None,
    reason: str,
    message: str = "",
    *,
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with condition `type_` set; lastTransitionTime is kept unless the status changes."""
    out = [dict(c) for c in conditions or []]
    new = {"type": type_, "status": _status_str(status), "reason": reason, "message": message[:32768]}
    if generation is not None:
        new["observedGeneration"] = generation
    for i, old in enumerate(out):
        if old.get("type") == type_:
            same = old.get("status") == new["status"]
            new["lastTransitionTime"] = old.get("lastTransitionTime") if same and old.get("lastTransitionTime") else (
                now or _now()
            )
            out[i] = new
            return out
    new["lastTransitionTime"] = now or _now()
    out.append(new)
    return out


class ConditionSet:
    """A mutable set of conditions of one object, keyed by type, kept in a stable order."""

    def __init__(
        self,
        conditions: Iterable[Mapping[str, Any]] | None = None,
        *,
        generation: int | None = None,
        now: str | None = None,
    ) -> None:
        self._conditions = [dict(c) for c in conditions or []]
        self.generation = generation
        self.now = now or _now()

    def set(self, type_: str, status: bool | str | None, reason: str, message: str = "") -> None:
        self._conditions = set_condition(
            self._conditions, type_, status, reason, message, generation=self.generation, now=self.now
        )

    def remove(self, type_: str) -> None:
        self._conditions = [c for c in self._conditions if c.get("type") != type_]

    def get(self, type_: str) -> dict[str, Any] | None:
        return next((c for c in self._conditions if c.get("type") == type_), None)

    def is_true(self, type_: str) -> bool:
        c = self.get(type_)
        return bool(c and c.get("status") == "True")

    def to_list(self) -> list[dict[str, Any]]:
        """kstatus conditions first (Ready, Reconciling, Stalled), then domain conditions by type."""
        order = {t: i for i, t in enumerate(_KSTATUS_ORDER)}
        return sorted(self._conditions, key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def kstatus(
    conds: ConditionSet,
    *,
    ready: bool,
    reason: str,
    message: str = "",
    reconciling: bool = False,
    stalled: bool = False,
) -> None:
    """Set Ready, Reconciling and Stalled together, so they never contradict each other.

    Reconciling and Stalled are removed when false, as kstatus recommends (an absent
    abnormal-true condition means False).
    """
    if stalled and reconciling:
        raise ValueError("an object cannot be Reconciling and Stalled at once")
    conds.set(READY, ready, reason, message)
    if reconciling:
        conds.set(RECONCILING, True, reason, message)
    else:
        conds.remove(RECONCILING)
    if stalled:
        conds.set(STALLED, True, reason, message)
    else:
        conds.remove(STALLED)


def status_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning status `old` into `new`; empty means nothing to write.

    Nested objects are diffed too, so a key gone from a nested map (a variant's weight)
    is sent as None and removed, instead of surviving the merge.
    """
    old = old or {}
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            nested = isinstance(value, Mapping) and isinstance(old[key], Mapping)
            patch[key] = status_diff(old[key], value) if nested else value
    for key in old:
        if key not in new and old[key] is not None:
            patch[key] = None
    return patch
