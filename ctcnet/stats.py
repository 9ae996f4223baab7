"""Statistics for claims of a difference: a paired bootstrap interval and the word it supports.

A difference between two models (or two conditions) measured on the same faces is a claim only
with its uncertainty. :func:`paired_bootstrap_ci` gives the mean per-face difference with a
percentile-bootstrap confidence interval; :func:`difference_verdict` turns an interval into the
word a sentence may use (larger, smaller, or within noise). Evaluation
(:meth:`ctcnet.evaluate.EvalResult.gains`), the analyses and the book all use these two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["BootstrapCI", "difference_verdict", "paired_bootstrap_ci"]


class BootstrapCI(NamedTuple):
    """A mean difference and the bounds of its confidence interval (same units as the scores)."""

    mean: float
    low: float
    high: float


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Mean of the per-image differences ``a - b`` with a paired percentile-bootstrap interval.

    The two scores of an image are compared with each other first, so what varies from image to
    image (some faces are simply easier) cancels; the images are then resampled with replacement
    ``n_boot`` times and the interval is read off the percentiles of the resampled means (Efron &
    Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13). It assumes the images are a
    random sample of the faces one cares about; with few images (say < 20) it is too narrow.

    Parameters
    ----------
    a, b : sequence of float
        Per-image scores of two methods on the same images, in the same order (e.g. the model's
        PSNR and the bicubic PSNR).
    n_boot : int, default 10000
        Bootstrap resamples.
    ci : float, default 0.95
        Coverage of the interval, in (0, 1).
    seed : int, default 0
        Seed of the resampling; the result is a deterministic function of the inputs and ``seed``.

    Returns
    -------
    BootstrapCI
        ``(mean, low, high)``: ``mean`` is exactly ``mean(a - b)``.

    Raises
    ------
    ValueError
        On inputs of different lengths, fewer than two pairs, non-finite scores (e.g. the ``inf``
        PSNR of an exact copy), ``n_boot < 1`` or ``ci`` outside (0, 1).
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"paired scores must be two 1-D sequences of equal length, got shapes {x.shape} "
            f"and {y.shape}"
        )
    if x.size < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 paired scores, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("paired scores must be finite (an identical image has PSNR inf)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must lie in (0, 1), got {ci!r}")
    diff = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    # Chunks of about a million indices: 10,000 resamples of 1,000 images stay at ~8 MB.
    chunk = max(1, 1_000_000 // diff.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, diff.size, size=(stop - start, diff.size))
        means[start:stop] = diff[idx].mean(axis=1)
    tail = (1.0 - ci) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return BootstrapCI(float(diff.mean()), float(low), float(high))


def difference_verdict(ci, above: str = "larger", below: str = "smaller",
                       neither: str = "within noise") -> str:
    """A word for a difference from its confidence interval ``(mean, low, high)``: ``above`` when
    the whole interval is above zero, ``below`` when it is below, ``neither`` when it holds 0."""
    _, low, high = ci
    if low > 0:
        return above
    if high < 0:
        return below
    return neither
