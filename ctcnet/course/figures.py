"""Figures and tables for the book drawn from a model's own structure (chapters 1, 7 and 8).

:func:`trace_units` runs one forward pass with hooks on the units that the model lists itself
(:meth:`ctcnet.model.CTCNet.units`: head, LGCMs, down/upsampling, FRMs, MFFUs, tail) and records
the input and output shape of each; :func:`draw_dataflow` draws the U-shaped data flow with those
shapes, placing every box by the unit's stage and scale; :func:`count_calls` counts how often each
submodule is called in one forward pass. :func:`draw_overview` draws the one-glance version
(one box per stage) for chapter 1, and :func:`paper_module_table` lists every paper module with
its full name, our class, its paths and its parameters.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import torch
from torch import nn

from ..model import FRM, LGCM, MFFU, CTCNet, Downsample, PaperUnit, Upsample

__all__ = [
    "UnitTrace",
    "trace_units",
    "count_calls",
    "draw_dataflow",
    "PAPER_TITLES",
    "paper_module_table",
    "draw_overview",
]


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


@dataclass(frozen=True)
class _Stages:
    """The ``stage`` names that :meth:`~ctcnet.model.CTCNet.units` uses, read from the units
    themselves rather than spelled here: the first unit's stage is the head's, the last unit's
    the tail's, and the encoder, bottleneck and decoder are the stages of the Downsampling, FRM
    and Upsampling units (``None`` where a config has none)."""

    head: str
    encoder: str | None
    bottleneck: str | None
    decoder: str | None
    tail: str

    @classmethod
    def of(cls, units: list[PaperUnit]) -> _Stages:
        def stage(kind: type) -> str | None:
            return next((u.stage for u in units if isinstance(u.module, kind)), None)

        return cls(units[0].stage, stage(Downsample), stage(FRM), stage(Upsample),
                   units[-1].stage)


def _numbered(units: list[PaperUnit]) -> dict[str, str]:
    """Box labels of ``draw_dataflow``: the unit's short name, numbered in forward order among
    the units of its kind on its side (``Down 0``, ``FRM 1``; the first and last unit, head
    and tail, stay unnumbered); LGCMs say which side they are on (``Enc LGCM 0``)."""
    stages = _Stages.of(units)
    seen: dict[tuple[str, str], int] = {}
    labels = {}
    for k, unit in enumerate(units):
        kind = _label(unit)
        if k in (0, len(units) - 1):
            labels[unit.path] = kind
            continue
        index = seen.get((unit.stage, kind), 0)
        seen[(unit.stage, kind)] = index + 1
        side = {stages.encoder: "Enc ", stages.decoder: "Dec "}.get(unit.stage, "")
        labels[unit.path] = f"{side if kind == 'LGCM' else ''}{kind} {index}"
    return labels


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
    stages = _Stages.of(placed)
    n_bottleneck = sum(u.stage == stages.bottleneck for u in placed)
    right = 3.0 + 1.5 * max(n_bottleneck, 1)
    pos: dict[str, tuple[float, float]] = {}
    previous = None
    for k, u in enumerate(placed):
        resamples = previous is not None and u.scale != previous
        y = (row(previous) + row(u.scale)) / 2 if resamples else row(u.scale)
        if k == 0:  # the head
            pos[u.path] = (0.0, top)
        elif k == len(placed) - 1:  # the tail
            pos[u.path] = (right + 1.5, top)
        elif u.stage == stages.encoder:
            pos[u.path] = (1.5 if resamples else 0.0, y)
        elif u.stage == stages.bottleneck:
            index = sum(v.stage == stages.bottleneck for v in placed[:k])
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
    arrows, leaving each encoder LGCM ("Enc LGCM i") at its own height so that they do not cross
    the Down boxes. The boxes are the model's own :meth:`~ctcnet.model.CTCNet.units`, placed by stage
    and scale, so any config is drawn without a change here. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    trace = {t.path: t for t in trace_units(model, size)}
    units = [u for u in model.units() if u.path in trace]
    stages = _Stages.of(units)
    labels = _numbered(units)
    n_frm = sum(u.stage == stages.bottleneck for u in units)
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
        label = labels[path]
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
        if a.stage == b.stage == stages.encoder and b.scale != a.scale:
            skips[a.scale] = a.path
    fusions = [u for u in units if isinstance(u.module, MFFU)]
    if fusions:
        links = [(source, fusion.path) for fusion in fusions for source in skips.values()]
    else:  # U-Net skip: into the decoder unit that ends each scale
        links = []
        for a, b in zip(units, units[1:] + [None]):
            ends_scale = b is None or b.stage != a.stage or b.scale != a.scale
            if a.stage == stages.decoder and ends_scale and a.scale in skips:
                links.append((skips[a.scale], a.path))
    # Encoder features leave their LGCM's right edge horizontally, at the LGCM's own height, so
    # they pass between the Down boxes (which sit half-way between two rows); once past that
    # column they run straight to the left edge of their target. Several arrows leaving (or
    # entering) one box are spread a little in height.
    x_bus = 1.5 + w / 2 + 0.25
    for a, b in links:
        if a not in pos or b not in pos:
            continue
        out_of_a = [t for s, t in links if s == a]
        into_b = [s for s, t in links if t == b]
        (x0, y0), (x1, y1) = pos[a], pos[b]
        y0 += 0.11 * (out_of_a.index(b) - (len(out_of_a) - 1) / 2)
        y1 += 0.11 * (into_b.index(a) - (len(into_b) - 1) / 2)
        ax.plot([x0 + w / 2 + 0.02, x_bus], [y0, y0], ls="--", color="tab:purple", lw=0.9,
                alpha=0.6, zorder=1)
        ax.annotate(
            "", xy=(x1 - w / 2 - 0.02, y1), xytext=(x_bus, y0), zorder=1,
            arrowprops=dict(arrowstyle="->", linestyle="--", color="tab:purple", lw=0.9,
                            shrinkA=0, shrinkB=0, alpha=0.6),
        )
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


# --------------------------------------------------------------------------------------------
# Paper names <-> code names, and the one-glance overview (chapter 1)
# --------------------------------------------------------------------------------------------

#: The paper's full name (Gao et al., 2023) of every ``paper_name`` / ``part`` that
#: :meth:`ctcnet.model.CTCNet.units` reports, with the abbreviation the paper uses ("" where it
#: has none); the first and last unit (both "Conv 3x3") are ``"shallow features"`` and
#: ``"reconstruction"``. Parts that the paper's Fig. 2 does not draw say so.
PAPER_TITLES: dict[str, tuple[str, str]] = {
    "shallow features": ("shallow feature extraction (3×3 conv)", ""),
    "reconstruction": ("reconstruction (3×3 conv)", ""),
    "LGCM": ("Local-Global Feature Cooperation Module", "LGCM"),
    "FSAU": ("Facial Structure Attention Unit", "FSAU"),
    "Transformer blocks": ("Transformer block (MDTA + GDFN, from Restormer)", ""),
    "local blocks": ("local residual block (authors' code; not in the paper's figure)", ""),
    "Downsampling": ("Downsampling", ""),
    "FRM": ("Feature Refinement Module", "FRM"),
    "FEU": ("Feature Enhancement Unit", "FEU"),
    "Upsampling": ("Upsampling", ""),
    "MFFU": ("Multi-scale Feature Fusion Unit", "MFFU"),
    "resamplers": ("cross-scale resampling of the encoder features (shared by the MFFUs)", ""),
    "fusion convs": ("fusion convolution", ""),
    "CA": ("channel attention", "CA"),
}


def _title(key: str) -> tuple[str, str]:
    """(full name, abbreviation) of a paper name or part; unknown names stand for themselves."""
    return PAPER_TITLES.get(key, (key, ""))


def _class_name(module: nn.Module) -> str:
    """The class that a unit is made of: a Sequential of blocks is named by its blocks."""
    if isinstance(module, nn.Sequential) and len(module):
        return type(module[0]).__name__
    return type(module).__name__


def _instances(module: nn.Module) -> int:
    return len(module) if isinstance(module, nn.Sequential) else 1


def _where(paths: list[str]) -> str:
    """Module paths with a common pattern folded: ``encoder.0.fsau, encoder.1.fsau`` ->
    ``encoder.{0,1}.fsau``; paths keep their first-seen order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        parts = path.split(".")
        digit = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if digit is None:
            groups.setdefault((path, ""), [])
            continue
        key = (".".join(parts[:digit]), ".".join(parts[digit + 1:]))
        groups.setdefault(key, []).append(parts[digit])
    out = []
    for (head, tail), indices in groups.items():
        if not indices:
            out.append(head)
            continue
        middle = indices[0] if len(indices) == 1 else "{" + ",".join(indices) + "}"
        out.append(".".join(p for p in (head, middle, tail) if p))
    return ", ".join(out)


