"""One module of the network on a real face (chapters 3 to 5): what goes in and comes out of it,
and what the network outputs when the module is switched off.

:func:`capture` runs the network once and keeps the input and output of the modules you name;
:func:`switched_off` makes modules pass their input through (or return zeros) for the duration
of a ``with`` block, so that ``model(x)`` inside it is the network without them. Nothing is
stored on the modules: both work with temporary forward hooks.

The figures share one rule: every panel of one figure is drawn on **one** colour scale, stated
by a single colour bar, so that a colour means the same value everywhere in the figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from torch import nn

from ..metrics import psnr
from ..pixels import to_uint8

__all__ = ["Captured", "capture", "switched_off", "plot_feature_maps", "plot_maps",
           "plot_switched_off", "plot_gains", "plot_spread", "plot_intervals", "plot_masks",
           "plot_toy_attention", "plot_learned_scalars", "plot_cost_curves"]


@dataclass(frozen=True)
class Captured:
    """The first tensor a module received and the tensor it returned (last call)."""

    input: torch.Tensor
    output: torch.Tensor


def capture(model: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module]
            ) -> tuple[torch.Tensor, dict[str, Captured]]:
    """Run ``model(x)`` (eval mode, no gradients) and return ``(output, {name: Captured})`` for
    the ``modules`` given by name, e.g. ``{"RU": model.encoder[0].local_in.unit1}``.

    A module called several times keeps its last call. The model goes back to its previous mode.
    """
    found: dict[str, Captured] = {}

    def keeper(name: str):
        def hook(_module, inputs, output):
            found[name] = Captured(inputs[0].detach(), output.detach())
        return hook

    handles = [m.register_forward_hook(keeper(name)) for name, m in modules.items()]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    missing = [name for name in modules if name not in found]
    if missing:
        raise ValueError(f"these modules were not called by the forward pass: {missing}")
    return output, found


@contextlib.contextmanager
def switched_off(*modules: nn.Module, how: str = "identity") -> Iterator[None]:
    """Inside the ``with`` block, each module returns its input (``how="identity"``: the module
    is skipped) or zeros (``how="zero"``: a residual branch that adds nothing).

    The rest of the network keeps its trained weights, so the output shows how much the trained
    network relies on the module -- not how a network trained without it would do.
    """
    if how not in {"identity", "zero"}:
        raise ValueError(f"how must be 'identity' or 'zero', not {how!r}")

    def hook(_module, inputs, output):
        if how == "zero":
            return torch.zeros_like(output)
        if not isinstance(inputs[0], torch.Tensor):
            raise ValueError(f"{type(_module).__name__} takes a {type(inputs[0]).__name__}: it "
                             "cannot be replaced by the identity")
        if inputs[0].shape != output.shape:
            raise ValueError(f"{type(_module).__name__} changes the shape {tuple(inputs[0].shape)} "
                             f"-> {tuple(output.shape)}: it cannot be replaced by the identity")
        return inputs[0]

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=np.float64)


def _hide_ticks(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def plot_feature_maps(rows: Mapping[str, torch.Tensor], channels: Sequence[int],
                      cmap: str = "RdBu_r", title: str | None = None, limit: float | None = None):
    """A grid of feature maps: one row per tensor (``(C, H, W)``, or ``(1, C, H, W)``), one
    column per channel index, all on one symmetric colour scale around 0 (``limit``: its end;
    default the 99.5th percentile of |value| over all panels), with one colour bar."""
    arrays = {name: _np(t)[0] if _np(t).ndim == 4 else _np(t) for name, t in rows.items()}
    if limit is None:
        limit = float(np.percentile(np.abs(np.concatenate(
            [a[list(channels)].ravel() for a in arrays.values()])), 99.5)) or 1.0
    n_rows, n_cols = len(arrays), len(channels)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols + 1.0, 2.0 * n_rows + 0.4),
                             squeeze=False)
    handle = None
    for r, (name, a) in enumerate(arrays.items()):
        for c, channel in enumerate(channels):
            ax = axes[r, c]
            handle = ax.imshow(a[channel], cmap=cmap, vmin=-limit, vmax=limit)
            _hide_ticks(ax)
            if r == 0:
                ax.set_title(f"channel {channel}", fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
    fig.colorbar(handle, ax=axes, fraction=0.025, pad=0.02, extend="both", label="activation")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_maps(maps: Mapping[str, object], cmap: str = "RdBu_r", symmetric: bool = True,
              vmin: float | None = None, vmax: float | None = None, label: str = "activation",
              image=None, title: str | None = None, ncols: int | None = None):
    """One panel per 2-D map (each at its own resolution, which the title states), all on one
    colour scale with one colour bar. ``symmetric``: the scale is centred on 0 (default end: the
    99.5th percentile of |value|); otherwise ``vmin``/``vmax`` (default: the range of all maps).
    With ``image`` (an HxWx3 array the size of the largest map), each map is enlarged with
    nearest neighbours and laid over it."""
    arrays = {name: _np(m).squeeze() for name, m in maps.items()}
    values = np.concatenate([a.ravel() for a in arrays.values()])
    if symmetric:
        end = vmax if vmax is not None else float(np.percentile(np.abs(values), 99.5)) or 1.0
        vmin, vmax = -end, end
    else:
        vmin = float(values.min()) if vmin is None else vmin
        vmax = float(values.max()) if vmax is None else vmax
    ncols = ncols or len(arrays)
    nrows = int(np.ceil(len(arrays) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.3 * ncols + 1.0, 2.5 * nrows + 0.3),
                             squeeze=False)
    handle = None
    for ax, (name, a) in zip(axes.ravel(), arrays.items()):
        if image is not None:
            side = np.asarray(image).shape[0]
            ax.imshow(image)
            big = np.kron(a, np.ones((side // a.shape[0], side // a.shape[1])))
            handle = ax.imshow(big, cmap=cmap, vmin=vmin, vmax=vmax, alpha=0.6)
        else:
            handle = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(f"{name}\n{a.shape[0]}×{a.shape[1]}", fontsize=9)
        _hide_ticks(ax)
    for ax in axes.ravel()[len(arrays):]:
        ax.axis("off")
    fig.colorbar(handle, ax=axes, fraction=0.025, pad=0.02, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_switched_off(lr: torch.Tensor, hr: torch.Tensor, output: torch.Tensor,
                      off_output: torch.Tensor, off_label: str, diff_range: float = 64.0):
    """LR input | network output | output with ``off_label`` | |difference| | HR, for one face.

    Images are ``(3, H, W)`` (or ``(1, 3, H, W)``) tensors in ``[-1, 1]``; the LR image is
    enlarged with nearest neighbours. The outputs' titles carry their PSNR against ``hr``
    (:func:`ctcnet.metrics.psnr`, luma). The difference panel is the absolute difference of the
    two outputs in grey levels (0-255), averaged over RGB, drawn from 0 (black) to
    ``diff_range`` (white; larger differences are clipped).
    """
    def img(t) -> np.ndarray:
        t = t[0] if t.ndim == 4 else t
        return to_uint8(t.detach().cpu())

    lr_img, hr_img, out_img, off_img = img(lr), img(hr), img(output), img(off_output)
    side = hr_img.shape[0]
    lr_big = np.kron(lr_img, np.ones((side // lr_img.shape[0], side // lr_img.shape[1], 1),
                                     dtype=np.uint8))
    diff = np.abs(out_img.astype(np.float64) - off_img.astype(np.float64)).mean(-1)
    fig, axes = plt.subplots(1, 5, figsize=(15.5, 3.7))
    panels = [(lr_big, f"LR input {lr_img.shape[0]}×{lr_img.shape[1]}"),
              (out_img, f"network output\nPSNR {psnr(out_img, hr_img):.2f} dB"),
              (off_img, f"{off_label}\nPSNR {psnr(off_img, hr_img):.2f} dB"),
              (None, "|difference| of the outputs"),
              (hr_img, "HR (ground truth)")]
    for ax, (picture, name) in zip(axes, panels):
        if picture is None:
            handle = ax.imshow(diff, cmap="gray", vmin=0, vmax=diff_range)
            cax = ax.inset_axes([1.03, 0.0, 0.05, 1.0])
            fig.colorbar(handle, cax=cax, extend="max", label="grey levels (0-255 scale)")
        else:
            ax.imshow(picture)
        ax.set_title(name, fontsize=9)
        _hide_ticks(ax)
    fig.subplots_adjust(left=0.01, right=0.97, wspace=0.32)
    return fig


def plot_gains(gains: Mapping[str, object], centre: float = 0.5, title: str | None = None,
               xlabel: str = "channel index", ylabel: str = "weight w − 0.5"):
    """Side-by-side bars of per-channel gains (one series per name, e.g. one per face), drawn
    as departures from ``centre`` on a zoomed axis shared by all panels of the figure."""
    series = {name: _np(g).ravel() - centre for name, g in gains.items()}
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * max(len(s) for s in series.values())), 3.4))
    width = 0.8 / len(series)
    for k, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(values)) + (k - (len(series) - 1) / 2) * width, values, width=width,
               label=name)
    ax.axhline(0.0, color="grey", ls=":", lw=1)
    reach = max(np.abs(v).max() for v in series.values()) * 1.15 or 1.0
    ax.set_ylim(-reach, reach)
    ax.set_xticks(np.arange(max(len(v) for v in series.values())))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _series_style(k: int, styles: Mapping[str, dict] | None, name: str) -> dict:
    style = {"color": f"C{k}", "fmt": "o"}
    style.update((styles or {}).get(name, {}))
    return style


def plot_spread(series: Mapping[str, object], labels: Sequence[str], ylabel: str, ax=None,
                styles: Mapping[str, dict] | None = None, title: str | None = None):
    """For every series (an array ``(len(labels), n)``: one row per module or stage, one column
    per face), its mean ± SD over the faces at each label, the series side by side.
    ``styles`` maps a series name to ``errorbar`` keywords (``color``, ``fmt``, ...), so that a
    caller can keep one colour per meaning across figures. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) + 3.0), 3.8))
    pos = np.arange(len(labels))
    width = 0.7 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        v = _np(values)
        ax.errorbar(pos + (k - (len(series) - 1) / 2) * width, v.mean(1), yerr=v.std(1),
                    capsize=3, ms=5, label=name, **_series_style(k, styles, name))
    ax.axhline(0.0, color="grey", ls=":", lw=1)
    ax.set_xticks(pos, labels, fontsize=8, rotation=90 if len(labels) > 10 else 0)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_intervals(intervals: Mapping[str, Sequence], labels: Sequence[str], ylabel: str,
                   ax=None, styles: Mapping[str, dict] | None = None, title: str | None = None):
    """For every series (one confidence interval per label: objects with ``mean``, ``low``,
    ``high``, e.g. :class:`ctcnet.stats.BootstrapCI`), the mean and its interval at each label,
    with a line at 0. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.55 * len(labels) + 3.0), 3.8))
    pos = np.arange(len(labels))
    width = 0.7 / max(1, len(intervals))
    for k, (name, cis) in enumerate(intervals.items()):
        mean = np.array([c.mean for c in cis])
        err = np.array([[c.mean - c.low for c in cis], [c.high - c.mean for c in cis]])
        ax.errorbar(pos + (k - (len(intervals) - 1) / 2) * width, mean, yerr=err, capsize=3,
                    ms=5, label=name, **_series_style(k, styles, name))
    ax.axhline(0.0, color="grey", lw=1)
    ax.set_xticks(pos, labels, fontsize=8, rotation=90 if len(labels) > 10 else 0)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_masks(image, masks: Mapping[str, tuple[object, str]], ax=None, alpha: float = 0.55):
    """``image`` with each boolean mask (``name -> (mask (H, W), colour)``) painted over it in its
    colour; the legend names them. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.imshow(image)
    for mask, colour in masks.values():
        m = _np(mask).astype(bool)
        ax.imshow(np.ma.masked_where(~m, m), cmap=ListedColormap([colour]), alpha=alpha,
                  vmin=0, vmax=1)
    ax.legend(handles=[Patch(color=c, label=n) for n, (_, c) in masks.items()], fontsize=7,
              loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=1, frameon=False)
    _hide_ticks(ax)
    return ax


