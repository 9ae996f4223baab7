"""Matplotlib figures for the analysis chapters: heat-map overlays, attribution grids, FSAU
maps, MDTA heads and effective receptive fields. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import LogNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator
from PIL import Image

from ..pixels import to_uint8 as _reference_to_uint8

__all__ = [
    "to_uint8",
    "overlay_heatmap",
    "plot_attribution_grid",
    "plot_fsau_maps",
    "plot_mdta_heads",
    "plot_erf",
    "plot_share_bars",
    "plot_timing_runs",
    "plot_time_per_flop",
    "eyes_box",
    "plot_zoom_rows",
    "plot_face_gains",
    "plot_paired_comparison",
    "plot_upscale_panels",
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
        for axis in (ax.xaxis, ax.yaxis):  # channels are whole numbers
            axis.set_major_locator(MaxNLocator(integer=True))
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


def plot_share_bars(counts: Mapping[str, float], xlabel: str, ylabel: str = "", title: str = "",
                    unit: float = 1e6):
    """Horizontal bars of ``counts`` (a dict or pandas Series, name -> count, drawn in the given
    order, first at the bottom), the x axis in multiples of ``unit``; every bar carries its count
    and its share of the total, so that a bar too small to see still reads."""
    names = list(counts.keys())  # a pandas Series iterates over its values, not its names
    values = np.asarray([counts[k] for k in names], dtype=float)
    if values.size == 0 or values.sum() <= 0:
        raise ValueError("plot_share_bars needs at least one positive count")
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 0.7))
    plt.close(fig)
    ax.barh(names, values / unit, color="#6baed6")
    for y, n in enumerate(values):
        ax.text(n / unit, y, f" {n:,.0f} ({n / values.sum():.1%})", va="center", fontsize=8)
    ax.set_xlim(0, values.max() / unit * 1.35)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_timing_runs(runs, title: str | None = None):
    """Every timed pass of a :class:`ctcnet.analysis.cost.TimingRuns`, two ways.

    Left: the passes of each case as dots (one per round), with the median (bar) and the
    interval of the median from :meth:`~ctcnet.analysis.cost.TimingRuns.summary` (shaded).
    Right: seconds against the round, one line per case, each divided by its own median, so
    that rounds in which the whole machine was slow show up as a common bump.
    """
    summary = runs.summary()
    table = runs.per_round()
    cases = list(summary.index)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.9 + 0.55 * len(cases) + 2.2),
                                      gridspec_kw={"width_ratios": [1.25, 1]})
    jitter = np.linspace(-0.18, 0.18, len(table))
    for k, case in enumerate(cases):
        row = summary.loc[case]
        left.fill_betweenx([k - 0.3, k + 0.3], row["low_s"], row["high_s"], color="tab:blue",
                           alpha=0.15, lw=0, label="interval of the median" if k == 0 else None)
        left.plot([row["median_s"]] * 2, [k - 0.3, k + 0.3], color="tab:blue", lw=2,
                  label="median" if k == 0 else None)
        left.scatter(table[case], k + jitter, s=14, color="black", zorder=3,
                     label="one pass" if k == 0 else None)
    left.set_xscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    left.xaxis.set_major_formatter(plain)
    left.xaxis.set_minor_formatter(plain)
    left.tick_params(axis="x", which="minor", labelsize=7)
    left.set_yticks(range(len(cases)), cases)
    left.invert_yaxis()
    left.set_xlabel("wall time of one forward pass (s, log scale)")
    left.legend(fontsize=8, loc="best")
    left.set_title("every pass, its median and the median's interval", fontsize=10)
    for case in cases:
        right.plot(table.index, table[case] / table[case].median(), marker="o", ms=3, label=case)
    right.axhline(1, color="gray", lw=0.8, ls=":")
    right.set_xlabel("round")
    right.set_ylabel("time / the case's median")
    right.set_title("round by round: common bumps are the machine", fontsize=10)
    right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_time_per_flop(table, title: str | None = None):
    """Time share against FLOP share per module class, from
    :meth:`ctcnet.analysis.cost.TimingRuns.module_table` with ``flops``.

    Left: both shares per class, the time share with its range over the rounds. Right: the
    ratio time share / FLOP share on a log scale, with its range over the rounds; classes
    without FLOPs (pure element-wise work) are listed under the axis instead.
    """
    rows = table.sort_values("time share", ascending=False)
    counted = rows[rows["FLOP share"] > 0]
    free = [m for m in rows.index if not rows.loc[m, "FLOP share"] > 0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 1.2 + 0.36 * len(rows)))
    pos = np.arange(len(rows))
    t = rows["time share"] * 100
    left.barh(pos - 0.2, t, height=0.4, color="tab:orange", label="time (median over rounds)",
              xerr=[t - rows["min share"] * 100, rows["max share"] * 100 - t],
              error_kw={"elinewidth": 0.8, "capsize": 2})
    left.barh(pos + 0.2, rows["FLOP share"].fillna(0) * 100, height=0.4, color="tab:blue",
              label="FLOPs")
    left.set_yticks(pos, rows.index)
    left.invert_yaxis()
    left.set_xlabel("share of the forward pass (%), inclusive of sub-modules")
    left.legend(fontsize=8, loc="lower right")
    left.set_title("shares (bars: min to max over rounds)", fontsize=10)
    pos = np.arange(len(counted))
    r = counted["time / FLOPs"]
    right.errorbar(r, pos, xerr=[r - counted["min ratio"], counted["max ratio"] - r], fmt="o",
                   color="black", capsize=3)
    right.axvline(1, color="gray", lw=0.8, ls=":")
    right.set_xscale("log")
    right.set_yticks(pos, counted.index)
    right.invert_yaxis()
    right.set_xlabel("time share / FLOP share (log scale; 1 = as the FLOPs predict)")
    right.set_title("time per FLOP, relative to the whole network", fontsize=10)
    if free:
        right.text(0.0, -0.12 - 0.02 * len(counted) ** 0.5, "no FLOPs counted: " + ", ".join(free),
                   transform=right.transAxes, fontsize=8, va="top")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def eyes_box(landmarks, side: int = 128, width: float = 2.4, height: float = 1.0
             ) -> tuple[int, int, int, int]:
    """A zoom box ``(x, y, w, h)`` around both eyes of one face, from its five landmarks.

    ``landmarks`` is 5x2 (x, y) in the order of :data:`ctcnet.faces.CANONICAL_LANDMARKS` (left
    eye, right eye, nose tip, mouth corners). The box is centred on the middle of the eyes,
    ``width`` eye distances wide and ``height`` eye distances high, and kept inside a
    ``side x side`` image, so it follows each face instead of assuming where eyes are.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    (x0, y0), (x1, y1) = points[0], points[1]
    eye_distance = max(float(np.hypot(x1 - x0, y1 - y0)), 4.0)
    w = int(min(side, round(width * eye_distance)))
    h = int(min(side, round(height * eye_distance)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x = int(np.clip(round(cx - w / 2), 0, side - w))
    y = int(np.clip(round(cy - h / 2), 0, side - h))
    return x, y, w, h


def plot_zoom_rows(rows: Sequence[Mapping], title: str | None = None):
    """One row per face: LR (enlarged), bicubic, SR, HR and a zoom column.

    Each row is a mapping with ``lr``, ``bicubic``, ``sr``, ``hr`` (uint8 ``HxWx3``; ``lr`` is
    enlarged with nearest neighbours to the size of ``hr``), ``box`` ``(x, y, w, h)`` in HR
    pixels, ``label`` (the row's y label) and optionally ``landmarks`` (5x2, drawn on the HR
    panel) and ``box_source`` (e.g. "landmarks", shown in the zoom title). The zoom column
    stacks the box of bicubic, SR and HR, top to bottom.
    """
    fig, axes = plt.subplots(len(rows), 5, figsize=(12, 2.6 * len(rows)), squeeze=False)
    for axes_row, row in zip(axes, rows):
        hr = to_uint8(row["hr"])
        lr = to_uint8(row["lr"])
        lr_big = np.asarray(Image.fromarray(lr).resize(hr.shape[1::-1], Image.NEAREST))
        bic, sr = to_uint8(row["bicubic"]), to_uint8(row["sr"])
        x, y, w, h = row["box"]
        zoom = np.concatenate([p[y:y + h, x:x + w] for p in (bic, sr, hr)], axis=0)
        source = row.get("box_source")
        panels = [(f"LR {lr.shape[0]}×{lr.shape[1]}", lr_big), ("bicubic", bic),
                  ("SR (model)", sr), ("HR", hr),
                  ("eyes" + (f" ({source})" if source else "") + ", top to bottom:\n"
                   "bicubic, SR, HR", zoom)]
        for ax, (label, image) in zip(axes_row, panels):
            ax.imshow(image)
            ax.set_title(label, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        axes_row[3].add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="yellow",
                                        lw=1.2))
        if row.get("landmarks") is not None:
            points = np.asarray(row["landmarks"])
            axes_row[3].plot(points[:, 0], points[:, 1], "r.", ms=4)
        axes_row[0].set_ylabel(row.get("label", ""), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_face_gains(names: Sequence[str], gains, interval=None, title: str | None = None,
                    xlabel: str = "PSNR(model) − PSNR(bicubic) (dB)"):
    """A horizontal bar per face (sorted as given; green above 0, red below), with the mean and
    its confidence interval (``interval``: an object with ``mean``, ``low``, ``high``, such as
    :class:`ctcnet.metrics.BootstrapCI`) as a line and a band."""
    gains = np.asarray(gains, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 0.6 + 0.24 * len(gains)))
    ax.barh(range(len(gains)), gains, color=np.where(gains >= 0, "#74c476", "#fb6a4a"))
    ax.axvline(0, color="black", lw=0.8)
    if interval is not None:
        ax.axvspan(interval.low, interval.high, color="tab:blue", alpha=0.15,
                   label="95 % CI of the mean")
        ax.axvline(interval.mean, color="tab:blue", lw=1.2, label="mean gain")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(range(len(gains)), list(names), fontsize=7)
    ax.set_ylim(-0.6, len(gains) - 0.4)
    ax.set_ylabel("face (sorted by gain)")
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_paired_comparison(a, b, label_a: str, label_b: str, intervals: Mapping[str, object],
                           paired: str):
    """Two models scored on the same faces.

    Left: one point per face, ``b`` on x and ``a`` on y, with the diagonal of equal scores.
    Right: the 95 % intervals in ``intervals`` (name -> object with ``mean``, ``low``,
    ``high``), each drawn around its own mean on one dB scale (the axis is the deviation from
    that mean, not the dB value; the true interval is written above each bar); the one named
    ``paired`` in red.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.scatter(b, a, s=18)
    lims = [min(a.min(), b.min()) - 0.5, max(a.max(), b.max()) + 0.5]
    left.plot(lims, lims, "k--", lw=0.8, label="equal PSNR")
    left.set_xlabel(f"PSNR of the {label_b} (dB)")
    left.set_ylabel(f"PSNR of the {label_a} (dB)")
    left.set_title("one point per test face")
    left.legend(fontsize=8)
    names = list(intervals)
    for k, name in enumerate(names):
        ci = intervals[name]
        right.errorbar([k], [0], yerr=[[ci.mean - ci.low], [ci.high - ci.mean]], fmt="o",
                       color="tab:red" if name == paired else "tab:blue", capsize=6)
        fmt = "+.2f" if name == paired else ".2f"
        text = f"mean {ci.mean:{fmt}} dB\n[{ci.low:{fmt}}, {ci.high:{fmt}}]"
        right.annotate(text, (k, ci.high - ci.mean), textcoords="offset points", xytext=(0, 8),
                       ha="center", fontsize=8)
    right.set_xticks(range(len(names)), names, fontsize=8)
    right.set_xlim(-0.5, len(names) - 0.5)
    top = max(intervals[n].high - intervals[n].mean for n in names)
    right.set_ylim(-1.35 * top, 1.6 * top)
    right.set_ylabel("deviation from its own mean (dB)")
    right.set_title("unpaired intervals against the paired one")
    fig.tight_layout()
    return fig


def plot_upscale_panels(panels: Mapping[str, object], box: Sequence[float], zoom: float = 2.2):
    """Whole photos (top row) and the region around one face (bottom row), side by side.

    ``panels`` maps a title to an image (uint8 ``HxWx3`` arrays or PIL images, all of the same
    size); ``box`` is the face's ``(x, y, w, h)`` in those pixels. The bottom row shows a square
    ``zoom`` face widths wide around the box, enlarged with nearest neighbours; the box is drawn
    in yellow on the top row.
    """
    images = {name: np.asarray(image)[..., :3] for name, image in panels.items()}
    x, y, w, h = box
    side = zoom * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    fig, axes = plt.subplots(2, len(images), figsize=(3 * len(images), 6.2), squeeze=False)
    for k, (name, image) in enumerate(images.items()):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(image)
        top.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False,
                                edgecolor="yellow", lw=1.2))
        top.set_title(name, fontsize=9)
        bottom.imshow(image, interpolation="nearest")
        bottom.set_xlim(cx - side / 2, cx + side / 2)
        bottom.set_ylim(cy + side / 2, cy - side / 2)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("whole photo")
    axes[1, 0].set_ylabel("around the face")
    fig.tight_layout()
    return fig
