"""Our checkpoint format: saving (atomically, sealed with a digest), reading, and stripping.

A checkpoint is a ``torch.save``-d dict::

    dict(format="ctcnet-checkpoint", version=1,
         config=CTCNetConfig.to_dict(),      # the model is rebuilt from this
         model=state_dict,                   # no "module." prefix
         optimizer=state_dict or None,
         step=int,                           # number of completed training steps
         rng=dict(torch=..., numpy=..., python=..., cuda=...),
         extra=dict(best_psnr=..., ...),
         digest="sha256 of everything above")

Everything in it is a tensor, a number, a string or a container of those, so it loads with
``torch.load(weights_only=True)`` (the numpy RNG key is stored as a tensor). Files are written to
a temporary file in the target folder and renamed over the target (``os.replace``), so a crash
or ``kill -9`` leaves either the old or the new file, never a truncated one.

``digest`` is checked by :func:`read_checkpoint`: torch's zip reader does not notice a changed
byte inside tensor data, which would otherwise surface much later as NaN outputs or a resumed
run that trains into NaN. Files without a digest (written before it existed) load as before.

The generic pieces used by :mod:`ctcnet.weights.official` live here too: :func:`read_checkpoint`
(one-line errors for a missing, text, corrupt, damaged or code-carrying file),
:func:`state_dict_shapes`, :func:`describe_key_problems` and :func:`check_finite`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import atomic_write
from ..errors import CheckpointError, one_line
from ..model import PRESETS, CTCNet, CTCNetConfig

__all__ = [
    "FORMAT",
    "VERSION",
    "atomic_torch_save",
    "check_finite",
    "checkpoint_digest",
    "describe_key_problems",
    "get_rng_state",
    "model_from_checkpoint",
    "preset_of",
    "read_checkpoint",
    "save_checkpoint",
    "set_rng_state",
    "state_dict_shapes",
    "strip_for_release",
]

FORMAT = "ctcnet-checkpoint"
VERSION = 1
# torch.save has written zip archives since torch 1.6; older files are a bare pickle stream,
# whose first byte is the PROTO opcode.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


def describe_key_problems(missing: list[str], unexpected: list[str], misshaped: list[str]) -> str:
    """One line such as ``2 missing (a, b); 1 with the wrong shape (c (1,) != (2,))``."""

    def listing(items: list[str], limit: int = 4) -> str:
        shown = ", ".join(items[:limit])
        return shown + (f", ... {len(items) - limit} more" if len(items) > limit else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({listing(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({listing(unexpected)})")
    if misshaped:
        parts.append(f"{len(misshaped)} with the wrong shape ({listing(misshaped)})")
    return "; ".join(parts)


def check_finite(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Refuse weights that hold NaN or infinite values: a damaged file, or a run that diverged.

    The one check that also covers files without a digest (the authors', and ours from before
    the digest), so that they fail here, naming the file, rather than as NaN images later.
    """
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{source} is damaged: {key} holds NaN or infinite values")


def state_dict_shapes(cfg: CTCNetConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every entry of our state dict for ``cfg``."""
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = CTCNet(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# RNG state
# ---------------------------------------------------------------------------------------------
def get_rng_state() -> dict[str, Any]:
    """The torch, numpy, python (and CUDA, if available) RNG states as weights-only-safe data."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the states saved by :func:`get_rng_state` (missing parts are left alone)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "numpy" in state:
        n = state["numpy"]
        key = n["key"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], key, n["pos"], n["has_gauss"], n["gauss"]))
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        cuda = list(state["cuda"])[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------
def checkpoint_digest(ckpt: Mapping[str, Any]) -> str:
    """sha256 of every entry of a checkpoint dict but ``digest`` itself.

    Tensors count with their dtype, shape and raw bytes; numbers, strings and ``None`` with their
    type and ``repr``; containers in their order (``torch.load`` keeps it). The same dict gives
    the same digest before ``torch.save`` and after ``torch.load``.
    """
    sha = hashlib.sha256()

    def feed(obj: Any) -> None:
        if isinstance(obj, torch.Tensor):
            flat = obj.detach().cpu().contiguous().reshape(-1)
            sha.update(f"T{flat.dtype}{tuple(obj.shape)}".encode())
            sha.update(flat.view(torch.uint8).numpy())  # the bytes of any dtype, bf16 included
        elif isinstance(obj, Mapping):
            sha.update(b"{%d" % len(obj))
            for key, value in obj.items():
                feed(key)
                feed(value)
        elif isinstance(obj, (list, tuple)):
            sha.update(b"[%d" % len(obj))
            for value in obj:
                feed(value)
        else:
            sha.update(f"{type(obj).__name__}:{obj!r};".encode())

    for key, value in ckpt.items():
        if key != "digest":
            feed(key)
            feed(value)
    return sha.hexdigest()


def _sealed(ckpt: dict[str, Any]) -> dict[str, Any]:
    return {**ckpt, "digest": checkpoint_digest(ckpt)}


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_write(path) as f:
        torch.save(obj, f)
    return Path(path)


def _unwrap(model: nn.Module) -> CTCNet:
    inner = getattr(model, "module", model)  # DistributedDataParallel / DataParallel
    inner = getattr(inner, "_orig_mod", inner)  # torch.compile
    if not isinstance(inner, CTCNet):
        raise TypeError(f"expected a CTCNet, got {type(inner).__name__}")
    return inner


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    extra: Mapping[str, Any] | None = None,
    rng: bool = True,
) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``) atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file (its folder is created).
    model : CTCNet
        The model; a DDP / DataParallel / compiled wrapper is unwrapped.
    optimizer : torch.optim.Optimizer, optional
        Saved so that training can resume.
    step : int, default 0
        Number of completed training steps.
    extra : mapping, optional
        Anything else (best PSNR, the training config, ...): plain data only.
    rng : bool, default True
        Save the RNG states (:func:`get_rng_state`).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    net = _unwrap(model)
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "config": net.config.to_dict(),
        "model": state,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "step": int(step),
        "rng": get_rng_state() if rng else None,
        "extra": dict(extra or {}),
    }
    return atomic_torch_save(_sealed(ckpt), path)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------