def plot_toy_attention(image, spatial, channel, channel_names: Sequence[str],
                       query: tuple[int, int], tau: float):
    """The toy of chapter 5: the ``(S, S, 3)`` image with the ``query`` pixel (row, column)
    marked, the ``(S², S²)`` spatial attention matrix (clipped at its 99th percentile), the query
    pixel's row drawn back on the image grid, and the ``(C, C)`` channel attention matrix with
    its weights written in."""
    spatial, channel = _np(spatial), _np(channel)
    side = np.asarray(image).shape[0]
    c = channel.shape[0]
    row = spatial[query[0] * side + query[1]].reshape(side, side)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4), gridspec_kw={"width_ratios": [1, 1.25, 1.25, 1.25]})
    axes[0].imshow(image, interpolation="nearest")
    axes[0].plot(query[1], query[0], "wx", ms=10, mew=2)
    axes[0].set_title(f"toy image, {side}×{side}\n(× = query pixel)", fontsize=10)
    handle = axes[1].imshow(spatial, cmap="magma", vmax=float(np.quantile(spatial, 0.99)))
    axes[1].set(title=f"spatial: {side * side}×{side * side}\n(pixel × pixel)",
                xlabel="key pixel (row-major index)", ylabel="query pixel")
    axes[1].title.set_fontsize(10)
    fig.colorbar(handle, ax=axes[1], fraction=0.046, pad=0.04, extend="max",
                 label="weight (clipped at the 99th percentile)")
    handle = axes[2].imshow(row, cmap="magma", interpolation="nearest")
    axes[2].plot(query[1], query[0], "cx", ms=10, mew=2)
    axes[2].set_title("row of the query pixel,\nshown as an image", fontsize=10)
    fig.colorbar(handle, ax=axes[2], fraction=0.046, pad=0.04, label="weight")
    for ax in (axes[0], axes[2]):  # pixel rows and columns are whole numbers
        ax.set(xlabel="column", ylabel="row")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    handle = axes[3].imshow(channel, cmap="magma", vmin=0)
    axes[3].set_xticks(range(c), channel_names, rotation=45, fontsize=8)
    axes[3].set_yticks(range(c), channel_names, fontsize=8)
    for i in range(c):
        for j in range(c):
            axes[3].text(j, i, f"{channel[i, j]:.2f}", ha="center", va="center", fontsize=7,
                         color="white" if channel[i, j] < 0.5 * channel.max() else "black")
    axes[3].set(title=f"channel: {c}×{c}\n(channel × channel)", xlabel="key channel",
                ylabel="query channel")
    axes[3].title.set_fontsize(10)
    fig.colorbar(handle, ax=axes[3], fraction=0.046, pad=0.04, label="weight")
    fig.suptitle(f"The same {side}×{side} features read as {side * side} pixel tokens or as {c} "
                 f"channel tokens (τ = {tau:g})", y=1.0)
    fig.tight_layout()
    return fig


