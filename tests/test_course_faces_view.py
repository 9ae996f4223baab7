"""Tests for the image figures of ctcnet.course.faces_view (chapters 1, 2 and 8)."""

import matplotlib
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from ctcnet.course.faces_view import WINDOW_COLOURS, image_grid, zoom_grid

matplotlib.use("Agg")


def _image(size: int, value: int = 0) -> np.ndarray:
    rng = np.random.default_rng(value)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_image_grid_lays_out_rows_captions_and_labels():
    rows = [[_image(16), _image(128), _image(128, 1)], [_image(128, 2), None]]
    captions = [["LR", "bicubic", "HR"], ["a", ""]]
    fig = image_grid(rows, captions, row_labels=["face 0", "face 1"], title="faces")
    axes = np.array(fig.axes).reshape(2, 3)
    assert axes[0, 0].get_xlabel() == "LR" and axes[0, 2].get_xlabel() == "HR"
    assert axes[0, 0].get_ylabel() == "face 0" and axes[1, 0].get_ylabel() == "face 1"
    # the 16x16 image fills the same square as the 128x128 ones, drawn with nearest neighbours
    small, big = axes[0, 0].images[0], axes[0, 1].images[0]
    assert small.get_extent() == big.get_extent() and small.get_interpolation() == "nearest"
    assert small.get_array().shape[:2] == (16, 16)
    assert not axes[1, 1].axison and not axes[1, 2].axison  # None and a missing entry stay empty
    matplotlib.pyplot.close(fig)
    wide = image_grid([[np.zeros((50, 100, 3), np.uint8)]]).axes[0].images[0]
    assert wide.get_extent() == [0.0, 1.0, 0.75, 0.25]  # centred, aspect ratio kept
    assert fig._suptitle.get_text() == "faces"
    matplotlib.pyplot.close(fig)


def test_zoom_grid_draws_boxes_crops_and_error_maps():
    hr, sr = _image(128, 3), _image(128, 4)
    windows = {"eye": (40, 30, 32), "mouth": (80, 48, 32)}
    errors = {"ours": np.abs(sr.astype(float) - hr).mean(-1)}
    fig = zoom_grid({"ours": sr, "HR": hr}, windows, errors, title="one face")
    grid = np.array(fig.axes[:8]).reshape(4, 2)  # the colour bar comes last
    boxes = [p for p in grid[0, 0].patches if isinstance(p, Rectangle)]
    assert [b.get_edgecolor() for b in boxes] == [matplotlib.colors.to_rgba(c)
                                                 for c in WINDOW_COLOURS[:2]]
    np.testing.assert_array_equal(grid[1, 1].images[0].get_array(), hr[40:72, 30:62])
    np.testing.assert_array_equal(grid[2, 0].images[0].get_array(), sr[80:112, 48:80])
    assert grid[1, 0].get_ylabel() == "eye (×4)"
    assert grid[3, 0].images and not grid[3, 1].axison  # an error map only where one is given
    assert len(fig.axes) == 9 and "grey levels" in fig.axes[-1].get_ylabel()
    matplotlib.pyplot.close(fig)


def test_zoom_grid_refuses_images_of_different_sizes():
    with pytest.raises(ValueError, match="one size"):
        zoom_grid({"LR": _image(16), "HR": _image(128)}, {"eye": (0, 0, 8)})
