"""User feedback on an answer: a request id and a score, attributed to the variant that answered.

The request id carries the variant (`lp-<random>-<variant>`), so any router
replica can attribute feedback for an answer another replica served; each
replica refuses a second score for an id it has already seen.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict

PREFIX = "lp-"


class FeedbackError(ValueError):
    """Bad feedback request; the message names the field."""


def new_request_id(variant: str) -> str:
    return f"{PREFIX}{secrets.token_hex(8)}-{variant}"


def variant_of(request_id: str) -> str:
    if not isinstance(request_id, str) or not request_id.startswith(PREFIX) or request_id.count("-") < 2:
        raise FeedbackError(f"requestId {request_id!r} is not a request id issued by this router")
    return request_id[len(PREFIX):].split("-", 1)[1]


def normalise_score(score: object) -> float:
    """Thumbs ("up"/"down", true/false) -> 1/0; a 1..5 rating s -> (s - 1) / 4."""
    if isinstance(score, bool):
        return 1.0 if score else 0.0
    if isinstance(score, str):
        lowered = score.strip().lower()
        if lowered in ("up", "thumbs_up", "+1", "good"):
            return 1.0
        if lowered in ("down", "thumbs_down", "-1", "bad"):
            return 0.0
        try:
            score = float(lowered)
        except ValueError:
            raise FeedbackError(f"score {score!r}: use \"up\"/\"down\", true/false or a rating 1..5") from None
    if isinstance(score, (int, float)) and 1 <= score <= 5:
        return (float(score) - 1.0) / 4.0
    raise FeedbackError(f"score {score!r}: use \"up\"/\"down\", true/false or a rating 1..5")


class SeenIds:
    """Bounded memory of request ids that already got feedback."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, request_id: str) -> bool:
        """False when the id was already seen."""
        if request_id in self._ids:
            return False
        self._ids[request_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        return True