def plot_learned_scalars(per_block, per_unit, init: float = 1.0, block_kind: str = "local block",
                         unit_kind: str = "residual unit"):
    """Learned scalars against their initial value ``init`` (a dotted line): left, one line per
    column of ``per_block`` (a DataFrame, one row per block in forward order); right, a box plot
    per column of ``per_unit`` (one row per unit). Returns the figure."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    per_block.reset_index(drop=True).plot(ax=axes[0], marker="o", ms=3, lw=1)
    axes[0].set(xlabel=f"{block_kind} (forward order)", ylabel=f"learned value (init {init:g})",
                title=f"scalars of the {len(per_block)} {block_kind}s")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    per_unit.boxplot(ax=axes[1], grid=False)
    axes[1].set(ylabel=f"learned value (init {init:g})", title=f"scalars of the {len(per_unit)} {unit_kind}s")
    for ax in axes:
        ax.axhline(init, color="grey", ls=":", lw=1)
    fig.tight_layout()
    return fig


def plot_cost_curves(sides: Sequence[int], costs: Mapping[str, Sequence[float]], mark: int | None = None,
                     mark_label: str = "", ylabel: str = "GFLOPs", title: str | None = None, ax=None):
    """Costs against the side of a square image on log-log axes (a power law is a straight line),
    one curve per name of ``costs`` (values in the unit of ``ylabel``), with a dotted line and a
    note at the side ``mark``. Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 4.2))
    sides = np.asarray(sides)
    for (name, values), marker in zip(costs.items(), "os^Dv"):
        ax.loglog(sides, np.asarray(values, dtype=float), f"{marker}-", label=name)
    if mark is not None:
        ax.axvline(mark, color="grey", ls=":", lw=1)
        ax.text(mark * 1.03, ax.get_ylim()[0] * 3, mark_label, fontsize=8)
    ax.set_xticks(sides, [str(s) for s in sides], fontsize=8)
    ax.minorticks_off()
    ax.set(xlabel="image side H = W (pixels)", ylabel=ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend()
    ax.figure.tight_layout()
    return ax