def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """``torch.load`` a file (weights only, on the CPU) with a one-line error for bad files.

    A file that does not start like a ``torch.save`` file (a text file, an image, ...) is
    called "not a PyTorch checkpoint" before torch sees it; one of our checkpoints whose digest
    does not match its contents is called damaged; torch's own messages for such files
    ("101", "pop from empty list") say nothing to a user. A file that holds Python objects other
    than tensors and plain data is refused as such: loading it would run its code.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if head != _ZIP_MAGIC and head[:1] != bytes([_PICKLE_PROTO]):
        what = "the file is empty" if not head else "it is not a PyTorch checkpoint (torch.save file)"
        raise CheckpointError(f"cannot read checkpoint {path}: {what}")
    try:
        with warnings.catch_warnings():
            # Protocol-4 pickles load fine; torch's warning about them would be a second line.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # what weights_only raises for a disallowed object
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise CheckpointError(
                f"cannot read checkpoint {path}: it holds Python objects, not only tensors and "
                "plain data, and loading it would run their code"
            ) from None
        raise CheckpointError(f"cannot read checkpoint {path}: {_torch_reason(exc)}") from None
    except Exception as exc:  # torch raises many exception types for corrupt files
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or corrupt?): {_torch_reason(exc)}"
        ) from None
    sealed = isinstance(obj, Mapping) and obj.get("format") == FORMAT and "digest" in obj
    if sealed and checkpoint_digest(obj) != obj["digest"]:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its contents differ from the digest written with it "
            "(changed on disk or in transfer); use another copy"
        )
    return obj


def _torch_reason(exc: BaseException) -> str:
    """The first sentence of torch's message: it appends paragraphs of advice to its errors."""
    return one_line(exc).split(". ")[0].rstrip(".")


def preset_of(config: CTCNetConfig) -> str:
    """The name of the preset equal to ``config``, or ``"custom"``."""
    for name, preset in PRESETS.items():
        if preset == config:
            return name
    return "custom"


def _fits(state: Mapping[str, torch.Tensor], shapes: Mapping[str, tuple[int, ...]]) -> bool:
    return set(state) == set(shapes) and all(tuple(state[k].shape) == shapes[k] for k in shapes)


def _mismatch(state: Mapping[str, torch.Tensor], config: CTCNetConfig) -> str | None:
    """A one-line description of how ``state`` differs from a ``config`` model, or None."""
    shapes = state_dict_shapes(config)
    missing = [k for k in shapes if k not in state]
    unexpected = [k for k in state if k not in shapes]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {shapes[k]}"
        for k in shapes
        if k in state and tuple(state[k].shape) != shapes[k]
    ]
    if not (missing or unexpected or wrong):
        return None
    fits = [name for name, cfg in PRESETS.items() if cfg != config and _fits(state, state_dict_shapes(cfg))]
    hint = f"; the weights fit preset {fits[0]!r}" if fits else ""
    return describe_key_problems(missing, unexpected, wrong) + hint


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> CTCNet:
    """Rebuild the model stored in one of our checkpoint dicts (in train mode, on the CPU)."""
    if ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{source} is not a {FORMAT} file")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"{source} has format version {ckpt.get('version')!r}; this ctcnet reads {VERSION}"
        )
    raw = ckpt.get("config")
    state = ckpt.get("model")
    if not isinstance(raw, Mapping) or not isinstance(state, Mapping):
        raise CheckpointError(f"{source} lacks its 'config' or 'model' entry")
    try:
        config = CTCNetConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} has an invalid config: {exc}") from None
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(not isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source}: the 'model' entry must hold only tensors")
    problem = _mismatch(state, config)
    if problem:
        raise CheckpointError(
            f"{source} does not match its config (preset {preset_of(config)!r}): {problem}"
        )
    check_finite(state, source)
    model = CTCNet(config)
    model.load_state_dict(state, strict=True)
    return model


def strip_for_release(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Copy a training checkpoint without its optimizer and RNG state (config, model, meta only).

    The result loads with :func:`ctcnet.weights.load_model`; it cannot resume training. ``dst`` must be a file
    name: an existing folder is refused (one line), not written into.
    """
    if Path(dst).is_dir():
        example = Path(dst) / "model.pt"
        raise CheckpointError(f"{dst} is a folder: give the file to write, e.g. {example}")
    obj = read_checkpoint(src)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {src} is not a {FORMAT} file")
    model_from_checkpoint(obj, source=f"checkpoint {src}")  # validates config and weights
    extra = dict(obj.get("extra") or {})
    release = {
        "format": FORMAT,
        "version": VERSION,
        "config": obj["config"],
        "model": {k: v.contiguous() for k, v in obj["model"].items()},
        "optimizer": None,
        "step": obj.get("step", 0),
        "rng": None,
        "extra": extra,
    }
    return atomic_torch_save(_sealed(release), dst)
