"""ctcnet.analysis.seeds: Student t quantiles and intervals over training runs."""

import math

import numpy as np
import pytest

from ctcnet.analysis.seeds import student_t_quantile, t_interval


@pytest.mark.parametrize("df, expected", [(1, 12.706205), (2, 4.302653), (3, 3.182446),
                                          (4, 2.776445), (9, 2.262157), (20, 2.085963)])
def test_t_quantiles_match_the_tables(df, expected):
    assert student_t_quantile(0.95, df) == pytest.approx(expected, rel=1e-6)


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 8, 30, 101):
        for ci in (0.5, 0.9, 0.95, 0.99):
            assert student_t_quantile(ci, df) == pytest.approx(stats.t.ppf((1 + ci) / 2, df), rel=1e-8)


def test_t_interval_of_three_seeds():
    values = [0.178, 0.245, 0.158]
    mean, low, high = t_interval(values)
    half = 4.302653 * np.std(values, ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(np.mean(values))
    assert (low, high) == pytest.approx((mean - half, mean + half), rel=1e-6)
    # a wider coverage gives a wider interval; identical runs give a point
    assert t_interval(values, ci=0.99).high > high
    assert t_interval([0.1, 0.1, 0.1]) == pytest.approx((0.1, 0.1, 0.1))


def test_t_interval_refuses_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        t_interval([0.3])
    with pytest.raises(ValueError, match="finite"):
        t_interval([0.3, float("nan")])
    with pytest.raises(ValueError, match="ci"):
        t_interval([0.3, 0.4], ci=1.5)
    with pytest.raises(ValueError, match="df"):
        student_t_quantile(0.95, 0)
