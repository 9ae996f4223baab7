"""ctcnet.course.plotting.plot_share_bars: one bar per entry, each labelled with count and share."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from ctcnet.course.plotting import plot_share_bars  # noqa: E402


def test_share_bars_label_every_bar_with_count_and_share():
    fig = plot_share_bars({"small": 1_000, "large": 3_000}, xlabel="parameters (millions)")
    ax = fig.axes[0]
    assert len(ax.patches) == 2
    assert ax.patches[1].get_width() == pytest.approx(3_000 / 1e6)
    labels = [t.get_text().strip() for t in ax.texts]
    assert labels == ["1,000 (25.0%)", "3,000 (75.0%)"]
    assert ax.get_xlabel() == "parameters (millions)"


def test_share_bars_take_a_pandas_series_by_its_index():
    import pandas as pd

    fig = plot_share_bars(pd.Series({"a": 2, "b": 6}), xlabel="x", unit=1)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a", "b"]


def test_share_bars_without_positive_counts_is_a_one_line_error():
    with pytest.raises(ValueError, match="at least one positive count"):
        plot_share_bars({}, xlabel="x")
