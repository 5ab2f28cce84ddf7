"""What a session's ratings say: per-criterion means with confidence intervals, the candidate's win rate,
inter-rater agreement, and the human gate. Exports to JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np
from pydantic import BaseModel

from .agreement import fleiss_kappa, krippendorff_alpha
from .session import Criterion, Rating, Session

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
MIN_RATERS = 3


class Interval(BaseModel):
    """A mean with a percentile-bootstrap confidence interval (resampling items, so a rater's ratings of
    one item stay together)."""

    mean: float | None
    low: float | None
    high: float | None
    n: int


class CriterionResult(BaseModel):
    criterion: Criterion
    candidate: Interval
    baseline: Interval
    alpha: float | None  # Krippendorff's alpha (ordinal) over both variants' scores


class Results(BaseModel):
    session: str
    candidate: str
    baseline: str
    items: int
    raters: int  # raters with at least one rating
    ratings: int
    items_fully_rated: int  # items rated by at least MIN_RATERS raters
    fewest_item_raters: int = 0  # raters of the least-rated item
    criteria: list[CriterionResult]
    wins: int
    losses: int
    ties: int
    win_rate: Interval  # (wins + ties/2) / ratings, for the candidate
    preference_kappa: float | None  # Fleiss' kappa over items every rater rated
    preference_kappa_items: int


def _bootstrap(per_item: list[list[float]], seed: int = 0) -> Interval:
    """Mean of all values; CI by resampling items with replacement."""
    per_item = [v for v in per_item if v]
    n = sum(len(v) for v in per_item)
    if not per_item:
        return Interval(mean=None, low=None, high=None, n=0)
    sums = np.array([sum(v) for v in per_item], dtype=float)
    counts = np.array([len(v) for v in per_item], dtype=float)
    mean = float(sums.sum() / counts.sum())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_item), size=(BOOTSTRAP_RESAMPLES, len(per_item)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return Interval(mean=mean, low=float(np.percentile(means, tail)), high=float(np.percentile(means, 100 - tail)),
                    n=n)


def summarize(session: Session, ratings: list[Rating]) -> Results:
    item_ids = [i.id for i in session.items]
    raters = sorted({r.rater for r in ratings})
    by_item: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_item[r.item].append(r)
    criteria = []
    for c in Criterion:
        cand = [[float(r.scores[session.candidate][c]) for r in by_item[i]] for i in item_ids]
        base = [[float(r.scores[session.baseline][c]) for r in by_item[i]] for i in item_ids]
        # Units are (item, variant) pairs; each rater is a row of the reliability matrix.
        matrix = []
        for rater in raters:
            row: list[float | None] = []
            for i in item_ids:
                mine = next((r for r in by_item[i] if r.rater == rater), None)
                for v in session.variants:
                    row.append(None if mine is None else float(mine.scores[v][c]))
            matrix.append(row)
        criteria.append(CriterionResult(criterion=c, candidate=_bootstrap(cand), baseline=_bootstrap(base),
                                        alpha=krippendorff_alpha(matrix, "ordinal") if len(raters) >= 2 else None))
    points = {session.candidate: 1.0, session.baseline: 0.0, "tie": 0.5}
    prefs = [r.preference for r in ratings]
    win_rate = _bootstrap([[points[r.preference] for r in by_item[i]] for i in item_ids])
    full = [i for i in item_ids if len({r.rater for r in by_item[i]}) == len(raters)]
    table = [[sum(r.preference == cat for r in by_item[i]) for cat in (*session.variants, "tie")] for i in full]
    kappa = fleiss_kappa(table) if full and len(raters) >= 2 else None
    return Results(
        session=session.id, candidate=session.candidate, baseline=session.baseline, items=len(item_ids),
        raters=len(raters), ratings=len(ratings),
        items_fully_rated=sum(len({r.rater for r in by_item[i]}) >= MIN_RATERS for i in item_ids),
        fewest_item_raters=min((len({r.rater for r in by_item[i]}) for i in item_ids), default=0),
        criteria=criteria, wins=prefs.count(session.candidate), losses=prefs.count(session.baseline),
        ties=prefs.count("tie"), win_rate=win_rate, preference_kappa=kappa, preference_kappa_items=len(full))


def human_gate(results: Results, min_win_rate: float, min_raters: int = MIN_RATERS) -> list[str]:
    """Why the candidate may not pass yet (empty: it passes): too few ratings, or it does not win enough."""
    failed = []
    if results.items_fully_rated < results.items or results.raters < min_raters:
        failed.append(f"not enough ratings: {results.items_fully_rated} of {results.items} items rated by "
                      f"{min_raters} or more raters ({results.raters} raters so far)")
    rate = results.win_rate.mean
    if rate is None or rate < min_win_rate:
        shown = "n/a" if rate is None else f"{rate:.3f}"
        failed.append(f"human win rate of {results.candidate} over {results.baseline} is {shown}, "
                      f"below minHumanWinRate {min_win_rate:g}")
    return failed


def ratings_csv(session: Session, ratings: list[Rating]) -> str:
    """One row per rating: rater, item, prompt, each variant's four scores, the preferred variant."""
    out = io.StringIO()
    writer = csv.writer(out)
    cols = [f"{role}_{c.value}" for role in ("candidate", "baseline") for c in Criterion]
    writer.writerow(["rater", "item", "prompt", *cols, "preference", "candidate", "baseline"])
    prompts = {i.id: i.prompt for i in session.items}
    for r in sorted(ratings, key=lambda r: (r.item, r.rater)):
        scores = [r.scores[v][c] for v in session.variants for c in Criterion]
        writer.writerow([r.rater, r.item, prompts.get(r.item, ""), *scores, r.preference, session.candidate,
                         session.baseline])
    return out.getvalue()


def markdown(results: Results, gate: list[str] | None = None) -> str:
    """The model card's "Human evaluation" section."""
    def ci(i: Interval) -> str:
        return "n/a" if i.mean is None else f"{i.mean:.2f} [{i.low:.2f}, {i.high:.2f}]"

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    rows = "\n".join(f"| {c.criterion.value} | {ci(c.candidate)} | {ci(c.baseline)} | {num(c.alpha)} |"
                     for c in results.criteria)
    lines = [
        "## Human evaluation", "",
        f"Session `{results.session}`: {results.items} prompts, {results.raters} raters, {results.ratings} ratings, "
        f"blind side by side ({results.candidate} against {results.baseline}).", "",
        f"| Criterion (1-5) | {results.candidate} | {results.baseline} | Krippendorff's alpha |",
        "|---|---|---|---|", rows, "",
        f"Preference: {results.wins} wins, {results.losses} losses, {results.ties} ties; win rate "
        f"{ci(results.win_rate)}. Fleiss' kappa of the preferences: {num(results.preference_kappa)} "
        f"({results.preference_kappa_items} items).",
        "Intervals are 95% percentile-bootstrap intervals over items.",
    ]
    if gate is not None:
        lines += ["", "Human gate: " + ("passed" if not gate else "not passed — " + "; ".join(gate))]
    return "\n".join(lines) + "\n"
