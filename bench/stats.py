"""Statistics the benchmarks report: medians, percentiles, ratios, interleaved orders."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("no values")
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile, linearly interpolated between the closest ranks (the
    definition numpy and Excel's PERCENTILE.INC use)."""
    if not values:
        raise ValueError("no values")
    if not 0 <= pct <= 100:
        raise ValueError("pct must be within 0..100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    low, high = math.floor(position), math.ceil(position)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``; ``nan`` when the denominator is zero or missing."""
    if not denominator or math.isnan(denominator):
        return math.nan
    return numerator / denominator


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, quartiles, min, max, p95, p99 and count of a sample."""
    return {
        "n": len(values),
        "median": median(values),
        "p25": percentile(values, 25),
        "p75": percentile(values, 75),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
    }


def rotations(items: Sequence[T], rounds: int) -> list[list[T]]:
    """``rounds`` orders of ``items``, each starting one later than the last: every item
    runs first, second, ... equally often, so none profits from a position (warm caches,
    a quiet moment after the previous candidate)."""
    count = len(items)
    return [[items[(r + i) % count] for i in range(count)] for r in range(rounds)]
