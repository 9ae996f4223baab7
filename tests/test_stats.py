"""Tests for ctcnet.stats: the paired bootstrap interval and the word for a difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ctcnet.stats import BootstrapCI, difference_verdict, paired_bootstrap_ci


# ---------------------------------------------------------------------------- paired bootstrap
def test_bootstrap_ci_of_identical_scores_is_zero_width():
    a = np.random.default_rng(0).normal(30, 2, 50)
    assert paired_bootstrap_ci(a, a.copy()) == (0.0, 0.0, 0.0)


def test_bootstrap_ci_of_a_constant_shift_is_that_shift_exactly():
    b = np.random.default_rng(1).normal(30, 2, 40)
    mean, low, high = paired_bootstrap_ci(b + 0.25, b)
    assert mean == pytest.approx(0.25) and low == pytest.approx(0.25) and high == pytest.approx(0.25)


def test_bootstrap_ci_mean_is_the_mean_difference_and_lies_inside():
    rng = np.random.default_rng(2)
    a, b = rng.normal(30, 2, 30), rng.normal(29, 2, 30)
    ci = paired_bootstrap_ci(a, b, n_boot=2000)
    assert ci.mean == pytest.approx(float(np.mean(a - b)))
    assert ci.low < ci.mean < ci.high


def test_bootstrap_ci_covers_the_true_shift_about_95_percent_of_the_time():
    # 300 synthetic experiments of 40 paired images whose true mean gain is 0.5 dB, with image
    # difficulty (shared by both methods) far larger than the per-image noise of the gain.
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(300):
        difficulty = rng.normal(28, 3, 40)
        gain = rng.normal(0.5, 0.4, 40)
        ci = paired_bootstrap_ci(difficulty + gain, difficulty, n_boot=1000, seed=trial)
        hits += ci.low <= 0.5 <= ci.high
    # Binomial SD at 95 % over 300 trials is 1.3 points; the percentile bootstrap runs slightly
    # narrow at n = 40, so the band is asymmetric.
    assert 0.89 <= hits / 300 <= 0.99


def test_bootstrap_ci_matches_the_normal_approximation_for_many_images():
    rng = np.random.default_rng(4)
    d = rng.normal(1.0, 0.5, 2000)
    ci = paired_bootstrap_ci(d, np.zeros_like(d), n_boot=4000)
    half = 1.96 * d.std() / math.sqrt(d.size)
    assert ci.low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(d.mean() + half, abs=0.15 * half)


def test_bootstrap_ci_narrows_with_a_lower_level_and_is_reproducible():
    rng = np.random.default_rng(5)
    a, b = rng.normal(30, 2, 25), rng.normal(29.5, 2, 25)
    wide, narrow = paired_bootstrap_ci(a, b, ci=0.99), paired_bootstrap_ci(a, b, ci=0.5)
    assert wide.low < narrow.low < narrow.high < wide.high
    assert paired_bootstrap_ci(a, b, seed=7) == paired_bootstrap_ci(a, b, seed=7)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([1.0, 2.0], [1.0], {}, "equal length"),
        ([1.0], [2.0], {}, "at least 2"),
        ([1.0, float("inf")], [1.0, 2.0], {}, "finite"),
        ([1.0, 2.0], [1.0, 2.0], {"n_boot": 0}, "n_boot"),
        ([1.0, 2.0], [1.0, 2.0], {"ci": 1.0}, "ci must"),
    ],
)
def test_bootstrap_ci_refuses_bad_input_with_one_line(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        paired_bootstrap_ci(a, b, **kwargs)
    assert "\n" not in str(info.value)


def test_difference_verdict_reads_the_interval_not_the_mean():
    assert difference_verdict(BootstrapCI(1.0, 0.2, 1.8)) == "larger"
    assert difference_verdict(BootstrapCI(-1.0, -1.8, -0.2)) == "smaller"
    assert difference_verdict((0.1, -0.3, 0.5), "wider", "narrower", "same") == "same"
