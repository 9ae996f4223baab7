"""Per-input effective receptive fields, their statistics and the facial-region pixels."""

import numpy as np
import pytest
import torch
from torch import nn

from ctcnet.analysis.receptive_field import (
    effective_receptive_field,
    erf_maps,
    radius_summary,
)


def _box_stack(depth: int = 3) -> nn.Sequential:
    """``depth`` 3x3 all-ones convolutions: the support of a pixel's gradient has radius depth."""
    stack = nn.Sequential(*(nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(depth)))
    for conv in stack:
        nn.init.ones_(conv.weight)
    return stack


def test_erf_maps_keeps_one_map_per_input_and_pixel():
    x = torch.rand(3, 1, 21, 21) * 2 - 1
    result = erf_maps(_box_stack(), x, [(10, 10), (5, 12)], residual=False, batch_size=2)
    assert result.maps.shape == (2, 3, 21, 21)
    assert result.pixels.shape == (2, 3, 2)
    # a linear stack: every input has the same map, centred on its own pixel
    one_d = np.array([1, 3, 6, 7, 6, 3, 1], dtype=float)
    expected = np.zeros((21, 21))
    expected[2:9, 9:16] = np.outer(one_d, one_d)
    for n in range(3):
        np.testing.assert_allclose(result.maps[1, n], expected, rtol=1e-6)
    np.testing.assert_array_equal(result.radii(1.0), np.full((2, 3), 3.0))
    # mass within radius 1: 19^2 / 27^2 = 0.495; within radius 2: 25^2 / 27^2 = 0.857
    np.testing.assert_array_equal(result.radii(0.5), np.full((2, 3), 2.0))
    np.testing.assert_array_equal(result.radii(0.9), np.full((2, 3), 3.0))


def test_erf_maps_mean_matches_effective_receptive_field():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))
    x = torch.rand(4, 3, 17, 17) * 2 - 1
    mine = erf_maps(model, x, residual=True, batch_size=3).mean_result()
    reference = effective_receptive_field(model, inputs=x, residual=True)
    np.testing.assert_allclose(mine.map, reference.map, rtol=1e-5, atol=1e-9)
    assert mine.radii == reference.radii
    assert mine.pixel == (8, 8) and mine.n_inputs == 4


def test_erf_maps_follows_one_pixel_per_input():
    x = torch.rand(2, 1, 21, 21)
    pixels = np.array([[[4, 4], [15, 12]]])  # (P=1, N=2, 2)
    result = erf_maps(_box_stack(1), x, pixels, residual=False)
    for n, (row, col) in enumerate(pixels[0]):
        rows, cols = np.nonzero(result.maps[0, n])
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (row - 1, row + 1, col - 1, col + 1)
    with pytest.raises(ValueError, match="different pixels"):
        result.mean_result()


def test_erf_maps_restores_the_model_and_rejects_bad_pixels():
    model = _box_stack(1).train()
    model[0].weight.requires_grad_(True)
    x = torch.rand(1, 1, 9, 9)
    erf_maps(model, x, residual=False)
    assert model.training and model[0].weight.requires_grad
    assert model[0].weight.grad is None  # the parameters' gradients were not computed
    with pytest.raises(ValueError, match="outside"):
        erf_maps(model, x, (9, 0), residual=False)
    with pytest.raises(ValueError, match="pixels must be"):
        erf_maps(model, x, np.zeros((1, 2, 2), dtype=int), residual=False)


def test_window_radii_ignore_mass_outside_the_window():
    x = torch.rand(1, 1, 21, 21)
    result = erf_maps(_box_stack(1), x, (10, 10), residual=False)
    result.maps[0, 0, 0, 0] = 100.0  # far mass: dominates the whole-image radius only
    assert result.radii(0.5)[0, 0] == 10
    assert result.radii(0.5, window=4)[0, 0] == 1
    with pytest.raises(ValueError, match="leaves"):
        result.radii(0.5, window=11)


def test_radius_summary_and_verdicts():
    table = radius_summary({"a": [1.0, 2.0, 3.0, 4.0], "b": [5.0, 5.0]})
    a = table.set_index("name").loc["a"]
    assert a["n"] == 4 and a["mean"] == pytest.approx(2.5)
    assert a["sd"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert 1.0 <= a["low"] < 2.5 < a["high"] <= 4.0
    b = table.set_index("name").loc["b"]
    assert b["low"] == b["high"] == 5.0
    with pytest.raises(ValueError):
        radius_summary({"c": [1.0]})
