"""The LGCM, the FRM and the MFFU on real faces (chapters 6 and 7): switch a part off, zero one
input, look at feature maps and output changes.

Everything works with temporary hooks, so the trained model is never copied or changed:

* :func:`switched_off` makes modules pass their input through (``how="identity"``) or return
  zeros (``how="zero"``) inside a ``with`` block;
* :func:`input_zeroed` zeros chosen entries of a module's list input (one MFFU input) inside a
  ``with`` block;
* :func:`capture_outputs` runs the network once and keeps the outputs of the modules you name.

The figures share one rule: every panel of one figure uses **one** colour scale, stated by a
single colour bar, so that a colour means the same value everywhere in the figure.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..pixels import to_uint8
from .modules_view import switched_off  # one implementation, shared with chapters 3-5

__all__ = ["switched_off", "input_zeroed", "capture_outputs", "channel_norm", "grey_change",
           "plot_maps_row", "plot_faces_and_changes", "plot_change_grid", "plot_param_split",
           "plot_branch_drops", "plot_frequency_split", "plot_gate_histogram"]


# --------------------------------------------------------------------------------------------
# Interventions
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def input_zeroed(module: nn.Module, *indices: int) -> Iterator[None]:
    """Inside the ``with`` block, ``module`` receives zeros in place of the entries ``indices``
    of its list input (e.g. one of the four features an MFFU concatenates).

    Raises ``ValueError`` (one line), at the call, when the module's first argument is not a
    list or tuple of tensors or an index is out of range.
    """

    def pre_hook(_module, args):
        features = args[0]
        if not isinstance(features, (list, tuple)):
            raise ValueError(f"{type(_module).__name__} takes a {type(features).__name__}, "
                             "not a list of tensors")
        bad = [i for i in indices if not -len(features) <= i < len(features)]
        if bad:
            raise ValueError(f"input index {bad[0]} out of range for {len(features)} inputs")
        chosen = {i % len(features) for i in indices}
        changed = [torch.zeros_like(f) if i in chosen else f for i, f in enumerate(features)]
        return (changed, *args[1:])

    handle = module.register_forward_pre_hook(pre_hook)
    try:
        yield
    finally:
        handle.remove()


def capture_outputs(model: nn.Module, x: torch.Tensor, modules: Mapping[str, nn.Module]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run ``model(x)`` without gradients and return ``(output, {name: module output})`` for
    the ``modules`` given by name (a module called twice keeps its last call).

    Raises ``ValueError`` (one line) naming the modules that the forward pass never called.
    """
    found: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(_module, _inputs, output):
            found[name] = output.detach()
        return hook

    handles = [m.register_forward_hook(keeper(name)) for name, m in modules.items()]
    try:
        with torch.no_grad():
            output = model(x)
    finally:
        for h in handles:
            h.remove()
    missing = [name for name in modules if name not in found]
    if missing:
        raise ValueError(f"these modules were not called by the forward pass: {missing}")
    return output, found


def channel_norm(features: torch.Tensor) -> np.ndarray:
    """The length of the feature vector at every pixel, ``sqrt(sum_c x_c^2)``: one ``(H, W)``
    map that shows where a ``(C, H, W)`` (or ``(1, C, H, W)``) feature is strong."""
    t = features.detach().float()
    if t.dim() == 4:
        t = t[0]
    return t.pow(2).sum(0).sqrt().cpu().numpy()


