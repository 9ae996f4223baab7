"""Tests of ctcnet.course.explorer: the widgets build headless and every update draws a figure."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import ctcnet  # noqa: E402
from ctcnet.course.explorer import Explorer, build_explorer, module_choices, render  # noqa: E402


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ctcnet.build_model("tiny").eval()


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    return [(f"face{i}", rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)) for i in range(2)]


def test_module_choices_lists_fsau_and_mdta_heads(model):
    names = module_choices(model)
    assert names[0] == "encoder.0.fsau"
    assert any(n.endswith("fsau") and n.startswith("bottleneck") for n in names)
    heads = [n for n in names if " / head " in n]
    # tiny: (1,1,1) + (1,1,1) blocks with (1,1,2) heads -> 2 blocks at the last width
    assert len(heads) == sum(cfg * h for cfg, h in zip((2, 2, 2), (1, 1, 2)))


def test_render_fsau_and_mdta(model, faces):
    ex = Explorer(model, faces, lam_steps=2)
    fig = render(ex, 1, "encoder.0.fsau", (200, -5, 16), show_lam=False)  # window clipped
    assert len(fig.axes) >= 3
    plt.close(fig)
    mdta = next(n for n in ex.modules if " / head " in n)
    fig = ex.figure(0, mdta, (26, 36, 16), show_lam=True)
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "MDTA" in titles and "LAM" in titles
    plt.close(fig)
    assert len(ex._lam) == 1
    assert next(iter(ex._lam.values())).rule == "midpoint"  # as chapter 13
    with pytest.raises(ValueError):
        render(ex, 0, "no.such.module")


def test_build_explorer_headless_update(model, faces):
    pytest.importorskip("ipywidgets")
    ex = build_explorer(model, faces, lam_steps=2, show_lam=False)
    assert ex.widget is not None
    fig = ex.update()
    assert fig is ex.last_figure and len(fig.axes) >= 3
    shown = ex.widget.children[-1].outputs  # the Output widget holds exactly the new figure
    assert len(shown) == 1 and "image/png" in shown[0]["data"]
    ex.controls["face"].value = 1  # an observed change redraws
    assert ex.last_figure is not fig
    ex.controls["lam"].value = True
    assert any("LAM" in ax.get_title() for ax in ex.last_figure.axes)


def test_fsau_map_stops_early_with_the_same_map(model, faces):
    from ctcnet.analysis.attention import attention_maps
    from ctcnet.course.book import face_batch
    from ctcnet.course.explorer import fsau_map

    x = face_batch([image for _, image in faces])["lr_up"]
    _, maps = attention_maps(model, x)
    calls = []
    handle = model.tail.register_forward_hook(lambda *_: calls.append(1))
    try:
        early = fsau_map(model, x, "encoder.0.fsau")
    finally:
        handle.remove()
    assert torch.equal(early, maps["encoder.0.fsau"])
    assert not calls  # the network stopped before its tail
    assert not model.get_submodule("encoder.0.fsau").map_tap._forward_hooks  # hook removed
    with pytest.raises(ValueError, match="not an FSAU"):
        fsau_map(model, x, "head")


def test_landmark_regions_are_disjoint_and_cover_the_crop():
    from ctcnet.course.explorer import landmark_regions
    from ctcnet.faces import CANONICAL_LANDMARKS

    regions = landmark_regions(CANONICAL_LANDMARKS, 128)
    masks = np.stack(list(regions.values()))
    assert (masks.sum(axis=0) == 1).all()  # each pixel in exactly one region
    x, y = CANONICAL_LANDMARKS[2].round().astype(int)  # nose tip
    assert regions["on the landmarks"][y, x]
    assert regions["outside the face"][0, 0]
    assert regions["rest of the face"][int(y), int(CANONICAL_LANDMARKS[0, 0]) - 10]


def test_eyes_box_follows_the_landmarks():
    from ctcnet.course.plotting import eyes_box
    from ctcnet.faces import CANONICAL_LANDMARKS

    x, y, w, h = eyes_box(CANONICAL_LANDMARKS)
    eyes = CANONICAL_LANDMARKS[:2]
    assert (x < eyes[:, 0]).all() and (eyes[:, 0] < x + w).all()
    assert (y < eyes[:, 1]).all() and (eyes[:, 1] < y + h).all()
    nose_y = CANONICAL_LANDMARKS[2, 1]
    assert not y <= nose_y < y + h  # the nose tip is below the box
    lower = CANONICAL_LANDMARKS + [0, 25]  # the same face 25 px lower: the box moves with it
    assert eyes_box(lower)[1] == y + 25
    corner = CANONICAL_LANDMARKS - [45, 45]  # near the border: the box stays inside the image
    bx, by, bw, bh = eyes_box(corner)
    assert bx >= 0 and by >= 0 and bx + bw <= 128 and by + bh <= 128


def test_select_moves_the_controls_and_redraws_once(model, faces):
    pytest.importorskip("ipywidgets")
    ex = build_explorer(model, faces, lam_steps=2, show_lam=False)
    drawn = []
    original = ex.update

    def counting(*args):
        fig = original(*args)
        if fig is not None:
            drawn.append(fig)
        return fig

    for w in ex.controls.values():  # count the redraws that changes trigger
        w.unobserve(original, names="value")
        w.observe(counting, names="value")
    ex.select(face=1, module=ex.modules[0], window=(40, 30, 12))
    assert len(drawn) == 0  # no redraw per control
    values = {k: ex.controls[k].value for k in ("face", "top", "left", "size")}
    assert values == {"face": 1, "top": 40, "left": 30, "size": 12}
    assert ex.last_figure is not None
    titles = " ".join(ax.get_title() for ax in ex.last_figure.axes)
    assert "face1" in titles


def test_plot_upscale_panels_zooms_on_the_face_box():
    from ctcnet.course.plotting import plot_upscale_panels

    image = np.zeros((64, 64, 3), np.uint8)
    fig = plot_upscale_panels({"a": image, "b": image + 10}, (20, 30, 10, 8))
    top, bottom = fig.axes[0], fig.axes[2]  # row-major: first row, then second row
    assert top.get_title() == "a"
    # the zoomed panel shows a square 2.2 face widths wide, centred on the box
    assert bottom.get_xlim() == pytest.approx((25 - 11, 25 + 11))
    assert bottom.get_ylim() == pytest.approx((34 + 11, 34 - 11))
    plt.close(fig)
