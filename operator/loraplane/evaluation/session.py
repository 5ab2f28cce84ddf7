"""An evaluation session: prompts, the answers of two variants, the raters' tokens, and the ratings.

A session is a directory: `session.json` (written once, holds variant names and
rater tokens: the owner's file, never shown to a rater) and `ratings.jsonl`
(one line per rating, appended by the rating server; the last line of a rater
for an item wins, so a rater may change their mind).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

SESSION_FILE = "session.json"
RATINGS_FILE = "ratings.jsonl"


class Criterion(StrEnum):
    """What a rater scores each answer on (1-5)."""

    RELEVANCE = "relevance"
    ACCURACY = "accuracy"
    TONE = "tone"
    NATURALNESS = "naturalness"


CRITERION_QUESTIONS: dict[Criterion, str] = {
    Criterion.RELEVANCE: "Relevance to the query",
    Criterion.ACCURACY: "Accuracy of the information",
    Criterion.TONE: "Appropriate tone",
    Criterion.NATURALNESS: "Natural language",
}


class Preference(StrEnum):
    """A rater's preference, as the page shows it (labels, never variant names)."""

    A = "A"
    B = "B"
    TIE = "tie"




class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Item(_Model):
    """One prompt and each variant's answer."""

    id: str = Field(min_length=1, max_length=64)
    prompt: str
    answers: dict[str, str] = Field(description="variant name -> answer")
    reference: str | None = None


class Rater(_Model):
    name: str = Field(min_length=1, max_length=64)
    token: str = Field(min_length=16, max_length=128)


class Session(_Model):
    """What `loraplane eval create` writes. `candidate` is the variant on trial, `baseline` the one it must beat."""

    id: str
    created_at: datetime
    candidate: str
    baseline: str
    source: str = Field(description="where the prompts came from")
    items: list[Item]
    raters: list[Rater]
    blinding_key: str = Field(min_length=16, description="secret of the per-rater A/B order")

    @property
    def variants(self) -> tuple[str, str]:
        return (self.candidate, self.baseline)

    def rater_by_token(self, token: str) -> Rater | None:
        for r in self.raters:
            if secrets.compare_digest(r.token, token):
                return r
        return None


class Rating(_Model):
    """One rater's judgement of one item, in variant names (the server maps A/B back)."""

    rater: str
    item: str
    scores: dict[str, dict[Criterion, int]] = Field(description="variant -> criterion -> 1..5")
    preference: str = Field(description="a variant name or 'tie'")
    at: datetime


def new_session(*, candidate: str, baseline: str, source: str, items: list[Item], raters: list[str]) -> Session:
    if candidate == baseline:
        raise ValueError(f"the candidate and the baseline are the same variant ({candidate!r})")
    if len(set(raters)) != len(raters):
        raise ValueError(f"rater names repeat: {raters}")
    for item in items:
        if set(item.answers) != {candidate, baseline}:
            raise ValueError(f"item {item.id}: answers for {sorted(item.answers)}, not for {candidate} and {baseline}")
    now = datetime.now(UTC)
    return Session(
        id=now.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3), created_at=now, candidate=candidate,
        baseline=baseline, source=source, items=items,
        raters=[Rater(name=n, token=secrets.token_urlsafe(24)) for n in raters],
        blinding_key=secrets.token_hex(16))


def write_session(directory: Path, session: Session) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SESSION_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(session.model_dump_json(indent=2))
    tmp.replace(path)
    return path


def read_session(directory: Path) -> Session:
    path = Path(directory) / SESSION_FILE
    try:
        return Session.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: no session here (make one with `loraplane eval create`)") from exc


def append_rating(directory: Path, rating: Rating) -> None:
    with (Path(directory) / RATINGS_FILE).open("a") as f:
        f.write(rating.model_dump_json() + "\n")


def read_ratings(directory: Path) -> list[Rating]:
    """Every rater's latest rating of each item; a bad line is an error naming the file and the line."""
    path = Path(directory) / RATINGS_FILE
    latest: dict[tuple[str, str], Rating] = {}
    if not path.exists():
        return []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rating = Rating.model_validate(json.loads(line))
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: not a rating: {exc}") from exc
        latest[(rating.rater, rating.item)] = rating
    return list(latest.values())