def paper_module_table(model: CTCNet):
    """The paper's modules as ``model`` builds them: one row per paper module (a box of Fig. 2,
    from :meth:`~ctcnet.model.CTCNet.units`), each followed by one row per part it consists of
    (from ``units(parts=True)``), as a pandas DataFrame.

    Columns: ``paper name`` (the paper's full name), ``abbreviation``, ``inside`` (the module a
    part belongs to; ``""`` for a module), ``class`` (our class in :mod:`ctcnet.model`),
    ``where`` (the module paths in ``model``, folded: ``encoder.{0,1,2}``), ``count`` (how many
    instances; Transformer blocks are counted one by one) and ``parameters``.

    The module rows (``inside == ""``) partition the model's parameters, and so do the part rows
    of every module: their ``parameters`` sum to the module's (tests check both). Head and tail
    are separate rows although both are "Conv 3x3".
    """
    import pandas as pd  # optional: the course layer

    first, last = model.units()[0], model.units()[-1]

    def key(unit: PaperUnit) -> str:
        if unit.module is first.module:
            return "shallow features"
        return "reconstruction" if unit.module is last.module else unit.paper_name

    def params(modules: list[nn.Module]) -> int:
        seen = {id(p): p.numel() for m in modules for p in m.parameters()}
        return sum(seen.values())

    boxes: dict[str, list[PaperUnit]] = {}
    for unit in model.units():
        boxes.setdefault(key(unit), []).append(unit)
    parts: dict[str, dict[str, list[PaperUnit]]] = {}
    for unit in model.units(parts=True):
        if unit.part:
            parts.setdefault(key(unit), {}).setdefault(unit.part, []).append(unit)

    rows = []
    for name, units in boxes.items():
        title, abbreviation = _title(name)
        whole = [u for u in units if not u.part] or units
        ordered = whole + [u for u in units if u not in whole]
        classes = list(dict.fromkeys(_class_name(u.module) for u in ordered))
        rows.append({
            "paper name": title, "abbreviation": abbreviation, "inside": "",
            "class": ", ".join(classes), "where": _where([u.path for u in units]),
            "count": len(whole), "parameters": params([u.module for u in units]),
        })
        named = parts.get(name, {})
        if not any(type(u.module).__dict__.get("paper_parts") for u in whole):
            continue  # a box without parts (Downsampling, head, ...): no part rows
        for part, members in named.items():
            title, abbreviation = _title(part)
            classes = list(dict.fromkeys(_class_name(u.module) for u in members))
            rows.append({
                "paper name": title, "abbreviation": abbreviation,
                "inside": _title(name)[1] or name, "class": ", ".join(classes),
                "where": _where([u.path for u in members]),
                "count": sum(_instances(u.module) for u in members),
                "parameters": params([u.module for u in members]),
            })
    columns = ["paper name", "abbreviation", "inside", "class", "where", "count", "parameters"]
    return pd.DataFrame(rows, columns=columns)