def grey_change(image: torch.Tensor, reference: torch.Tensor) -> np.ndarray:
    """``|image - reference|`` in grey levels (0-255), averaged over RGB: an ``(H, W)`` map.

    Both are ``(3, H, W)`` (or ``(1, 3, H, W)``) images in the model's range ``[-1, 1]``, where
    one grey level is ``2 / 255``."""
    diff = (image.detach().float() - reference.detach().float()).abs() * 127.5
    if diff.dim() == 4:
        diff = diff[0]
    return diff.mean(0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _done(fig):
    """Close ``fig`` in pyplot and return it: a notebook shows it once, as the cell's value."""
    plt.close(fig)
    return fig


def plot_maps_row(maps: Mapping[str, np.ndarray], label: str, cmap: str = "magma",
                  vmin: float | None = 0.0, vmax: float | None = None, title: str | None = None,
                  image=None):
    """One panel per 2-D map (its side in pixels under it), all on one colour scale (``vmin``,
    ``vmax``; default: 0 to the largest value) with one colour bar labelled ``label``.

    ``image`` (a ``(3, H, W)`` tensor in ``[-1, 1]`` or ``(H, W, 3)`` uint8), when given, is shown
    first, as the face the maps come from."""
    arrays = {name: np.asarray(m, dtype=np.float64) for name, m in maps.items()}
    values = np.concatenate([a.ravel() for a in arrays.values()])
    vmin = float(values.min()) if vmin is None else vmin
    vmax = float(values.max()) if vmax is None else vmax
    n = len(arrays) + (image is not None)
    scale = 1.45 if n == 1 else 1.0  # one panel alone would be too small to read (< 400 px)
    fig, axes = plt.subplots(1, n, figsize=(scale * (2.3 * n + 0.8), scale * 2.9), squeeze=False,
                             layout="constrained")
    axes = list(axes[0])
    if image is not None:
        ax = axes.pop(0)
        ax.imshow(to_uint8(image) if isinstance(image, torch.Tensor) else image)
        ax.set_title("the face (HR)", fontsize=9)
        side = ax.images[0].get_array().shape
        ax.set_xlabel(f"{side[1]}×{side[0]} px", fontsize=8)
        _off(ax)
    handle = None
    for ax, (name, a) in zip(axes, arrays.items()):
        handle = ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"{a.shape[1]}×{a.shape[0]} px", fontsize=8)
        _off(ax)
    # the bar's width fixed in inches (not a fraction of the figure) and a long aspect, so that
    # a one-panel figure's bar is as tall as its panel, like a many-panel one's
    fig.colorbar(handle, ax=axes, fraction=0.12 / fig.get_figwidth(), aspect=40, pad=0.02,
                 label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return _done(fig)


def plot_faces_and_changes(outputs: Mapping[str, torch.Tensor], reference: str, hr=None,
                           vmax: float | None = None, title: str | None = None):
    """Top row: the output images (``(3, H, W)`` in ``[-1, 1]``), titled by name, and the HR face
    when given; bottom row: each output's change from ``outputs[reference]``
    (:func:`grey_change`), all on one colour scale (default end: the largest change) with one
    colour bar. The reference's own bottom panel is left empty."""
    if reference not in outputs:
        raise ValueError(f"reference {reference!r} is not one of the outputs {list(outputs)}")
    names = list(outputs)
    changes = {n: grey_change(outputs[n], outputs[reference]) for n in names if n != reference}
    vmax = vmax or max(float(c.max()) for c in changes.values()) or 1.0
    n = len(names) + (hr is not None)
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n + 0.8, 5.0), squeeze=False,
                             layout="constrained")
    columns = [(name, outputs[name]) for name in names] + ([("HR (truth)", hr)] if hr is not None
                                                             else [])
    handle = None
    for k, (name, image) in enumerate(columns):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(to_uint8(image))
        top.set_title(name, fontsize=9)
        _off(top)
        _off(bottom)
        if name in changes:
            handle = bottom.imshow(changes[name], cmap="magma", vmin=0, vmax=vmax)
            bottom.set_xlabel(f"mean {changes[name].mean():.2f}, max {changes[name].max():.1f}",
                              fontsize=8)
        else:
            bottom.axis("off")
    axes[1, 0].text(0.5, 0.5, f"changes from\n'{reference}'", ha="center", va="center",
                    fontsize=9, transform=axes[1, 0].transAxes)
    if handle is not None:
        fig.colorbar(handle, ax=axes[1, :], fraction=0.025, pad=0.02,
                     label="|change| (grey levels)")
    if title:
        fig.suptitle(title, fontsize=10)
    return _done(fig)


def plot_change_grid(changes: Mapping[tuple[str, str], np.ndarray], rows: Sequence[str],
                     columns: Sequence[str], row_label: str = "", column_label: str = "",
                     notes: Mapping[tuple[str, str], str] | None = None,
                     vmax: float | None = None, title: str | None = None):
    """A grid of ``(H, W)`` change maps keyed ``(row, column)`` (:func:`grey_change`), one
    colour scale for all (default end: the 99.5th percentile of all values, so that one extreme
    pixel does not wash the rest out) and one colour bar; each panel's mean change is written
    under it, after its entry in ``notes`` if any. A missing key leaves its panel empty; a grid
    without any of the keys is refused (``ValueError``)."""
    if not any((row, column) in changes for row in rows for column in columns):
        raise ValueError(f"no change map is keyed (row, column) with rows {list(rows)} and "
                         f"columns {list(columns)}")
    values = np.concatenate([np.asarray(c).ravel() for c in changes.values()])
    vmax = vmax or float(np.percentile(values, 99.5)) or 1.0
    fig, axes = plt.subplots(len(rows), len(columns),
                             figsize=(1.9 * len(columns) + 1.4, 2.0 * len(rows) + 0.6),
                             squeeze=False, layout="constrained")
    handle = None
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax = axes[r, c]
            _off(ax)
            if (row, column) not in changes:
                ax.axis("off")
                continue
            change = np.asarray(changes[row, column])
            handle = ax.imshow(change, cmap="magma", vmin=0, vmax=vmax)
            note = (notes or {}).get((row, column))
            ax.set_xlabel((f"{note}\n" if note else "") + f"mean {change.mean():.2f}", fontsize=8)
            if r == 0:
                ax.set_title(column, fontsize=9)
        axes[r, 0].set_ylabel(row, fontsize=9)
    if handle is not None:
        fig.colorbar(handle, ax=axes, fraction=0.03, pad=0.03, extend="max",
                     label="|change of the output| (grey levels)")
    heading = " | ".join(t for t in (title, f"rows: {row_label}" if row_label else "",
                                     f"columns: {column_label}" if column_label else "") if t)
    if heading:
        fig.suptitle(heading, fontsize=10)
    return _done(fig)


