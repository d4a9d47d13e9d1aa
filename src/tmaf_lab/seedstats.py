"""Mean and sample standard deviation over seeds: the one statistic every table reports."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std with n-1) of ``values``; std is 0 for one value, both NaN for none."""
    xs = [float(v) for v in values]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0
