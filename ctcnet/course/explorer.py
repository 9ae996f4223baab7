"""An interactive explorer of a trained CTCNet for the book's chapter 15 (ipywidgets).

Pick a face, a module (the spatial map of one FSAU, or one head of one MDTA) and an output
window; the explorer shows the model input and output with the window, the chosen attention
map, and the LAM attribution of the window (Gu & Dong, CVPR 2021) on the LR grid.

Everything that draws is in :func:`render`, a plain function returning a matplotlib figure, so
that the same figure can be produced without widgets (the static book, tests).
:func:`build_explorer` only wires ``ipywidgets`` controls to :func:`render`; ipywidgets is
imported lazily (it is in the ``book`` extra, not a library dependency).

Example (in a notebook)::

    from ctcnet.course.book import faces, trained_model
    from ctcnet.course.explorer import build_explorer
    ui = build_explorer(trained_model(), faces("test"))
    display(ui.widget)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Rectangle
from torch import nn

from ..analysis.attention import attention_maps
from ..analysis.attribution import lam
from ..model import FSAU
from .book import face_batch
from .plotting import overlay_heatmap, to_uint8

__all__ = ["module_choices", "Explorer", "render", "build_explorer"]

_MDTA_SEP = " / head "


def module_choices(model: nn.Module, size: int = 128) -> list[str]:
    """Names of the maps the explorer can show: every FSAU path (``"encoder.0.fsau"``) and every
    MDTA head (``"encoder.0.transformer.0.attn / head 0"``), in forward order.

    A zero input of ``size x size`` is run once to discover them.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        _, maps = attention_maps(model, torch.zeros(1, 3, size, size, device=device))
    finally:
        model.train(was_training)
    names = []
    for key, value in maps.items():
        if isinstance(model.get_submodule(key), FSAU):
            names.append(key)
        else:
            names += [f"{key}{_MDTA_SEP}{h}" for h in range(value.shape[1])]
    return names


def _box(window: tuple[int, int, int], colour: str = "lime") -> Rectangle:
    top, left, size = window
    return Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor=colour, lw=1.5)


@dataclass
class Explorer:
    """State of the explorer: the model, the faces, caches of forward passes and LAM maps.

    Attributes
    ----------
    model : nn.Module
    faces : list of (name, uint8 HxWx3 array)
    lam_steps : int
        Path points of LAM (each costs one forward and backward pass), taken at the middle of
        each path segment (``rule="midpoint"``, as chapter 13 does).
    widget : ipywidgets.Widget or None
        The assembled controls and output (set by :func:`build_explorer`).
    """

    model: nn.Module
    faces: Sequence[tuple[str, np.ndarray]]
    lam_steps: int = 8
    widget: object = None
    _forward: dict = field(default_factory=dict, repr=False)
    _lam: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.faces:
            raise ValueError("the explorer needs at least one face")
        self.names = [n for n, _ in self.faces]
        self.modules = module_choices(self.model, self.faces[0][1].shape[0])

    def forward(self, face: int) -> dict:
        """Batch, output and attention maps of face number ``face`` (cached)."""
        if face not in self._forward:
            batch = face_batch([self.faces[face][1]])
            device = next(self.model.parameters()).device
            was_training = self.model.training
            self.model.eval()
            try:
                out, maps = attention_maps(self.model, batch["lr_up"].to(device))
            finally:
                self.model.train(was_training)
            self._forward[face] = {"batch": batch, "sr": out.cpu(), "maps": maps}
        return self._forward[face]

    def lam_map(self, face: int, window: tuple[int, int, int]):
        """The :class:`~ctcnet.analysis.LAMResult` of ``window`` on face ``face`` (cached)."""
        key = (face, tuple(window), self.lam_steps)
        if key not in self._lam:
            lr = self.forward(face)["batch"]["lr"]
            self._lam[key] = lam(self.model, lr, tuple(window), steps=self.lam_steps,
                                 batch_size=min(8, self.lam_steps), rule="midpoint")
        return self._lam[key]

    def figure(self, face: int = 0, module: str | None = None,
               window: tuple[int, int, int] = (26, 36, 16), show_lam: bool = True):
        """The explorer's figure for one selection (see :func:`render`)."""
        return render(self, face, module, window, show_lam)