def plot_param_split(split, parts: Sequence[str], colours: Mapping[str, str] | None = None,
                     title: str | None = None):
    """Stacked bars of parameter counts: one bar per row of the DataFrame ``split`` (its index
    names the bar), one segment per column in ``parts``, in millions."""
    colours = colours or {}
    fig, ax = plt.subplots(figsize=(8, 3.8))
    bottom = np.zeros(len(split))
    for part in parts:
        values = split[part].to_numpy(dtype=float) / 1e6
        ax.bar(split.index, values, bottom=bottom, label=part, color=colours.get(part))
        bottom += values
    ax.set_xlabel(split.index.name or "")
    ax.set_ylabel("parameters (millions)")
    if title:
        ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _done(fig)


def plot_branch_drops(effect, order: Sequence[str], colours: Mapping[str, str] | None = None,
                      n_faces: int | None = None):
    """Two panels from a table with columns ``LGCM``, ``branch off``, ``stage change``,
    ``PSNR drop (dB)``, ``CI low``, ``CI high`` (one row per LGCM and branch): the relative
    change of the LGCM's output, and the PSNR drop with its confidence interval as error bars.
    ``order`` is the order of the LGCMs on the x axis."""
    colours = colours or {}
    branches = list(dict.fromkeys(effect["branch off"]))
    width = 0.8 / len(branches)
    pos = np.arange(len(order))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, column in zip(axes, ["stage change", "PSNR drop (dB)"]):
        for k, branch in enumerate(branches):
            part = effect[effect["branch off"] == branch].set_index("LGCM").loc[list(order)]
            err = None
            if column == "PSNR drop (dB)":
                err = [part[column] - part["CI low"], part["CI high"] - part[column]]
            ax.bar(pos + (k - (len(branches) - 1) / 2) * width, part[column], width=width,
                   yerr=err, capsize=3, color=colours.get(branch), label=branch)
        ax.set_xticks(pos, list(order), rotation=30, ha="right")
        ax.set_xlabel("LGCM whose branch is replaced by the identity")
        ax.legend(title="branch off")
    axes[0].set_ylabel("relative change of the LGCM output")
    axes[0].set_title("Change of the stage output")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_ylabel("PSNR drop (dB)")
    faces = f" over {n_faces} faces" if n_faces else ""
    axes[1].set_title(f"PSNR drop: mean and paired bootstrap 95 % CI{faces}", fontsize=10)
    fig.tight_layout()
    return _done(fig)


def plot_frequency_split(hr, a: torch.Tensor, low_up: torch.Tensor, high: torch.Tensor,
                         channel: int, title: str | None = None):
    """The FEU's split of one channel of a feature ``a`` (``(1, C, h, w)``): the HR face, ``a``,
    its low part ``resize(avgpool(a))`` and its high part ``a - resize(L)``, on one symmetric colour
    scale with one colour bar."""
    panels = [(f"a, channel {channel}", a), ("low: resize(avgpool(a))", low_up),
              ("high: a − resize(avgpool(a))", high)]
    vmax = float(a[0, channel].abs().max()) or 1.0
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.6), constrained_layout=True)
    axes[0].imshow(to_uint8(hr))
    axes[0].set_title(f"HR face ({to_uint8(hr).shape[1]}×{to_uint8(hr).shape[0]})", fontsize=10)
    axes[0].set_xlabel("x (pixels)")
    axes[0].set_ylabel("y (pixels)")
    handle = None
    for ax, (name, t) in zip(axes[1:], panels):
        handle = ax.imshow(t[0, channel].detach().cpu().numpy(), cmap="RdBu_r", vmin=-vmax,
                           vmax=vmax)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x (feature pixels)")
    axes[1].set_ylabel("y (feature pixels)")
    fig.colorbar(handle, ax=list(axes[1:]), shrink=0.8, label="activation")
    if title:
        fig.suptitle(title)
    return _done(fig)


def plot_gate_histogram(gate: torch.Tensor, title: str | None = None):
    """Histogram of all values of a gate (``g(a)`` of the FEU), with 0 marked and the part of a
    sigmoid's range ``(0, 1)`` that falls inside the data shaded as a band behind the bars (so the
    bars keep one colour); the x range is the data's."""
    values = gate.detach().flatten().cpu().numpy()
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.hist(values, bins=80, color="#6baed6", zorder=2)  # in front of the band: one colour
    lo, hi = float(values.min()), float(values.max())
    pad = 0.05 * (hi - lo) or 0.05
    ax.set_xlim(lo - pad, hi + pad)
    ax.axvline(0, color="k", lw=0.8, ls=":", label="0")
    if hi > 0:
        ax.axvspan(0, min(1.0, hi + pad), facecolor="orange", alpha=0.15, zorder=0,
                   edgecolor="none", label="a sigmoid's range (0, 1)")
    if hi + pad < 1:
        ax.text(0.98, 0.95, "a sigmoid gate could reach\nup to 1, far to the right →",
                transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.set_xlabel("gate value g(a)")
    ax.set_ylabel("count (pixels × channels)")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _done(fig)
