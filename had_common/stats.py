"""Confidence intervals for ratios of per-unit sums (an accuracy over windows, a drift over
windows): the unit (a window) is what is sampled, so its sums carry the correlation of the
bases or tokens inside it."""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054
"""The standard normal's 97.5% quantile: two-sided 95% intervals."""


def ratio_interval(a: np.ndarray, b: np.ndarray, z: float = Z_95) -> tuple[float, float, float]:
    """(sum a / sum b, low, high): a ratio of per-unit sums and its delta-method interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ratio = float(a.sum() / b.sum())
    n = len(a)
    se = float(np.std(a - ratio * b, ddof=1) / (math.sqrt(n) * b.mean())) if n > 1 else math.inf
    return ratio, ratio - z * se, ratio + z * se
