"""Inter-rater agreement: Krippendorff's alpha (the `krippendorff` package) and Fleiss' kappa."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def krippendorff_alpha(reliability: Sequence[Sequence[float | None]], level: str = "ordinal") -> float | None:
    """Alpha of a raters x units matrix (None = not rated); None when there is too little to compare.

    level: nominal, ordinal, interval or ratio.
    """
    import krippendorff

    data = np.array([[np.nan if v is None else float(v) for v in row] for row in reliability], dtype=float)
    pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum() if data.size else 0
    if pairable == 0 or len(np.unique(data[~np.isnan(data)])) < 2:
        return None  # no unit rated twice, or a single value everywhere: alpha is undefined
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa of a subjects x categories table of counts (each row sums to the same number of raters).

    Fleiss (1971): P_i = (sum_j n_ij^2 - n) / (n (n - 1)), p_j = sum_i n_ij / (N n),
    kappa = (mean P_i - sum p_j^2) / (1 - sum p_j^2). None when chance agreement is 1 (one category only).
    """
    counts = np.asarray(table, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        return None
    n = counts.sum(axis=1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError(f"every subject needs the same number (>= 2) of ratings, got {sorted(set(n.tolist()))}")
    raters, subjects = n[0], counts.shape[0]
    p_i = (np.sum(counts ** 2, axis=1) - raters) / (raters * (raters - 1))
    p_j = counts.sum(axis=0) / (subjects * raters)
    expected = float(np.sum(p_j ** 2))
    if expected >= 1.0:
        return None
    return float((p_i.mean() - expected) / (1 - expected))


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's kappa of two label sequences (the judge against the raters' majority)."""
    if len(a) != len(b):
        raise ValueError("the sequences differ in length")
    if not a:
        return None
    labels = sorted(set(a) | set(b))
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    expected = sum((a.count(lab) / len(a)) * (b.count(lab) / len(b)) for lab in labels)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)
