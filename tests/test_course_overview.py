"""Tests for the chapter-1 overview figure and the paper-name table of ctcnet.course.figures."""

import matplotlib
import pytest

from ctcnet import build_model
from ctcnet.course.figures import PAPER_TITLES, draw_overview, paper_module_table

matplotlib.use("Agg")

COLUMNS = ["paper name", "abbreviation", "inside", "class", "where", "count", "parameters"]


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_overview_tiny_has_the_stages_shapes_and_names():
    model = build_model("tiny")
    c1, c2, c3 = model.config.widths
    fig = draw_overview(model, size=64, scale=8)
    texts = _texts(fig)
    joined = "\n".join(texts)
    assert "3×8×8" in texts and texts.count("3×64×64") == 3  # LR, input; tail and output
    for shape in (f"{c1}×64×64", f"{c2}×32×32", f"{c3}×16×16", f"{c3}×8×8"):
        assert shape in texts, shape
    assert texts.count("LGCM") == 3 and texts.count("MFFU → LGCM") == 3 and "FRM" in texts
    assert "Down ×½" in texts and "Up ×2" in texts
    assert "Facial Structure Attention Unit" in joined
    assert "Local-Global Feature Cooperation Module" in joined
    assert "Multi-scale Feature Fusion Unit" in joined and "Feature Refinement Module" in joined
    assert not fig.axes[0].axison and "16×16" not in fig.axes[0].get_title()
    assert "8×8 face in, a 64×64 face out" in fig.axes[0].get_title()
    # one box per stage (head, 3 encoder, bottleneck, 3 decoder, tail) plus LR, input, output
    assert len([p for p in fig.axes[0].patches if type(p).__name__ == "FancyBboxPatch"]) == 12
    matplotlib.pyplot.close(fig)


def test_overview_follows_the_config():
    fig = draw_overview(build_model("tiny", use_mffu=False, num_frm=3), size=64)
    texts = _texts(fig)
    assert "3 × FRM" in texts and not any("MFFU" in t for t in texts)
    assert "skips (added)" in texts
    matplotlib.pyplot.close(fig)
    fig = draw_overview(build_model("tiny", num_frm=0), size=64)
    assert not any("FRM" in t for t in _texts(fig))
    matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("overrides", [{}, {"use_mffu": False, "use_fsau": False}])
def test_paper_module_table_partitions_the_parameters(overrides):
    model = build_model("tiny", **overrides)
    table = paper_module_table(model)
    assert list(table.columns) == COLUMNS
    total = sum(p.numel() for p in model.parameters())
    modules = table[table["inside"] == ""]
    assert modules["parameters"].sum() == total
    # one module row per paper name of units() (the first and last conv apart), in forward order
    units = model.units()
    names = list(dict.fromkeys(
        ["shallow features"] + [u.paper_name for u in units[1:-1]] + ["reconstruction"]
    ))
    assert [PAPER_TITLES[n][0] for n in names] == list(modules["paper name"])
    # the parts of every composite module add up to it
    for abbreviation in ("LGCM", "FRM", "MFFU"):
        whole = modules.loc[modules["abbreviation"] == abbreviation, "parameters"]
        parts = table.loc[table["inside"] == abbreviation, "parameters"]
        if abbreviation == "MFFU" and model.fusion is None:
            assert whole.empty and parts.empty
            continue
        assert len(whole) == 1 and len(parts) >= 2
        assert parts.sum() == whole.iloc[0]
    assert ("FSAU" in set(table["abbreviation"])) == model.config.use_fsau


def test_paper_module_table_counts_and_paths():
    model = build_model("tiny", num_frm=2)
    table = paper_module_table(model).set_index(["abbreviation", "inside"])
    lgcm = table.loc[("LGCM", "")]
    assert lgcm["count"] == 6 and lgcm["class"] == "LGCM"
    assert lgcm["where"] == "encoder.{0,1,2}, decoder.{0,1,2}"
    frm = table.loc[("FRM", "")]
    assert frm["count"] == 2 and frm["where"] == "bottleneck.{0,1}"
    assert table.loc[("FEU", "FRM"), "class"] == "FEU"
    assert table.loc[("FSAU", "LGCM"), "parameters"] == sum(
        p.numel() for lg in [*model.encoder, *model.decoder] for p in lg.fsau.parameters()
    )
    blocks = sum(len(lg.transformer) for lg in [*model.encoder, *model.decoder])
    tb = paper_module_table(model)
    row = tb[tb["class"] == "TransformerBlock"].iloc[0]
    assert row["count"] == blocks and row["inside"] == "LGCM"
    assert table.loc[("MFFU", ""), "class"].startswith("MFFU")


def test_initial_network_rebuilds_the_shipped_models_start_and_differs_from_it():
    import torch

    from ctcnet.course.book import initial_network, n_params, trained_model

    start, again, other = initial_network(), initial_network(), initial_network(seed=1)
    trained = trained_model("cpu")
    first = next(iter(start.state_dict()))
    assert torch.equal(start.state_dict()[first], again.state_dict()[first])  # deterministic
    assert not torch.equal(start.state_dict()[first], other.state_dict()[first])  # the seed counts
    assert not torch.equal(start.state_dict()[first], trained.state_dict()[first])  # not trained
    assert n_params(start) == n_params(trained) > 0 and n_params(None) == 0


def test_format_ci_signs_and_rounds():
    from ctcnet.course.book import format_ci
    from ctcnet.stats import BootstrapCI

    assert format_ci(BootstrapCI(1.3841, 1.1832, 1.6004), unit="dB") == "+1.384 [+1.183, +1.600] dB"
    assert format_ci((-0.5, -1.25, 0.04), digits=1) == "-0.5 [-1.2, +0.0]"
