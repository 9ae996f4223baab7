"""Timings with their spread (ctcnet.analysis.cost): interleaved rounds, the sign-test interval
of a median, paired ratios and the per-class table over every module class."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from torch import nn

from ctcnet.analysis import cost


def test_median_interval_has_the_binomial_coverage():
    # 7 values: (min, max) covers the median with 1 - 2 / 2**7
    low, high, cover = cost.median_interval([5, 1, 4, 2, 7, 3, 6])
    assert (low, high) == (1, 7)
    assert cover == pytest.approx(1 - 2 / 2**7)
    # 20 values at 95 %: the 6th smallest and 6th largest (coverage 95.9 %)
    low, high, cover = cost.median_interval(range(20))
    assert (low, high) == (5, 14)
    assert cover == pytest.approx(1 - 2 * sum(math.comb(20, i) for i in range(6)) / 2**20)
    assert cover >= 0.95
    # too few values for 95 %: (min, max) with the coverage it has
    assert cost.median_interval([3, 1, 2]) == (1, 2 + 1, 0.75)


@pytest.mark.parametrize("values, level", [([1.0], 0.95), ([1.0, 2.0], 1.0), ([1.0, 2.0], 0.0)])
def test_median_interval_bad_input_is_a_one_line_error(values, level):
    with pytest.raises(ValueError):
        cost.median_interval(values, level)


def test_time_forward_passes_interleaves_rounds_and_profiles_the_same_rounds(tiny):
    cases = {"32": (tiny, (1, 3, 32, 32)), "48": (tiny, (1, 3, 48, 48))}
    runs = cost.time_forward_passes(cases, rounds=4, warmup=0, profile="48")
    assert runs.hooked == "48 (hooks)"
    # every round runs every case once (the hooked pass included), each at one position
    assert len(runs.passes) == 4 * 3
    per_round = runs.passes.groupby("round")
    assert (per_round["case"].nunique() == 3).all()
    assert (per_round["position"].apply(sorted).apply(list) == [[0, 1, 2]] * 4).all()
    assert (runs.passes["seconds"] > 0).all()
    # the shuffled order is not the same in every round (seed 0, 4 rounds of 3 cases)
    orders = runs.passes.sort_values(["round", "position"]).groupby("round")["case"].apply(tuple)
    assert orders.nunique() > 1
    summary = runs.summary()
    assert list(summary.index) == ["32", "48", "48 (hooks)"]
    assert (summary["low_s"] <= summary["median_s"]).all()
    assert (summary["median_s"] <= summary["high_s"]).all()
    assert summary["coverage"].iloc[0] == pytest.approx(1 - 2 / 2**4)
    ratio = runs.ratio("48", "32")
    table = runs.per_round()
    assert ratio["median"] == pytest.approx((table["48"] / table["32"]).median())
    assert ratio["rounds"] == 4
    # the hooks were only on during the hooked passes: module times exist for its rounds only
    assert sorted(runs.modules["round"].unique()) == [0, 1, 2, 3]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in tiny.modules())
    # fewer rounds: a view of the same measurement
    assert len(runs.first_rounds(2).passes) == 2 * 3


def test_module_table_keeps_every_class_and_relates_time_to_flops(tiny):
    shape = (1, 3, 32, 32)
    runs = cost.time_forward_passes({"tiny": (tiny, shape)}, rounds=3, warmup=1, profile="tiny")
    flops = cost.flops_by_module(tiny, shape, by="type")
    table = runs.module_table(flops)
    classes = set(flops["module"]) - {"total"}
    assert classes <= set(table.index)  # every class with FLOPs, not a top ten
    assert {"MFFU", "Upsample", "LGCM", "MDTA"} <= set(table.index)
    assert (table["min share"] <= table["time share"]).all()
    assert (table["time share"] <= table["max share"]).all()
    row = table.loc["LGCM"]
    lgcm_ms = runs.modules.query("module == 'LGCM' and level == 'type'").set_index("round")["ms"]
    hooked_s = runs.per_round()["tiny (hooks)"]
    by_round = lgcm_ms / (1e3 * hooked_s) / row["FLOP share"]
    assert row["time / FLOPs"] == pytest.approx(by_round.median())
    assert row["min ratio"] <= row["time / FLOPs"] <= row["max ratio"]
    units = runs.module_table(level="unit")
    assert "head" in units.index and "tail" in units.index


def test_time_forward_passes_bad_input_is_a_one_line_error(tiny):
    case = {"a": (tiny, (1, 3, 32, 32))}
    with pytest.raises(ValueError, match="profile must name"):
        cost.time_forward_passes(case, rounds=1, profile="b")
    with pytest.raises(ValueError, match="rounds"):
        cost.time_forward_passes(case, rounds=0)
    with pytest.raises(ValueError, match="no case"):
        cost.time_forward_passes({}, rounds=1)
    with pytest.raises(ValueError, match="no case was profiled"):
        cost.time_forward_passes(case, rounds=2, warmup=0).module_table()


def test_peak_memory_is_a_number_of_mib():
    mib = cost.peak_memory(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 64, 64))
    assert mib >= 0
    assert isinstance(pd.Series([mib]).iloc[0], float)
