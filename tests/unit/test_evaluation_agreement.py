"""Agreement maths against published values, and the session statistics against hand-computed ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from loraplane.evaluation.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from loraplane.evaluation.results import human_gate, ratings_csv, summarize
from loraplane.evaluation.session import Criterion, Item, Rating, new_session

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units, missing data.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]

# Fleiss (1971) as worked in most textbooks (and Wikipedia): 10 subjects, 14 raters, 5 categories, kappa 0.210.
FLEISS_EXAMPLE = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]


def test_krippendorff_alpha_matches_the_published_example():
    assert krippendorff_alpha(KRIPPENDORFF_2011, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(KRIPPENDORFF_2011, "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_krippendorff_alpha_is_one_for_perfect_agreement_and_undefined_without_variation():
    assert krippendorff_alpha([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]) == pytest.approx(1.0)
    assert krippendorff_alpha([[3, 3], [3, 3]]) is None


def test_fleiss_kappa_matches_the_textbook_example_and_statsmodels():
    from statsmodels.stats.inter_rater import fleiss_kappa as reference

    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(FLEISS_EXAMPLE) == pytest.approx(reference(FLEISS_EXAMPLE, method="fleiss"))
    assert fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa([[3, 0], [1, 1]])


def test_cohen_kappa_of_a_textbook_table():
    # 50 items: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4.
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def _session(n_items=4, raters=("ann", "bo", "cy")):
    items = [Item(id=f"q{n}", prompt=f"question {n}", answers={"tuned": f"t{n}", "base": f"b{n}"})
             for n in range(n_items)]
    return new_session(candidate="tuned", baseline="base", source="test", items=items, raters=list(raters))


def _rating(rater, item, tuned, base, pref):
    return Rating(rater=rater, item=item, preference=pref, at=datetime.now(UTC),
                  scores={"tuned": dict.fromkeys(Criterion, tuned), "base": dict.fromkeys(Criterion, base)})


def test_summary_win_rate_means_kappa_and_gate():
    s = _session()
    ratings = []
    for n in range(4):
        for rater in ("ann", "bo", "cy"):
            pref = "tuned" if (n, rater) != (3, "cy") else "tie"
            ratings.append(_rating(rater, f"q{n}", 5 if rater != "cy" else 4, 2, pref))
    res = summarize(s, ratings)
    assert (res.wins, res.losses, res.ties) == (11, 0, 1)
    assert res.win_rate.mean == pytest.approx(11.5 / 12)
    relevance = next(c for c in res.criteria if c.criterion is Criterion.RELEVANCE)
    assert relevance.candidate.mean == pytest.approx((5 + 5 + 4) / 3)
    assert relevance.baseline.mean == pytest.approx(2.0)
    assert relevance.candidate.low <= relevance.candidate.mean <= relevance.candidate.high
    # categories (tuned, base, tie): three items [3,0,0], one [2,0,1]
    assert res.preference_kappa == pytest.approx(fleiss_kappa([[3, 0, 0]] * 3 + [[2, 0, 1]]))
    assert human_gate(res, 0.6) == []
    assert any("below minHumanWinRate" in f for f in human_gate(res, 0.99))
    partial = summarize(s, ratings[:-1])
    assert any("not enough ratings" in f for f in human_gate(partial, 0.6))
    csv_text = ratings_csv(s, ratings)
    assert csv_text.splitlines()[0].startswith("rater,item,prompt,candidate_relevance")
    assert len(csv_text.splitlines()) == 13
