"""spec.schedule: when a scheduled retrain is due."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter


def next_fire(schedule: str, after: datetime) -> datetime:
    """The first time the cron schedule fires after `after` (timezone kept)."""
    return croniter(schedule, after).get_next(datetime)


def due(schedule: str, last: datetime, now: datetime) -> bool:
    """Whether the schedule fired between `last` (the last run or check) and `now`."""
    return next_fire(schedule, last) <= now


def run_suffix(now: datetime) -> str:
    """Run-id suffix of a scheduled rerun: `s<yyyymmddhhmmss>`."""
    return "s" + now.strftime("%Y%m%d%H%M%S")
