"""Tests for ctcnet.course.figures: traced shapes, call counts, the data-flow drawing."""

import matplotlib
import pytest
import torch

from ctcnet import build_model
from ctcnet.course.figures import count_calls, draw_dataflow, trace_units

matplotlib.use("Agg")


def test_trace_shapes_tiny():
    model = build_model("tiny")
    c1, c2, c3 = model.config.widths
    trace = {t.path: t for t in trace_units(model, size=64)}
    assert list(trace)[0] == "head" and list(trace)[-1] == "tail"
    assert trace["head"].out_shape == (1, c1, 64, 64)
    assert trace["encoder.2"].out_shape == (1, c3, 16, 16)
    assert trace["downsample.2"].out_shape == (1, c3, 8, 8)
    assert trace["bottleneck.0"].out_shape == (1, c3, 8, 8)
    # MFFU at H/4 receives [up, E3, down(E2), down(down(E1))]
    assert trace["fusion.0"].in_shapes == ((1, c3, 16, 16), (1, c3, 16, 16), (1, c2, 16, 16),
                                          (1, c1, 16, 16))
    assert trace["fusion.2"].out_shape == (1, c1, 64, 64)
    assert trace["tail"].out_shape == (1, 3, 64, 64)
    assert sum(t.kind == "LGCM" for t in trace.values()) == 6


def test_trace_without_mffu_and_batch():
    model = build_model("tiny", use_mffu=False)
    trace = trace_units(model, size=64, batch=2)
    assert not any(t.kind == "MFFU" for t in trace)
    assert all(t.out_shape[0] == 2 for t in trace)


def test_count_calls_shared_resamplers():
    calls = count_calls(build_model("tiny").eval(), torch.zeros(1, 3, 64, 64))
    assert calls["resampler.e1_down"] == 3
    assert calls["resampler.e3_up2"] == 2
    assert calls["resampler.e2_down"] == 1
    assert calls["head"] == 1


@pytest.mark.parametrize("mffu", [True, False])
def test_draw_dataflow(mffu):
    fig = draw_dataflow(build_model("tiny", use_mffu=mffu), size=64)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "8x64x64" in texts and "3x64x64" in texts
    matplotlib.pyplot.close(fig)


def _dashed_arrows(ax):
    return [t for t in ax.texts
            if getattr(t, "arrow_patch", None) is not None and t.arrow_patch.get_linestyle() == "--"]


def test_draw_dataflow_of_a_config_that_is_not_a_preset_has_a_box_per_unit():
    for overrides, n_skips in (({"num_frm": 3, "use_mffu": False}, 3), ({"num_frm": 0}, 9)):
        model = build_model("tiny", **overrides)
        traced = trace_units(model, size=64)
        fig = draw_dataflow(model, size=64)
        ax = fig.axes[0]
        assert len(ax.patches) == len(traced) == len(model.units()) - (model.fusion is not None)
        # one dashed arrow per U-Net skip, or every encoder scale into every MFFU
        assert len(_dashed_arrows(ax)) == n_skips
        labels = {t.get_text() for t in ax.texts}
        n_frm = overrides["num_frm"]
        assert {f"FRM {i}" for i in range(n_frm)} <= labels and f"FRM {n_frm}" not in labels
        assert ("MFFU 0" in labels) == (model.fusion is not None)
        matplotlib.pyplot.close(fig)


@pytest.mark.parametrize("mffu", [True, False])
def test_draw_dataflow_names_the_sides_and_keeps_skips_off_the_down_boxes(mffu):
    fig = draw_dataflow(build_model("tiny", use_mffu=mffu), size=64)
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert {f"Enc LGCM {i}" for i in range(3)} | {f"Dec LGCM {i}" for i in range(3)} <= labels
    assert not {f"LGCM {i}" for i in range(3)} & labels
    down_label = [t for t in ax.texts if t.get_text().startswith("Down ")]
    downs = [p.get_extents().transformed(ax.transData.inverted()) for p in ax.patches
             if any(p.contains_point(ax.transData.transform(t.get_position())) for t in down_label)]
    assert len(downs) == 3

    def crosses(p0, p1):
        for s in [k / 50 for k in range(51)]:
            x, y = p0[0] + s * (p1[0] - p0[0]), p0[1] + s * (p1[1] - p0[1])
            if any(b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1 for b in downs):
                return True
        return False

    dashed = _dashed_arrows(ax)
    assert dashed
    for t in dashed:  # the arrow parts
        assert not crosses(t.xyann, t.xy)
    for line in ax.lines:  # the horizontal lead-outs from the encoder LGCMs
        if line.get_linestyle() == "--":
            xs, ys = line.get_data()
            assert not crosses((xs[0], ys[0]), (xs[-1], ys[-1]))
    matplotlib.pyplot.close(fig)


def test_course_modules_spell_no_module_path_of_the_network():
    """Issue 21: the course reads the network's structure from units() and the module tree;
    no string in ctcnet/course is a module path of any preset (with or without MFFUs)."""
    import ast
    from pathlib import Path

    from ctcnet import PRESETS

    paths = set()
    for preset in PRESETS:
        for overrides in ({}, {"use_mffu": False}):
            with torch.device("meta"):
                model = build_model(preset, **overrides)
            paths |= {name for name, _ in model.named_modules() if name}
    course = Path(__file__).resolve().parents[1] / "ctcnet" / "course"
    found = []
    for source in sorted(course.glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in paths:
                found.append(f"{source.name}:{node.lineno} {node.value!r}")
    assert not found, found
