"""Summaries of repeated measurements: a median and the spread around it.

The machine is shared and noisy, so every published figure is the median of
several runs, with the smallest and largest run beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) of `values`, interpolated between neighbours."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float], unit: str) -> dict:
    """Median, quartiles, min and max of per-run values, with their unit and count."""
    return {
        "median": percentile(values, 0.5),
        "p25": percentile(values, 0.25),
        "p75": percentile(values, 0.75),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
        "unit": unit,
    }


def ratio(numerators: Sequence[float], denominators: Sequence[float]) -> dict:
    """Summary of run-by-run ratios: each run is divided by the baseline run beside it."""
    return summary([n / d for n, d in zip(numerators, denominators, strict=True)], "x")
