"""histogram_quantile over cumulative Prometheus buckets, computed as Prometheus computes it."""

from __future__ import annotations

import math
from collections.abc import Mapping


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of a histogram given as {upper bound: cumulative count} (with +Inf).

    Linear interpolation inside the bucket holding the rank, as Prometheus does; a rank
    in the +Inf bucket answers the highest finite bound. None when the histogram is empty.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be within 0..1, got {q}")
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]):
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > 0:
            if math.isinf(bound):
                return lower_bound if len(bounds) > 1 else None
            if bound <= 0:
                return bound
            in_bucket = count - lower_count
            if in_bucket <= 0:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / in_bucket
        lower_bound, lower_count = bound, count
    return None