def _stage_groups(model: CTCNet) -> list[tuple[str, float, list[PaperUnit]]]:
    """The units of ``model.units()`` without the resamplers (drawn as arrows), grouped into
    runs of one stage at one scale, in forward order: ``(stage, scale, units)``."""
    groups: list[tuple[str, float, list[PaperUnit]]] = []
    for unit in model.units():
        if unit.scale is None or isinstance(unit.module, (Downsample, Upsample)):
            continue
        if groups and groups[-1][0] == unit.stage and groups[-1][1] == unit.scale:
            groups[-1][2].append(unit)
        else:
            groups.append((unit.stage, unit.scale, [unit]))
    return groups


def draw_overview(model: CTCNet, size: int = 128, scale: int = 8, ax=None,
                  title: str | None = None):
    """A one-glance drawing of ``model`` for a reader who has never seen it: the LR face
    (``size/scale`` pixels), its bicubic enlargement (the input), one box per stage (the
    shallow-feature conv, the encoder LGCMs, the FRMs of the bottleneck, the decoder's
    MFFU + LGCM, the reconstruction conv), the down- and upsampling between them, the skip
    connections into the decoder, the global residual and the output, with the traced output
    shape ``C×H×W`` of every stage and, below, what each composite module consists of. Everything
    is taken from :meth:`~ctcnet.model.CTCNet.units` and :func:`trace_units`, so another config
    draws another figure; :func:`draw_dataflow` draws every unit instead. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, FancyBboxPatch

    trace = {t.path: t for t in trace_units(model, size)}
    groups = _stage_groups(model)
    stages = _Stages.of(model.units())
    if ax is None:
        fig, ax = plt.subplots(figsize=(12.0, 5.0))
        fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93)
    else:
        fig = ax.figure
    colours = {stages.head: "#dddddd", stages.tail: "#dddddd", stages.encoder: "#9ecae1",
               stages.bottleneck: "#fcbba1", stages.decoder: "#c7e9c0"}
    w, h, dy, step, stagger = 2.5, 0.8, 1.25, 2.85, 1.6

    def level(s: float) -> float:
        return -math.log2(1 / s) * dy  # 0 at full resolution, one dy lower per halving

    def box(x: float, y: float, lines: list[str], colour: str) -> None:
        ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.03",
                                    facecolor=colour, edgecolor="black", linewidth=0.8, zorder=3))
        for k, line in enumerate(lines):
            ax.text(x, y + 0.21 * ((len(lines) - 1) / 2 - k), line, ha="center", va="center",
                    zorder=4, fontsize=10 if k == 0 else 7.5, weight="bold" if k == 0 else None)

    def arrow(x0, y0, x1, y1, style: str = "-", colour: str = "black") -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), zorder=2,
                    arrowprops=dict(arrowstyle="->", linestyle=style, color=colour, lw=1.0,
                                    shrinkA=0, shrinkB=0))

    lr = size // scale
    box(0.0, -dy, ["LR face", f"3×{lr}×{lr}"], "white")
    box(0.0, 0.0, ["input", f"3×{size}×{size}"], "white")
    arrow(0.0, -dy + h / 2, 0.0, -h / 2)
    ax.text(0.1, -dy / 2, f"bicubic ×{scale}", ha="left", va="center", fontsize=8)

    x, y_prev, x_prev = 0.0, 0.0, 0.0
    encoder_at: dict[float, tuple[float, float]] = {}
    skips: list[tuple[float, float, float, bool]] = []  # (x from, x to, y, fused)
    for g, (stage, s, units) in enumerate(groups):
        y = level(s)
        x += step if y == y_prev else stagger
        c, hh, ww = trace[units[-1].path].out_shape[1:]
        names = list(dict.fromkeys(u.paper_name for u in units))
        if g in (0, len(groups) - 1):  # the head and the tail
            lines = [names[0].replace("x", "×"), "shallow features" if g == 0 else "reconstruction"]
        elif len(units) > 1 and len(names) == 1:
            lines = [f"{len(units)} × {names[0]}"]
        else:
            lines = [" → ".join(names)]
        lgcms = [u.module for u in units if isinstance(u.module, LGCM)]
        if lgcms:
            blocks = sum(len(m.transformer) for m in lgcms if m.transformer is not None)
            lines.append(f"{blocks} Transformer block{'' if blocks == 1 else 's'}")
        lines.append(f"{c}×{hh}×{ww}")
        box(x, y, lines, colours.get(stage, "white"))
        if y == y_prev:
            arrow(x_prev + w / 2, y, x - w / 2, y)
        else:
            down = y < y_prev
            y0, y1 = (y_prev - h / 2, y + h / 2) if down else (y_prev + h / 2, y - h / 2)
            arrow(x_prev, y0, x, y1)
            ax.text((x_prev + x) / 2 + (-0.12 if down else 0.12), (y0 + y1) / 2,
                    "Down ×½" if down else "Up ×2", ha="right" if down else "left",
                    va="center", fontsize=8, color="#444444")
        if stage == stages.encoder:
            encoder_at[s] = (x, y)
        elif stage == stages.decoder and s in encoder_at:
            ex = encoder_at[s][0]
            arrow(ex + w / 2, y, x - w / 2, y, style="--", colour="tab:purple")
            skips.append((ex + w / 2, x - w / 2, y,
                          any(isinstance(u.module, MFFU) for u in units)))
        x_prev, y_prev = x, y
    if skips:  # label the top skip once
        x0, x1, y, fused = max(skips, key=lambda k: k[2])
        ax.text((x0 + x1) / 2, y + 0.06,
                "skips: every MFFU gets all encoder scales" if fused else "skips (added)",
                ha="center", va="bottom", fontsize=8, color="tab:purple")

    plus = x + w / 2 + 0.55
    ax.add_patch(Circle((plus, 0.0), 0.2, facecolor="white", edgecolor="black", zorder=3))
    ax.text(plus, 0.0, "+", ha="center", va="center", fontsize=11, zorder=4)
    arrow(x + w / 2, 0.0, plus - 0.2, 0.0)
    arrow(plus, -0.2, plus, -dy + h / 2)
    box(plus, -dy, ["SR output", f"3×{size}×{size}"], "white")
    top = h / 2 + 0.45
    ax.plot([0.0, 0.0, plus], [h / 2, top, top], color="grey", lw=0.9, ls=":", zorder=1)
    arrow(plus, top, plus, 0.2, style=":", colour="grey")
    ax.text(plus / 2, top + 0.05,
            "global residual: the network predicts a correction that is added to its input",
            ha="center", va="bottom", fontsize=8, color="grey")
    out_x = plus

    # what each composite module consists of, from the model's own parts
    members: dict[str, list[str]] = {}
    for unit in model.units(parts=True):
        if unit.part and unit.part != "resamplers":
            members.setdefault(unit.paper_name, [])
            if unit.part not in members[unit.paper_name]:
                members[unit.paper_name].append(unit.part)
    bottom = min(level(s) for _, s, _ in groups) - h / 2 - 0.35
    for k, (name, parts) in enumerate(members.items()):
        inner = ", ".join(f"{p} ({_title(p)[0]})" if _title(p)[1] else p for p in parts)
        ax.text(-w / 2, bottom - 0.3 * k, f"{name} = {_title(name)[0]}: {inner}",
                ha="left", va="top", fontsize=8.5)
    ax.set_xlim(-w / 2 - 0.1, out_x + w / 2 + 0.1)
    ax.set_ylim(bottom - 0.3 * len(members), top + 0.3)
    ax.set_axis_off()
    ax.set_title(title or f"CTCNet at a glance: a {lr}×{lr} face in, a {size}×{size} face out "
                 "(each box shows its output C×H×W)")
    return fig
