"""Tests for ctcnet.course.modules_view: capturing a module's input and output, switching modules
off for one forward pass, and the figures of chapters 3 to 5."""

import matplotlib
import numpy as np
import pytest
import torch

from ctcnet.course import modules_view as V
from ctcnet.model import MDTA, LocalBlock
from ctcnet.stats import BootstrapCI

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.rand(2, 3, 32, 32) * 2 - 1


def test_capture_records_what_a_module_receives_and_returns(tiny, x):
    lb = tiny.encoder[0].local_in
    output, seen = V.capture(tiny, x, {"LB": lb, "RU": lb.unit1})
    with torch.no_grad():
        torch.testing.assert_close(output, tiny(x))
        torch.testing.assert_close(seen["LB"].output, lb(seen["LB"].input))
        torch.testing.assert_close(seen["RU"].input, seen["LB"].input)  # the LB's first step is RU1
    assert not lb._forward_hooks and not lb.unit1._forward_hooks  # hooks are gone


def test_capture_keeps_the_training_mode_and_names_modules_never_called(tiny, x):
    tiny.train()
    try:
        V.capture(tiny, x, {"LB": tiny.encoder[0].local_in})
        assert tiny.training
    finally:
        tiny.eval()
    stray = LocalBlock(8)
    with pytest.raises(ValueError, match="not called"):
        V.capture(tiny, x, {"stray": stray})
    assert not stray._forward_hooks


def test_switched_off_identity_equals_a_network_without_the_module(tiny, x):
    fsau = tiny.encoder[0].fsau
    with torch.no_grad():
        base = tiny(x)
        with V.switched_off(fsau):
            off = tiny(x)
        # by hand: the FSAU replaced by the identity is the FSAU with M = 1
        handle = fsau.map_tap.register_forward_hook(lambda m, i, out: torch.ones_like(out))
        ones = tiny(x)
        handle.remove()
        torch.testing.assert_close(off, ones)
        assert not torch.allclose(off, base)
        torch.testing.assert_close(tiny(x), base)  # everything restored after the block


def test_switched_off_zero_and_errors(tiny, x):
    mdtas = [m for m in tiny.modules() if isinstance(m, MDTA)]
    with torch.no_grad():
        with V.switched_off(*mdtas, how="zero"):
            off = tiny(x)
        # by hand: every MDTA returns zeros, so each block is x + GDFN(LN(x))
        handles = [m.register_forward_hook(lambda mod, i, out: out * 0) for m in mdtas]
        by_hand = tiny(x)
        for h in handles:
            h.remove()
    torch.testing.assert_close(off, by_hand)
    with pytest.raises(ValueError, match="identity' or 'zero"):
        with V.switched_off(mdtas[0], how="half"):
            pass
    down = tiny.downsample[0]
    with pytest.raises(ValueError, match="cannot be replaced by the identity"), torch.no_grad():
        with V.switched_off(down):
            tiny(x)
    assert not down._forward_hooks  # the hook is removed even after the error


def test_figures_draw(tiny, x):
    output, seen = V.capture(tiny, x, {"FSAU": tiny.encoder[0].fsau, "map": tiny.encoder[0].fsau.map_tap})
    a = seen["FSAU"].input[0]
    fig = V.plot_feature_maps({"a": a, "a M": seen["FSAU"].output[0]}, [0, 1, 2])
    assert len(fig.axes) == 2 * 3 + 1  # panels and one colour bar
    fig = V.plot_maps({"M": seen["map"].output[0, 0], "coarse": torch.rand(8, 8)}, cmap="viridis",
                      symmetric=False, vmin=0, vmax=1, ncols=1)
    assert len(fig.axes) == 2 + 1
    lr = torch.rand(3, 4, 4) * 2 - 1
    fig = V.plot_switched_off(lr, x[0], output[0], output[0] * 0.9, "off")
    assert "PSNR" in fig.axes[1].get_title() and "off" in fig.axes[2].get_title()
    fig = V.plot_gains({"face 1": torch.full((6,), 0.5) + 0.01 * torch.arange(6.0)})
    assert len(fig.axes[0].patches) == 6
    ax = V.plot_spread({"a": np.random.rand(3, 5), "b": np.random.rand(3, 5)}, ["m1", "m2", "m3"], "y")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["m1", "m2", "m3"]
    cis = [BootstrapCI(0.1, 0.0, 0.2), BootstrapCI(-0.1, -0.2, 0.0)]
    ax = V.plot_intervals({"d": cis}, ["s1", "s2"], "y")
    assert ax.get_ylabel() == "y"
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:8, 4:8] = True
    ax = V.plot_masks(np.zeros((16, 16, 3), dtype=np.uint8), {"region": (mask, "C0")})
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["region"]
    matplotlib.pyplot.close("all")


def test_plot_toy_attention():
    spatial = torch.softmax(torch.rand(16, 16), -1)
    channel = torch.softmax(torch.rand(2, 2), -1)
    fig = V.plot_toy_attention(np.zeros((4, 4, 3)), spatial, channel, ["a", "b"], (1, 2), 10.0)
    assert len(fig.axes) == 4 + 3  # four panels, three colour bars
    matplotlib.pyplot.close("all")



def test_plot_learned_scalars_and_cost_curves_draw():
    import matplotlib.pyplot as plt
    import pandas as pd

    from ctcnet.course.modules_view import plot_cost_curves, plot_learned_scalars

    blocks = pd.DataFrame({"s2": [1.0, 0.9, 1.1], "s3": [1.0, 1.05, 0.95]})
    units = pd.DataFrame({"alpha": [1.0, 1.02], "beta": [0.98, 1.0]})
    fig = plot_learned_scalars(blocks, units)
    left, right = fig.axes
    assert len(left.get_lines()) >= 2 and "3 local blocks" in left.get_title()
    assert "2 residual units" in right.get_title()
    plt.close(fig)
    sides = [16, 32, 64]
    ax = plot_cost_curves(sides, {"a": [1.0, 4.0, 16.0], "b": [1.0, 16.0, 256.0]}, mark=32, mark_label="here")
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), [1.0, 16.0, 256.0])
    assert [t.get_text() for t in ax.texts] == ["here"]
    plt.close(ax.figure)
