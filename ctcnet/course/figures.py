"""Figures for the book drawn from a model's own structure (chapters 7 and 8).

:func:`trace_units` runs one forward pass with hooks on the units that the model lists itself
(:meth:`ctcnet.model.CTCNet.units`: head, LGCMs, down/upsampling, FRMs, MFFUs, tail) and records
the input and output shape of each; :func:`draw_dataflow` draws the U-shaped data flow with those
shapes, placing every box by the unit's stage and scale; :func:`count_calls` counts how often each
submodule is called in one forward pass.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ..model import MFFU, CTCNet, PaperUnit

__all__ = ["UnitTrace", "trace_units", "count_calls", "draw_dataflow"]


@dataclass(frozen=True)
class UnitTrace:
    """One paper-level unit: its module path, its label in the figures (the paper name, with
    the resamplers shortened to "Down"/"Up"), and the shapes of one forward call."""

    path: str
    kind: str
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]


#: Short box labels for the paper names that do not fit a box.
_SHORT = {"Downsampling": "Down", "Upsampling": "Up"}


def _label(unit: PaperUnit) -> str:
    return _SHORT.get(unit.paper_name, unit.paper_name)


def _shape(t) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@torch.no_grad()
def trace_units(model: CTCNet, size: int = 128, batch: int = 1) -> list[UnitTrace]:
    """Shapes of every paper-level unit in one forward pass of a ``batch x 3 x size x size``
    input, in call order. Runs on a meta-device copy (no memory, no arithmetic)."""
    import copy

    probe = copy.deepcopy(model).to("meta").eval()
    records: list[UnitTrace] = []
    handles = []

    def hook_for(unit: PaperUnit):
        def hook(_module, inputs, output):
            flat = inputs[0] if isinstance(inputs[0], (list, tuple)) else inputs
            records.append(UnitTrace(unit.path, _label(unit), tuple(_shape(t) for t in flat),
                                     _shape(output)))

        return hook

    # the shared resamplers are called through methods, not forward: they record nothing
    for unit in probe.units():
        handles.append(unit.module.register_forward_hook(hook_for(unit)))
    try:
        probe(torch.zeros(batch, probe.config.in_channels, size, size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return records


@torch.no_grad()
def count_calls(model: nn.Module, x: torch.Tensor) -> Counter:
    """How many times each named submodule (with parameters of its own) is called in
    ``model(x)``; shared modules show counts above 1."""
    calls: Counter = Counter()
    handles = []
    for name, module in model.named_modules():
        if name and any(True for _ in module.parameters(recurse=False)):
            handles.append(
                module.register_forward_hook(lambda m, i, o, name=name: calls.update([name]))
            )
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


_COLOURS = {
    "Conv 3x3": "#dddddd",
    "LGCM": "#9ecae1",
    "Down": "#fdd0a2",
    "Up": "#c7e9c0",
    "FRM": "#fcbba1",
    "MFFU": "#dadaeb",
}


def _layout(units: list[PaperUnit], top: float) -> tuple[dict[str, tuple[float, float]], float]:
    """Box centres from each unit's stage and scale: the encoder column on the left, the FRMs
    along the bottom, the decoder on the right, the head and tail on top. A stage's row is set by
    its scale (``H`` at y = 4.2, one level of 1.4 lower per halving); a unit that changes the
    scale (Down/Up) sits half-way between the two rows it connects. Returns the centres and the
    x of the decoder's first column."""

    def row(scale: float) -> float:
        return 4.2 - 1.4 * math.log2(1 / scale)

    placed = [u for u in units if u.scale is not None]
    n_bottleneck = sum(u.stage == "bottleneck" for u in placed)
    right = 3.0 + 1.5 * max(n_bottleneck, 1)
    pos: dict[str, tuple[float, float]] = {}
    previous = None
    for k, u in enumerate(placed):
        resamples = previous is not None and u.scale != previous
        y = (row(previous) + row(u.scale)) / 2 if resamples else row(u.scale)
        if u.stage == "head":
            pos[u.path] = (0.0, top)
        elif u.stage == "tail":
            pos[u.path] = (right + 1.5, top)
        elif u.stage == "encoder":
            pos[u.path] = (1.5 if resamples else 0.0, y)
        elif u.stage == "bottleneck":
            index = sum(v.stage == "bottleneck" for v in placed[:k])
            pos[u.path] = (3.0 + 1.5 * index, y)
        else:  # decoder: Up, then the units at the new scale; the last one feeds the next stage
            nxt = placed[k + 1] if k + 1 < len(placed) else None
            last = nxt is None or nxt.stage != u.stage or nxt.scale != u.scale
            pos[u.path] = (right, y) if resamples or not last else (right + 1.5, y)
        previous = u.scale
    return pos, right