def render(explorer: Explorer, face: int = 0, module: str | None = None,
           window: tuple[int, int, int] = (26, 36, 16), show_lam: bool = True):
    """Draw one selection: input + window, output + window, the module's map, LAM of the window.

    Parameters
    ----------
    explorer : Explorer
    face : int
        Index into ``explorer.faces``.
    module : str, optional
        One of ``explorer.modules``; default the first FSAU.
    window : (top, left, size)
        Output window in pixels of the 128x128 output (clipped to the image).
    show_lam : bool
        Compute and draw the LAM map (the expensive part).

    Returns
    -------
    matplotlib.figure.Figure
    """
    module = module or explorer.modules[0]
    if module not in explorer.modules:
        raise ValueError(f"unknown module {module!r}")
    data = explorer.forward(face)
    x, sr = data["batch"]["lr_up"], data["sr"]
    side = x.shape[-1]
    top, left, size = (int(v) for v in window)
    size = max(2, min(size, side - 1))
    top, left = min(max(0, top), side - 1 - size), min(max(0, left), side - 1 - size)
    window = (top, left, size)

    ncols = 4 if show_lam else 3
    fig, axes = plt.subplots(1, ncols, figsize=(3.6 * ncols, 3.6))
    name = explorer.names[face]
    for ax, image, title in ((axes[0], x, f"input (bicubic x8)\n{name}"),
                             (axes[1], sr, "CTCNet output")):
        ax.imshow(to_uint8(image[0]))
        ax.add_patch(_box(window))
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("column (pixels)")
        ax.set_ylabel("row (pixels)")

    ax = axes[2]
    if _MDTA_SEP in module:
        path, head = module.split(_MDTA_SEP)
        matrix = data["maps"][path][0, int(head)].float().cpu().numpy()
        handle = ax.imshow(matrix, cmap="magma", vmin=0)
        ax.set_xlabel("key channel")
        ax.set_ylabel("query channel")
        ax.set_title(f"MDTA {path}\nhead {head} ({matrix.shape[0]}x{matrix.shape[0]})", fontsize=9)
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="attention weight")
    else:
        m = data["maps"][module][0, 0].float().cpu().numpy()
        handle = overlay_heatmap(ax, to_uint8(x[0]), m, alpha=0.6, cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"FSAU {module}\nmap {m.shape[0]}x{m.shape[1]} on the input", fontsize=9)
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="spatial weight M")

    if show_lam:
        result = explorer.lam_map(face, window)
        ax = axes[3]
        handle = overlay_heatmap(ax, to_uint8(x[0]), result.map, alpha=0.55)
        ax.add_patch(_box(window))
        ax.set_title(f"LAM of the window, LR grid\nDI {result.diffusion_index:.1f}, "
                     f"{explorer.lam_steps} midpoint steps", fontsize=9)
        fig.colorbar(handle, ax=ax, fraction=0.046, pad=0.04, label="|attribution| / max")
    fig.tight_layout()
    return fig


def build_explorer(model: nn.Module, faces: Sequence[tuple[str, np.ndarray]], lam_steps: int = 8,
                   show_lam: bool = True) -> Explorer:
    """Build the widgets (face, module, window sliders, LAM switch) around an :class:`Explorer`.

    Returns the explorer; ``explorer.widget`` is the ``ipywidgets.VBox`` to display,
    ``explorer.controls`` the dict of controls and ``explorer.update()`` redraws the output
    from the current control values (it is also called on every change). ``explorer.last_figure``
    is the most recent figure.
    """
    # deferred: ipywidgets (and the IPython it runs in) are in the book extra, needed only here
    import ipywidgets as widgets
    from IPython.display import Image

    ex = Explorer(model, list(faces), lam_steps)
    side = ex.faces[0][1].shape[0]
    slider = dict(continuous_update=False, style={"description_width": "initial"})
    controls = {
        "face": widgets.Dropdown(options=[(n, i) for i, n in enumerate(ex.names)], value=0,
                                 description="face"),
        "module": widgets.Dropdown(options=ex.modules, value=ex.modules[0], description="module"),
        "top": widgets.IntSlider(value=26, min=0, max=side - 3, description="window top", **slider),
        "left": widgets.IntSlider(value=36, min=0, max=side - 3, description="window left",
                                  **slider),
        "size": widgets.IntSlider(value=16, min=4, max=48, step=4, description="window size",
                                  **slider),
        "lam": widgets.Checkbox(value=show_lam, description=f"LAM ({lam_steps} midpoint steps)"),
    }
    output = widgets.Output()

    def update(*_):
        c = {k: w.value for k, w in controls.items()}
        fig = render(ex, c["face"], c["module"], (c["top"], c["left"], c["size"]), c["lam"])
        ex.last_figure = fig
        # Replace the Output widget's content by setting its state, not with ``with output:``:
        # output capture depends on the frontend (or nbclient) routing messages by id, and a
        # redraw during a notebook's headless execution must not depend on that.
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=80, bbox_inches="tight")
        output.outputs = ()
        output.append_display_data(Image(data=png.getvalue(), format="png"))
        plt.close(fig)
        return fig

    for w in controls.values():
        w.observe(update, names="value")
    ex.controls = controls
    ex.update = update
    ex.last_figure = None
    ex.widget = widgets.VBox([
        widgets.HBox([controls["face"], controls["module"], controls["lam"]]),
        widgets.HBox([controls["top"], controls["left"], controls["size"]]),
        output,
    ])
    return ex
