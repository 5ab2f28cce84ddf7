"""Status helpers shared by both controllers: kstatus conditions computed in memory, compared, patched once."""

from .conditions import (
    READY,
    RECONCILING,
    STALLED,
    ConditionSet,
    kstatus,
    set_condition,
    status_diff,
)

__all__ = ["READY", "RECONCILING", "STALLED", "ConditionSet", "kstatus", "set_condition", "status_diff"]