def draw_dataflow(model: CTCNet, size: int = 128, ax=None, title: str | None = None):
    """Draw the U-shaped data flow of ``model`` with the traced shapes (``C x H x W``) of every
    unit; MFFU inputs from the encoder (or, without MFFUs, the U-Net skips) are drawn as dashed
    arrows. The boxes are the model's own :meth:`~ctcnet.model.CTCNet.units`, placed by stage
    and scale, so any config is drawn without a change here. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    trace = {t.path: t for t in trace_units(model, size)}
    units = [u for u in model.units() if u.path in trace]
    n_frm = sum(u.stage == "bottleneck" for u in units)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.0 + 1.5 * (n_frm + 4), 7.0))
    else:
        fig = ax.figure
    top = 5.6
    pos, right = _layout(units, top)

    w, h = 1.15, 0.55
    for path, (x, y) in pos.items():
        if path not in trace:
            continue
        t = trace[path]
        c, hh, ww = t.out_shape[1:]
        index = path.rsplit(".", 1)[-1]
        label = f"{t.kind} {index}" if index.isdigit() else t.kind
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                facecolor=_COLOURS.get(t.kind, "white"), edgecolor="black", linewidth=0.8, zorder=3,
            )
        )
        ax.text(x, y + 0.08, label, ha="center", va="center", fontsize=8, weight="bold", zorder=4)
        ax.text(x, y - 0.13, f"{c}x{hh}x{ww}", ha="center", va="center", fontsize=7, zorder=4)

    def arrow(a: str, b: str, style: str = "-", colour: str = "black") -> None:
        if a not in pos or b not in pos or a not in trace or b not in trace:
            return
        (x0, y0), (x1, y1) = pos[a], pos[b]
        dx, dy = x1 - x0, y1 - y0
        # leave / enter each box at its edge: the largest t with |t*dx| <= w/2 and |t*dy| <= h/2
        t = min(
            (w / 2 + 0.02) / abs(dx) if dx else 1.0, (h / 2 + 0.02) / abs(dy) if dy else 1.0
        )
        ax.annotate(
            "", xy=(x1 - t * dx, y1 - t * dy), xytext=(x0 + t * dx, y0 + t * dy), zorder=1,
            arrowprops=dict(arrowstyle="->", linestyle=style, color=colour, lw=0.9,
                            shrinkA=0, shrinkB=0, alpha=1.0 if style == "-" else 0.6,
                            connectionstyle="arc3,rad=0.0" if style == "-" else "arc3,rad=-0.12"),
        )

    for a, b in zip(units, units[1:]):
        arrow(a.path, b.path)
    # the encoder feature of each scale: the last encoder unit before the scale changes
    skips = {}
    for a, b in zip(units, units[1:]):
        if a.stage == b.stage == "encoder" and b.scale != a.scale:
            skips[a.scale] = a.path
    fusions = [u for u in units if isinstance(u.module, MFFU)]
    if fusions:
        for fusion in fusions:
            for source in skips.values():
                arrow(source, fusion.path, style="--", colour="tab:purple")
    else:  # U-Net skip: into the decoder unit that ends each scale
        for a, b in zip(units, units[1:] + [None]):
            ends_scale = b is None or b.stage != a.stage or b.scale != a.scale
            if a.stage == "decoder" and ends_scale and a.scale in skips:
                arrow(skips[a.scale], a.path, style="--", colour="tab:purple")
    ax.annotate(
        "", xy=(right + 1.5, top + 0.75), xytext=(0.0, top + 0.75),
        arrowprops=dict(arrowstyle="->", color="grey", lw=0.9),
    )
    ax.text(right / 2 + 0.75, top + 0.85, "global residual: output = tail(...) + input",
            ha="center", va="bottom", fontsize=8, color="grey")
    ax.text(-0.75, top, f"input\n3x{size}x{size}", ha="right", va="center", fontsize=8)
    ax.set_xlim(-1.8, right + 2.4)
    ax.set_ylim(-0.6, top + 1.3)
    ax.set_axis_off()
    ax.set_title(title or f"CTCNet data flow (input 3x{size}x{size}; boxes show output C x H x W)")
    return fig
