"""A session's outcome stored beside the adapter it judged (`human-evaluation.json`), where the canary
analysis and the FineTuneJob's human gate read it: the operator needs no access to the session itself.
Attaching also writes the results into the adapter's model card."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from ..storage.manifest import read_manifest
from ..storage.model_card import amend_card
from ..storage.uris import filesystem, join
from .results import MIN_RATERS, Results

HUMAN_EVALUATION_FILE = "human-evaluation.json"
CARD_SECTION = "human-evaluation"


class HumanEvaluation(BaseModel):
    # Bounded: the operator reads this file from storage others write to; a bad one is refused whole.
    session: str = Field(max_length=256)
    candidate: str = Field(max_length=256)
    baseline: str = Field(max_length=256)
    win_rate: float | None = Field(ge=0, le=1)
    enough_ratings: bool  # every item rated by MIN_RATERS or more raters
    raters: int = Field(ge=0)
    items: int = Field(ge=0)
    fewest_item_raters: int | None = Field(default=None, ge=0)  # raters of the least-rated item (absent in older files)
    attached_at: datetime


def from_results(res: Results, min_raters: int = MIN_RATERS) -> HumanEvaluation:
    return HumanEvaluation(session=res.session, candidate=res.candidate, baseline=res.baseline,
                           win_rate=res.win_rate.mean, raters=res.raters, items=res.items,
                           fewest_item_raters=res.fewest_item_raters,
                           enough_ratings=res.raters >= min_raters and res.items_fully_rated == res.items,
                           attached_at=datetime.now(UTC))


def attach(adapter_uri: str, evaluation: HumanEvaluation, card_section: str | None = None) -> str:
    """Write human-evaluation.json into the adapter's prefix, and `card_section` (the results in markdown) into
    its model card when the adapter is published there; returns the JSON's URI."""
    uri = join(adapter_uri, HUMAN_EVALUATION_FILE)
    fs, path = filesystem(uri)
    with fs.open(path, "wb") as f:
        f.write(evaluation.model_dump_json(indent=2).encode())
    if card_section is not None and read_manifest(adapter_uri) is not None:
        amend_card(adapter_uri, CARD_SECTION, card_section)
    return uri


def enough_for(evaluation: HumanEvaluation, min_raters: int) -> bool:
    """Whether every item has `min_raters` raters (older files only say so for MIN_RATERS)."""
    if evaluation.fewest_item_raters is not None:
        return evaluation.fewest_item_raters >= min_raters
    return evaluation.enough_ratings and min_raters <= MIN_RATERS


def read_attached(adapter_uri: str) -> HumanEvaluation | None:
    fs, path = filesystem(join(adapter_uri, HUMAN_EVALUATION_FILE))
    try:
        with fs.open(path, "rb") as f:
            return HumanEvaluation.model_validate(json.loads(f.read()))
    except FileNotFoundError:
        return None
