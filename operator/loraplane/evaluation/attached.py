"""A session's outcome stored beside the adapter it judged (`human-evaluation.json`), where the canary
analysis reads it: the operator needs no access to the session itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel

from ..storage.uris import filesystem, join
from .results import MIN_RATERS, Results

HUMAN_EVALUATION_FILE = "human-evaluation.json"


class HumanEvaluation(BaseModel):
    session: str
    candidate: str
    baseline: str
    win_rate: float | None
    enough_ratings: bool  # every item rated by MIN_RATERS or more raters
    raters: int
    items: int
    attached_at: datetime


def from_results(res: Results, min_raters: int = MIN_RATERS) -> HumanEvaluation:
    return HumanEvaluation(session=res.session, candidate=res.candidate, baseline=res.baseline,
                           win_rate=res.win_rate.mean, raters=res.raters, items=res.items,
                           enough_ratings=res.raters >= min_raters and res.items_fully_rated == res.items,
                           attached_at=datetime.now(UTC))


def attach(adapter_uri: str, evaluation: HumanEvaluation) -> str:
    """Write human-evaluation.json into the adapter's prefix; returns its URI."""
    uri = join(adapter_uri, HUMAN_EVALUATION_FILE)
    fs, path = filesystem(uri)
    with fs.open(path, "wb") as f:
        f.write(evaluation.model_dump_json(indent=2).encode())
    return uri


def read_attached(adapter_uri: str) -> HumanEvaluation | None:
    fs, path = filesystem(join(adapter_uri, HUMAN_EVALUATION_FILE))
    try:
        with fs.open(path, "rb") as f:
            return HumanEvaluation.model_validate(json.loads(f.read()))
    except FileNotFoundError:
        return None
