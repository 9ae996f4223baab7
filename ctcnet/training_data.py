"""The faces a training run learns from and validates on, and the loader that feeds them.

:func:`load_data` builds the training set (augmenting and cropping) and the validation set (whole
faces) once each, from a :class:`~ctcnet.train.TrainConfig`; :func:`make_loader` runs the
training set's samples of steps ``start ..`` through DataLoader workers in the order
:class:`~ctcnet.data.sampling.StepSampler` gives, this rank's share of every global batch.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import DataLoader

from .data import offline_faces
from .data.augment import FaceAugment
from .data.datasets import FaceSRDataset
from .data.imageio import list_images
from .data.sampling import StepSampler, split_by_identity
from .distributed import Ranks
from .errors import TrainingError

if TYPE_CHECKING:
    from .train import TrainConfig  # for the annotations only: train.py imports this module

__all__ = ["default_workers", "load_data", "make_loader"]


def load_data(cfg: TrainConfig) -> tuple[FaceSRDataset, FaceSRDataset | None]:
    """The training set (augmenting and cropping) and the validation set (whole faces), each
    built once. Every image of both is decoded here: a corrupt file raises a one-line
    :class:`TrainingError` naming it, before any training step."""
    offline = cfg.data == "offline-faces"
    root = offline_faces.default_root() / "train" if offline else Path(cfg.data)
    if offline and not root.is_dir():
        raise TrainingError(
            f"offline faces not found in {root.parent}: run `ctcnet data offline-faces` "
            "(or set CTCNET_DATA to a built copy)"
        )
    try:
        files, val_source = list_images(root), None if cfg.val == "none" else cfg.val
        if not files:
            raise ValueError(f"no images found in folder {str(root)!r}")
        if cfg.val.startswith("carve:"):  # whole identities out of the training set
            who = _identities([p.relative_to(root).as_posix() for p in files], offline)
            keep, held_out = split_by_identity(who, int(cfg.val[6:]))
            files, val_source = [files[i] for i in keep], [files[i] for i in held_out]
        val_set = FaceSRDataset(val_source, hr_size=cfg.hr_size) if val_source else None
        augment = FaceAugment(cfg.hr_size) if cfg.augment == "strong" else cfg.augment == "reference"
        train_set = FaceSRDataset(
            files, hr_size=cfg.hr_size, augment=augment, seed=cfg.seed, patch_size=cfg.patch_size,
            cache_size=4096,  # ~200 MB of 128x128 faces at most
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from None
    for kind, data in (("training", train_set), ("validation", val_set)):
        bad = data.validate() if data is not None else []
        if bad:
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise TrainingError(f"{kind} data: {bad[0][1]}{more}")  # the reason names the file
    return train_set, val_set


def _identities(names: list[str], offline: bool) -> list[str]:
    """Who is in each training image: the offline manifest's identity for the offline faces,
    else the first folder of the relative path, else the file itself."""
    if offline:
        who = {face["id"]: face["identity"] for face in offline_faces.load_manifest()["faces"]}
        return [who.get(Path(name).stem, name) for name in names]
    return [name.split("/")[0] if "/" in name else name for name in names]


def make_loader(cfg: TrainConfig, data: FaceSRDataset, start: int, ranks: Ranks) -> DataLoader:
    """This rank's batches of the steps ``start ..``, made by worker processes; the crop side
    of each step is ``patch_size``, or ``hr_size`` from ``full_size_from_step`` on."""
    workers = default_workers() if cfg.workers is None else cfg.workers
    patch, full_from = cfg.patch_size or cfg.hr_size, cfg.full_size_from_step
    sampler = StepSampler(
        len(data), cfg.batch_size, cfg.seed, cfg.steps, start, rank=ranks.rank, world=ranks.world,
        patch_at=lambda step: cfg.hr_size if full_from is not None and step >= full_from else patch,
    )  # fmt: skip
    return DataLoader(data, batch_sampler=sampler, num_workers=workers,
                      pin_memory=ranks.device.type == "cuda",
                      worker_init_fn=_ignore_sigint if workers else None)  # fmt: skip


def default_workers() -> int:
    """DataLoader workers when ``TrainConfig.workers`` is None: one per four cores, at most 4."""
    # the cores this process may use, not the machine's (containers, taskset)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(4, (cores or 1) // 4)


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C goes to the whole process group; the main process decides when to stop, and
    # workers that died on it would turn a clean stop into a DataLoader error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
