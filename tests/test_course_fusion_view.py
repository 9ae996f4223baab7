"""Tests for ctcnet.course.fusion_view: switching modules off, zeroing an MFFU input, the
captured outputs and the figures of chapters 6 and 7."""

import copy

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ctcnet.course.fusion_view import (
    capture_outputs,
    channel_norm,
    grey_change,
    input_zeroed,
    plot_branch_drops,
    plot_change_grid,
    plot_faces_and_changes,
    plot_frequency_split,
    plot_gate_histogram,
    plot_maps_row,
    plot_param_split,
    switched_off,
)

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(1, 3, 64, 64).clamp(-1, 1)


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_switched_off_identity_equals_a_copy_with_nn_identity(tiny, x):
    copied = copy.deepcopy(tiny)
    copied.encoder[1].fsau = nn.Identity()
    with torch.no_grad():
        expected = copied(x)
        with switched_off(tiny.encoder[1].fsau):
            got = tiny(x)
        intact = tiny(x)
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, intact)  # the switch did something ...
    assert _no_hooks(tiny)  # ... and left nothing behind


def test_switched_off_zero_returns_zeros(tiny, x):
    copied = copy.deepcopy(tiny)
    with torch.no_grad():
        with switched_off(tiny.encoder[0].transformer, how="zero"):
            _, inside = capture_outputs(tiny, x, {"tb": tiny.encoder[0].transformer})
    assert torch.count_nonzero(inside["tb"]) == 0
    assert _no_hooks(tiny)
    torch.testing.assert_close(tiny.state_dict(), copied.state_dict())  # weights untouched


def test_switched_off_is_the_modules_view_one():
    from ctcnet.course import modules_view

    assert switched_off is modules_view.switched_off  # one implementation (tested there too)


def test_switched_off_identity_on_a_shape_changing_module_is_refused(tiny, x):
    with pytest.raises(ValueError, match="cannot be replaced by the identity"):
        with switched_off(tiny.downsample[0]), torch.no_grad():
            tiny(x)
    assert _no_hooks(tiny)  # removed although the forward pass failed


def test_input_zeroed_equals_zeros_in_the_list(tiny, x):
    mffu = tiny.fusion[2]
    seen = {}
    handle = mffu.register_forward_pre_hook(lambda m, args: seen.update(f=list(args[0])))
    with torch.no_grad():
        tiny(x)
    handle.remove()
    features = seen["f"]
    expected = mffu([features[0], torch.zeros_like(features[1]), *features[2:]])
    with input_zeroed(mffu, 1), torch.no_grad():
        got = mffu(features)
    torch.testing.assert_close(got, expected)
    assert _no_hooks(tiny)


def test_input_zeroed_index_out_of_range_is_refused(tiny, x):
    with pytest.raises(ValueError, match="out of range for 4 inputs"):
        with input_zeroed(tiny.fusion[0], 4), torch.no_grad():
            tiny(x)
    assert _no_hooks(tiny)


def test_input_zeroed_on_a_tensor_input_is_refused(tiny, x):
    with pytest.raises(ValueError, match="not a list of tensors"):
        with input_zeroed(tiny.encoder[0], 0), torch.no_grad():
            tiny(x)


def test_capture_outputs_names_modules_never_called(tiny, x):
    with pytest.raises(ValueError, match="never called|not called"):
        capture_outputs(tiny, x, {"lonely": nn.Conv2d(1, 1, 1)})
    out, inside = capture_outputs(tiny, x, {"e0": tiny.encoder[0]})
    assert inside["e0"].shape == (1, tiny.config.widths[0], 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(out, tiny(x))


def test_channel_norm_and_grey_change_values():
    f = torch.zeros(1, 2, 2, 3)
    f[0, 0, 1, 2], f[0, 1, 1, 2] = 3.0, 4.0
    assert channel_norm(f)[1, 2] == pytest.approx(5.0) and channel_norm(f).shape == (2, 3)
    a, b = torch.zeros(3, 2, 2), torch.zeros(3, 2, 2)
    b[:, 0, 0] = 2 / 255 * 3  # three grey levels in every channel
    change = grey_change(b, a)
    assert change[0, 0] == pytest.approx(3.0, rel=1e-5) and change[1, 1] == 0


def test_figures_draw(tiny):
    image = torch.rand(3, 16, 16) * 2 - 1
    maps = {"a": np.random.rand(8, 8), "b": np.random.rand(4, 4)}
    assert len(plot_maps_row(maps, "x", image=image).axes) == 4  # face, 2 maps, colour bar
    fig = plot_faces_and_changes({"ref": image, "other": image * 0.5}, "ref", hr=image)
    assert fig.axes
    with pytest.raises(ValueError, match="reference"):
        plot_faces_and_changes({"a": image}, "b")
    grid = plot_change_grid({("r", "c"): np.random.rand(4, 4)}, ["r", "s"], ["c"],
                            notes={("r", "c"): "note"})
    assert "note" in grid.axes[0].get_xlabel()
    split = pd.DataFrame({"p": [1e6, 2e6], "q": [3e6, 1e6]}, index=pd.Index(["x", "y"], name="n"))
    assert plot_param_split(split, ["p", "q"]).axes
    effect = pd.DataFrame({"LGCM": ["a", "a"], "branch off": ["fsau", "transformer"],
                           "stage change": [0.1, 0.2], "PSNR drop (dB)": [0.3, 0.0],
                           "CI low": [0.1, -0.1], "CI high": [0.5, 0.1]})
    assert len(plot_branch_drops(effect, ["a"], n_faces=3).axes) == 2
    a = torch.randn(1, 4, 8, 8)
    assert plot_frequency_split(image, a, a * 0.5, a * 0.5, 1).axes
    assert plot_gate_histogram(torch.randn(100) * 0.05).axes


def test_gate_histogram_band_lies_behind_the_bars_and_colour_bar_spans_one_panel():
    fig = plot_gate_histogram(torch.randn(1000) * 0.05)
    ax = fig.axes[0]
    band = [p for p in ax.patches if "sigmoid" in p.get_label()]
    bars = [p for p in ax.patches if p not in band]
    assert bars and band and max(p.get_zorder() for p in band) < min(p.get_zorder() for p in bars)
    fig = plot_maps_row({"one": np.random.rand(16, 16)}, "x")
    fig.canvas.draw()
    panel, bar = (a.get_position() for a in fig.axes)
    image_height = panel.height  # an imshow panel: the box is the image's
    assert bar.height >= 0.95 * image_height


def test_plot_change_grid_without_any_key_is_refused():
    # keyed (column, row) by mistake: the grid would be blank
    with pytest.raises(ValueError, match="no change map is keyed"):
        plot_change_grid({("c", "r"): np.zeros((2, 2))}, rows=["r"], columns=["c"])
