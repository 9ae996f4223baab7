"""Faces side by side, zoomed and with their errors: the image figures of chapters 1, 2 and 8.

The chapters compute the images (degradations, model outputs, error maps) in their visible cells
and hand them here only to be laid out. Both functions return a matplotlib ``Figure`` that is
already closed in pyplot, like :func:`ctcnet.course.schematic.draw_block`: a notebook shows it
once when it is the cell's value, and ``fig.savefig(...)`` writes it.

* :func:`image_grid`: rows of images with a caption under each (a 16x16 image is drawn with
  nearest neighbours at the size of the others, so its pixels stay visible);
* :func:`zoom_grid`: one face through several methods -- the whole images with coloured boxes,
  the boxes enlarged, and error maps on one colour scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

__all__ = ["image_grid", "zoom_grid", "WINDOW_COLOURS"]

#: Colours of the zoom boxes, in the order the windows are given.
WINDOW_COLOURS = ("#00c853", "#ff6d00", "#2962ff", "#d500f9")


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _show(ax, image: np.ndarray, **imshow) -> None:
    image = np.asarray(image)
    # every image fills the same square, whatever its pixel size (a 16x16 LR face shows its 256
    # pixels as blocks instead of being smoothed by the display); a non-square one is centred in
    # it with its aspect ratio kept
    height, width = image.shape[:2]
    w, h = width / max(height, width), height / max(height, width)
    ax.imshow(image, interpolation="nearest",
              extent=((1 - w) / 2, (1 + w) / 2, (1 + h) / 2, (1 - h) / 2), **imshow)
    ax.set_xlim(0, 1)
    ax.set_ylim(1, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    captions: Sequence[Sequence[str]] | None = None,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    panel: float = 1.9,
):
    """Images in a grid, each with its caption underneath.

    Parameters
    ----------
    rows : rows of uint8 ``(H, W, 3)`` images (``None`` leaves a cell empty); images of any
        size fill the same square panel (a non-square one keeps its aspect ratio), drawn with
        nearest neighbours.
    captions : the same layout of strings, written under each image.
    row_labels : one label per row, at its left (e.g. the face's name).
    title : the figure's title.
    panel : side of one panel in inches.
    """
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(panel * n_cols + 0.3,
                                                      (panel + 0.3) * n_rows + (0.4 if title else 0)),
                             squeeze=False)
    plt.close(fig)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            image = row[j] if j < len(row) else None
            if image is None:
                ax.axis("off")
                continue
            _show(ax, image)
            if captions is not None and j < len(captions[i]) and captions[i][j]:
                ax.set_xlabel(captions[i][j], fontsize=8)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def zoom_grid(
    panels: Mapping[str, np.ndarray],
    windows: Mapping[str, tuple[int, int, int]],
    errors: Mapping[str, np.ndarray] | None = None,
    title: str | None = None,
    error_label: str = "|error| of Y (grey levels)",
    panel: float = 1.75,
):
    """One face through several methods: whole images, enlarged windows, error maps.

    Parameters
    ----------
    panels : column caption -> uint8 ``(H, W, 3)`` image, all of the same size (enlarge a small
        LR image to that size first, with nearest neighbours, so that the windows fit it).
    windows : name -> ``(top, left, size)`` in the images' pixels (e.g. from
        :func:`ctcnet.face_regions.landmark_window`); each becomes a coloured box on the top row and a row
        of enlarged crops below it.
    errors : column caption -> ``(H, W)`` error map; drawn in a last row on one shared colour
        scale (0 to the 99th percentile of all maps' values, larger values in the top colour),
        with a colour bar and each map's mean under it; other columns stay empty.
    title : the figure's title.
    panel : side of one panel in inches.
    """
    names = list(panels)
    shapes = {np.asarray(p).shape[:2] for p in panels.values()}
    if len(shapes) != 1:
        raise ValueError(f"zoom_grid needs images of one size, got {sorted(shapes)}")
    (height, width), = shapes
    n_rows = 1 + len(windows) + (1 if errors else 0)
    fig, axes = plt.subplots(n_rows, len(names),
                             figsize=(panel * len(names) + (0.9 if errors else 0.3),
                                      (panel + 0.25) * n_rows + (0.4 if title else 0)),
                             squeeze=False, layout="constrained")
    plt.close(fig)
    for j, name in enumerate(names):
        image = np.asarray(panels[name])
        _show(axes[0, j], image)
        axes[0, j].set_title(name, fontsize=9)
        for k, (part, (top, left, size)) in enumerate(windows.items()):
            colour = WINDOW_COLOURS[k % len(WINDOW_COLOURS)]
            axes[0, j].add_patch(Rectangle((left / width, top / height), size / width,
                                           size / height, fill=False, edgecolor=colour, lw=1.4))
            ax = axes[1 + k, j]
            _show(ax, image[top:top + size, left:left + size])
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.0)
            if j == 0:
                ax.set_ylabel(f"{part} (×{width // size})", fontsize=8)
    if errors:
        # one scale for all maps, up to the 99th percentile of all their values: the few largest
        # errors (an edge missed by a pixel) would otherwise darken everything else
        vmax = float(np.percentile(np.concatenate([np.ravel(e) for e in errors.values()]), 99))
        vmax = vmax or 1.0
        handle = None
        for j, name in enumerate(names):  # the first map's panel names the row
            ax = axes[-1, j]
            if name not in errors:
                ax.axis("off")
                continue
            shown = ax.imshow(errors[name], cmap="magma", vmin=0, vmax=vmax,
                              interpolation="nearest")
            _blank(ax)
            ax.set_xlabel(f"mean {float(np.mean(errors[name])):.1f}", fontsize=8)
            if handle is None:
                ax.set_ylabel("error", fontsize=8)
            handle = shown
        if handle is not None:
            fig.colorbar(handle, ax=list(axes[-1]), fraction=0.025, pad=0.02, label=error_label,
                         extend="max")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
