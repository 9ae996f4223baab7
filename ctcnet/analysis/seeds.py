"""Uncertainty over training runs: Student t intervals for a handful of seeds.

A module's effect is a property of the *training recipe*, so its uncertainty comes from
repeating the training (seeds), not from the test faces: with three runs per variant, the
differences ``variant - full`` of the three seeds are three draws, and their t interval with two
degrees of freedom is wide. The face-level intervals of :func:`ctcnet.metrics.paired_bootstrap_ci`
answer a different question (how much would the comparison of *these* trained networks change on
other faces) and are much narrower.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["TInterval", "student_t_quantile", "t_interval"]


class TInterval(NamedTuple):
    """A mean and the bounds of its Student t confidence interval."""

    mean: float
    low: float
    high: float


def _central_probability(t: float, df: int) -> float:
    """``P(|T| <= t)`` for Student's t with an integer number of degrees of freedom, from the
    finite series of Abramowitz & Stegun 26.7.3 (odd ``df``) and 26.7.4 (even ``df``)."""
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        return s * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(1, (df - 1) // 2):
        term *= c2 * (2 * k) / (2 * k + 1)
        total += term
    return 2 / math.pi * (theta + s * total)


def student_t_quantile(ci: float, df: int) -> float:
    """The ``t`` with ``P(|T| <= t) = ci`` for Student's t with ``df`` degrees of freedom
    (4.303 for ``ci = 0.95, df = 2``), by bisection of the exact distribution function."""
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    low, high = 0.0, 1.0
    while _central_probability(high, int(df)) < ci:
        high *= 2
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if _central_probability(mid, int(df)) < ci else (low, mid)
    return (low + high) / 2


def t_interval(values: Sequence[float] | np.ndarray, ci: float = 0.95) -> TInterval:
    """Mean of ``values`` with its Student t interval, ``mean +- t(ci, n-1) * sd / sqrt(n)``.

    Meant for a few independent training runs, e.g. the per-seed differences between a variant
    and the full model (paired by seed when the seeds fix the data order, as in ``ctcnet train``).
    It assumes the values are roughly normal; with three of them that cannot be checked, which is
    one more reason to read the interval as a rough range rather than a test.

    Raises
    ------
    ValueError
        On fewer than two values, non-finite values or ``ci`` outside (0, 1).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {v.size}")
    if not np.isfinite(v).all():
        raise ValueError("values must be finite")
    half = student_t_quantile(ci, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size)
    mean = float(v.mean())
    return TInterval(mean, mean - half, mean + half)
