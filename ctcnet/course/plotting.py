"""Matplotlib figures for the analysis chapters: heat-map overlays, attribution grids, FSAU
maps, MDTA heads and effective receptive fields. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle

from ..pixels import to_uint8 as _reference_to_uint8

__all__ = [
    "to_uint8",
    "overlay_heatmap",
    "plot_attribution_grid",
    "plot_fsau_maps",
    "plot_mdta_heads",
    "plot_erf",
]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def to_uint8(image) -> np.ndarray:
    """``(3, H, W)`` / ``(1, 3, H, W)`` tensor in ``[-1, 1]`` or ``(H, W, 3)`` array -> uint8
    ``(H, W, 3)``. uint8 input is returned unchanged.

    The conversion itself is the library's :func:`ctcnet.pixels.to_uint8` (the
    reference's truncating post-processing), so a figure shows the pixels the metrics score;
    this wrapper only accepts the layouts figures come in (first image of a batch, HWC arrays).
    """
    a = _np(image)
    if a.dtype == np.uint8:
        return a
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3 and a.shape[0] not in (1, 3):
        a = a.transpose(2, 0, 1)  # HWC -> CHW
    return _reference_to_uint8(torch.from_numpy(np.ascontiguousarray(a)))


def _resize_nearest(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if heat.shape == shape:
        return heat
    rows = (np.arange(shape[0]) * heat.shape[0] // shape[0]).clip(0, heat.shape[0] - 1)
    cols = (np.arange(shape[1]) * heat.shape[1] // shape[1]).clip(0, heat.shape[1] - 1)
    return heat[rows][:, cols]


def overlay_heatmap(ax, image_uint8, heat, alpha: float = 0.5, cmap: str = "jet", **imshow):
    """Draw ``image_uint8`` and ``heat`` on top (``alpha`` blending, as the LAM demo does).

    ``heat`` on a coarser grid (e.g. a 16x16 LR attribution) is enlarged with nearest
    neighbours to the image size, so each LR pixel stays a visible block. Returns the heat
    ``AxesImage`` (pass it to ``fig.colorbar``).
    """
    img = to_uint8(image_uint8)
    heat = _np(heat).astype(np.float64)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    heat = _resize_nearest(heat, img.shape[:2])
    handle = ax.imshow(heat, cmap=cmap, alpha=alpha, **imshow)
    ax.set_xticks([])
    ax.set_yticks([])
    return handle


def _window_patch(window, scale: float = 1.0, color: str = "lime") -> Rectangle:
    top, left, size = window
    return Rectangle((left * scale - 0.5, top * scale - 0.5), size * scale, size * scale,
                     fill=False, edgecolor=color, linewidth=1.5)


def plot_attribution_grid(
    image,
    maps: Mapping[str, np.ndarray],
    window: tuple[int, int, int] | None = None,
    diffusion: Mapping[str, float] | None = None,
    alpha: float = 0.5,
    ncols: int | None = None,
    title: str | None = None,
):
    """The input with the output ``window`` marked, then one overlay per attribution map.

    Parameters
    ----------
    image : tensor or array
        The image to draw under the maps (e.g. the 128x128 model input).
    maps : dict name -> (h, w) array
        E.g. ``{"LAM": result.map, **captum_attributions(...)}``.
    window : (top, left, size), optional
        In the coordinates of ``image``.
    diffusion : dict name -> DI, optional
        Added to the panel titles.
    """
    n = len(maps) + 1
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.1 * nrows), squeeze=False)
    axes = axes.ravel()
    img = to_uint8(image)
    axes[0].imshow(img)
    axes[0].set_title("input + window")
    axes[0].set_xticks([])
    axes[0].set_yticks([])
    if window is not None:
        axes[0].add_patch(_window_patch(window))
    for ax, (name, heat) in zip(axes[1:], maps.items()):
        handle = overlay_heatmap(ax, img, heat, alpha=alpha)
        label = name if not diffusion or name not in diffusion else f"{name} (DI {diffusion[name]:.1f})"
        ax.set_title(label)
        if window is not None:
            ax.add_patch(_window_patch(window))
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="attribution (norm.)")
    for ax in axes[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_fsau_maps(maps: Mapping[str, object], image=None, ncols: int = 4, cmap: str = "viridis"):
    """One panel per FSAU map (``(h, w)`` in ``(0, 1)``, from :func:`~ctcnet.analysis.fsau_maps`),
    titled with its module path and resolution; with ``image``, an overlay on the input."""
    n = len(maps)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 3.0 * nrows), squeeze=False)
    axes = axes.ravel()
    for ax, (name, m) in zip(axes, maps.items()):
        m = _np(m).squeeze()
        if image is not None:
            handle = overlay_heatmap(ax, image, m, alpha=0.6, cmap=cmap, vmin=0, vmax=1)
        else:
            handle = ax.imshow(m, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(f"{name}\n{m.shape[0]}x{m.shape[1]}", fontsize=9)
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="M")
    for ax in axes[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_mdta_heads(matrix, name: str = "", cmap: str = "magma"):
    """All heads of one MDTA attention matrix ``(heads, d, d)`` (rows sum to 1), with axes
    labelled query channel / key channel."""
    a = _np(matrix)
    heads = a.shape[0]
    fig, axes = plt.subplots(1, heads, figsize=(max(4.8, 3.6 * heads), 4.2), squeeze=False)
    for h, ax in enumerate(axes[0]):
        handle = ax.imshow(a[h], cmap=cmap, vmin=0)
        ax.set_title(f"{name} head {h}" if name else f"head {h}", fontsize=9)
        ax.set_xlabel("key channel")
        ax.set_ylabel("query channel")
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="weight")
    fig.tight_layout()
    return fig


def plot_erf(
    result_or_map,
    radii: Mapping[float, float] | None = None,
    pixel: tuple[int, int] | None = None,
    log: bool = True,
    title: str | None = None,
    fractions: Sequence[float] = (0.5, 0.9, 0.99),
):
    """An effective receptive field (``ERFResult`` or ``(H, W)`` map) with the squares holding
    50/90/99 % of its mass (Chebyshev radii), on a log colour scale by default."""
    if hasattr(result_or_map, "map"):
        m = result_or_map.map
        radii = radii or result_or_map.radii
        pixel = pixel or result_or_map.pixel
    else:
        m = _np(result_or_map)
    h, w = m.shape
    py, px = pixel if pixel is not None else (h // 2, w // 2)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    positive = m[m > 0]
    norm = LogNorm(vmin=max(positive.min(), positive.max() * 1e-6), vmax=positive.max()) if (
        log and positive.size
    ) else None
    handle = ax.imshow(np.where(m > 0, m, np.nan) if log else m, cmap="inferno", norm=norm)
    colors = ("cyan", "lime", "white")
    for f, c in zip(fractions, colors):
        if radii and f in radii:
            r = radii[f]
            ax.add_patch(Rectangle((px - r - 0.5, py - r - 0.5), 2 * r + 1, 2 * r + 1, fill=False,
                                   edgecolor=c, linewidth=1.2, label=f"{f:.0%}: r = {r:g}"))
    ax.plot([px], [py], "+", color="white")
    ax.set_xlabel("input column")
    ax.set_ylabel("input row")
    if radii:
        ax.legend(loc="lower right", fontsize=8)
    fig.colorbar(handle, ax=ax, label="share of |gradient|")
    ax.set_title(title or "effective receptive field")
    fig.tight_layout()
    return fig
