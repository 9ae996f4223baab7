"""Figures for the book drawn from a model's own structure (chapters 7 and 8).

:func:`trace_units` runs one forward pass with hooks on the paper-level units of a
:class:`~ctcnet.model.CTCNet` (head, LGCMs, down/upsampling, FRMs, MFFUs, tail) and records the
input and output shape of each; :func:`draw_dataflow` draws the U-shaped data flow with those
shapes; :func:`count_calls` counts how often each submodule is called in one forward pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ..model import CTCNet

__all__ = ["UnitTrace", "trace_units", "count_calls", "draw_dataflow"]


@dataclass(frozen=True)
class UnitTrace:
    """One paper-level unit: its module path, paper name, and shapes of one forward call."""

    path: str
    kind: str
    in_shapes: tuple[tuple[int, ...], ...]
    out_shape: tuple[int, ...]


def _units(model: CTCNet) -> list[tuple[str, str]]:
    units = [("head", "Conv 3x3")]
    for i in range(3):
        units += [(f"encoder.{i}", "LGCM"), (f"downsample.{i}", "Down")]
    units += [(f"bottleneck.{i}", "FRM") for i in range(len(model.bottleneck))]
    for i in range(3):
        units.append((f"upsample.{i}", "Up"))
        if model.fusion is not None:
            units.append((f"fusion.{i}", "MFFU"))
        units.append((f"decoder.{i}", "LGCM"))
    units.append(("tail", "Conv 3x3"))
    return units


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
    kinds = dict(_units(probe))

    def hook_for(path: str):
        def hook(_module, inputs, output):
            flat = inputs[0] if isinstance(inputs[0], (list, tuple)) else inputs
            records.append(UnitTrace(path, kinds[path], tuple(_shape(t) for t in flat), _shape(output)))

        return hook

    for path in kinds:
        handles.append(probe.get_submodule(path).register_forward_hook(hook_for(path)))
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


def draw_dataflow(model: CTCNet, size: int = 128, ax=None, title: str | None = None):
    """Draw the U-shaped data flow of ``model`` with the traced shapes (``C x H x W``) of every
    unit; MFFU inputs from the encoder are drawn as dashed arrows. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    trace = {t.path: t for t in trace_units(model, size)}
    n_frm = len(model.bottleneck)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.0 + 1.5 * (n_frm + 4), 7.0))
    else:
        fig = ax.figure
    levels = (4.2, 2.8, 1.4)  # y of the H, H/2, H/4 stages
    top = 5.6
    pos: dict[str, tuple[float, float]] = {"head": (0.0, top)}
    for i in range(3):
        pos[f"encoder.{i}"] = (0.0, levels[i])
        pos[f"downsample.{i}"] = (1.5, levels[i] - 0.7)
    for i in range(n_frm):
        pos[f"bottleneck.{i}"] = (3.0 + 1.5 * i, 0.0)
    right = 3.0 + 1.5 * max(n_frm, 1)
    for i in range(3):
        level = levels[2 - i]  # decoder.0 works at H/4
        pos[f"upsample.{i}"] = (right, level - 0.7)
        pos[f"fusion.{i}"] = (right, level)
        pos[f"decoder.{i}"] = (right + 1.5, level)
    pos["tail"] = (right + 1.5, top)

    w, h = 1.15, 0.55
    for path, (x, y) in pos.items():
        if path not in trace:
            continue
        t = trace[path]
        c, hh, ww = t.out_shape[1:]
        label = f"{t.kind} {path.split('.')[-1] if '.' in path else ''}".strip()
        ax.add_patch(
            FancyBboxPatch(
                (x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02",
                facecolor=_COLOURS[t.kind], edgecolor="black", linewidth=0.8, zorder=3,
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

    chain = ["head", "encoder.0", "downsample.0", "encoder.1", "downsample.1", "encoder.2",
             "downsample.2", *[f"bottleneck.{i}" for i in range(n_frm)]]
    for i in range(3):
        chain += [f"upsample.{i}", f"fusion.{i}" if model.fusion is not None else None,
                  f"decoder.{i}"]
    chain = [c for c in chain + ["tail"] if c]
    for a, b in zip(chain, chain[1:]):
        arrow(a, b)
    if model.fusion is not None:
        for i in range(3):
            for e in range(3):
                arrow(f"encoder.{e}", f"fusion.{i}", style="--", colour="tab:purple")
    else:
        for i, e in enumerate((2, 1, 0)):
            arrow(f"encoder.{e}", f"decoder.{i}", style="--", colour="tab:purple")
    ax.annotate(
        "", xy=(pos["tail"][0], top + 0.75), xytext=(0.0, top + 0.75),
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
