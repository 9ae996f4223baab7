"""Which file a ``--checkpoint`` value means, and the model it holds.

:func:`resolve_weights` turns what a user writes into one file: a path, ``official`` (the authors'
weights in the cache that ``ctcnet weights official`` fills), ``reduced`` or nothing (the weights
shipped in this package). A name with no weights behind it is a one-line
:class:`~ctcnet.errors.CheckpointError` that says how to get them, never an untrained network.
:func:`load_model` reads the file, ours or the authors', into a model in eval mode.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..model import PRESETS, CTCNet
from .checkpoint import FORMAT, model_from_checkpoint, read_checkpoint
from .download import default_weights_dir, find_official_checkpoint
from .official import load_official_checkpoint

__all__ = ["SHIPPED_PRESET", "TRAIN_HINT", "default_weights_path", "load_model", "resolve_weights"]

#: The preset whose trained weights ship in this package (:func:`default_weights_path`).
SHIPPED_PRESET = "reduced"
#: How to get the default weights when they are missing. A pip install has no ``scripts/``, so
#: the commands come first and the repository's recipe script second.
TRAIN_HINT = (
    "train a model with `ctcnet train --preset reduced --out runs/reduced` and release it with "
    "`ctcnet export runs/reduced/last.pt PATH` (the shipped recipe is scripts/train_release.sh "
    "in the repository), or pass --checkpoint PATH"
)


def default_weights_path() -> Path:
    """Path of the shipped reduced model: ``ctcnet/weights/ctcnet_reduced_offline.pt``."""
    return Path(__file__).resolve().parent / "ctcnet_reduced_offline.pt"


def resolve_weights(checkpoint: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint file that a ``--checkpoint`` value means.

    Parameters
    ----------
    checkpoint : str or os.PathLike, optional
        A file (an existing path always wins over a name); ``"official"``: the authors' released
        weights in the cache filled by ``ctcnet weights official``
        (:func:`~ctcnet.weights.default_weights_dir`); ``"reduced"`` or ``None``: the weights
        shipped in this package (:func:`default_weights_path`).

    Returns
    -------
    pathlib.Path
        The file to load (a path given by the user is returned as it is; reading it reports
        whether it exists).

    Raises
    ------
    CheckpointError
        A name whose weights are not on this machine (the authors' not fetched yet, shipped ones
        missing, or a preset that has no released weights): one line that says how to get them.
    """
    if checkpoint is None:
        checkpoint = SHIPPED_PRESET
    if not isinstance(checkpoint, str) or checkpoint not in PRESETS or Path(checkpoint).exists():
        return Path(checkpoint)
    if checkpoint == "official":
        found = find_official_checkpoint()
        if found is None:
            raise CheckpointError(
                f"the authors' weights are not in {default_weights_dir()}: fetch them with "
                "`ctcnet weights official` (or `ctcnet weights official --source PATH` for a "
                ".pth downloaded by hand), or pass --checkpoint PATH"
            )
        return found
    if checkpoint == SHIPPED_PRESET:
        path = default_weights_path()
        if not path.is_file():
            raise CheckpointError(f"no trained weights at {path}: {TRAIN_HINT}")
        return path
    raise CheckpointError(
        f"preset {checkpoint!r} has no released weights: train them with `ctcnet train --preset "
        f"{checkpoint} --out runs/{checkpoint}` and pass --checkpoint runs/{checkpoint}/last.pt"
    )


def load_model(
    path_or_name: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> CTCNet:
    """A :class:`CTCNet` in eval mode, holding trained weights.

    Parameters
    ----------
    path_or_name : str or os.PathLike, optional
        One of our checkpoints (``last.pt``, ``best.pt``, a released file: the config is read
        from the file), an official checkpoint of the authors (recognised by its keys), or a
        name that :func:`resolve_weights` knows (``official``, ``reduced``). Default: the
        shipped weights. For a freshly initialised network use :func:`ctcnet.build_model`.
    device : str or torch.device, default "cpu"
        Where to put the model.

    Returns
    -------
    CTCNet
        The model, in eval mode.

    Raises
    ------
    CheckpointError
        Missing, unreadable, damaged or corrupt file, weights that do not match the config, or
        a name without weights, with a one-line message.
    """
    path = resolve_weights(path_or_name)
    obj = read_checkpoint(path)
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        model = model_from_checkpoint(obj, source=f"checkpoint {path}")
        return model.to(device).eval()
    if isinstance(obj, Mapping) and "format" in obj:
        raise CheckpointError(f"checkpoint {path} has an unknown format {obj['format']!r}")
    try:
        return load_official_checkpoint(obj, device=device)
    except CheckpointError as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}") from None
