"""The face super-resolution dataset: HR faces paired with their reference degradation.

:class:`FaceSRDataset` turns a folder (or list) of face images into training/test samples exactly
like the authors' data loader (``data/celeba_dataset.py``). Getting and preparing the images is
not its job: see :mod:`ctcnet.data.prepare` (CelebA, FFHQ, Helen) and
:mod:`ctcnet.data.offline_faces`; decoding and cropping live in :mod:`ctcnet.data.imageio`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import DataSourceError, ImageReadError
from ..pixels import to_tensor
from .degradation import ReferenceAugment, degrade
from .imageio import IMAGE_EXTENSIONS, list_images, load_rgb, square_resize

__all__ = ["FaceSRDataset"]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------
class FaceSRDataset(Dataset):
    """HR face images paired with their reference ×``scale`` degradation.

    Each item is ``dict(lr=(3, s, s), lr_up=(3, P, P), hr=(3, P, P), name=str)``: float32
    tensors in [-1, 1], ``lr_up`` (bicubic down then up) the network input and ``hr`` the target.
    ``P = hr_size`` for whole faces or the patch side; ``s = P // scale``.

    One item is made in this order: decode (:meth:`load_hr`), augment the HR face, degrade it,
    then crop a patch at offsets that are multiples of ``scale``. Cropping after the degradation
    makes a patch of the input exactly what the model sees at that place of a whole face.

    Images that are not ``hr_size`` × ``hr_size`` are centre-cropped to a square and resized
    with PIL bicubic (:func:`square_resize`); for raw CelebA prepare the crops first.

    Parameters
    ----------
    root_or_files : str, os.PathLike or sequence of them
        A folder (searched recursively for :data:`IMAGE_EXTENSIONS`) or a list of image files.
    hr_size : int, default 128
        HR side length (must be divisible by ``scale``).
    scale : int, default 8
        Super-resolution factor.
    augment : bool or callable, default False
        ``True`` uses :class:`ReferenceAugment` (the authors' flip + random resized crop); a
        callable ``f(img, rng)`` (if it has a true ``seeded`` attribute, like
        :class:`ctcnet.data.augment.FaceAugment`) or ``f(img)`` is applied to the HR PIL image.
    seed : int, optional
        Makes augmentation and cropping reproducible (see *Random streams*).
    patch_size : int, optional
        Crop side (a multiple of ``scale``, at most ``hr_size``); ``None`` = whole faces.
    cache_size : int, default 0
        Keep up to this many decoded HR faces in memory (least recently used first out);
        0 decodes on every access. Each DataLoader worker holds its own cache.

    Notes
    -----
    *Random streams.* The index may be an int ``i`` or a training draw ``(i, step, slot)`` or
    ``(i, step, slot, patch)``. An int uses ``random.Random(f"{seed}-{epoch}-{i}")`` (epoch from
    :meth:`set_epoch`); a draw uses ``random.Random(f"{seed}-{step}-{slot}")`` and, if given,
    crops ``patch`` instead of ``patch_size``. Either way an item is a pure function of the
    seed and its key, whatever the worker or the order, which is what makes a resumed training
    run see the same samples as an uninterrupted one. Without a seed, one shared stream is used.

    ``name`` is the path relative to the folder (POSIX separators) or, for a file list, the file
    name. A corrupt file raises :class:`ImageReadError` naming it when accessed; call
    :meth:`validate` to find all bad files upfront.
    """

    def __init__(
        self,
        root_or_files: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        hr_size: int = 128,
        scale: int = 8,
        augment: bool | Callable[..., Image.Image] = False,
        seed: int | None = None,
        patch_size: int | None = None,
        cache_size: int = 0,
    ) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        if not isinstance(hr_size, int) or hr_size < scale or hr_size % scale:
            raise ValueError(f"hr_size {hr_size!r} must be a positive multiple of scale {scale}")
        if patch_size is not None:
            self._check_patch(patch_size, hr_size, scale)
        self.hr_size = hr_size
        self.scale = scale
        self.seed = seed
        self.patch_size = patch_size
        self.cache_size = int(cache_size)
        self.epoch = 0
        self._rng = random.Random(seed)
        self._cache: dict[int, Image.Image] = {}  # insertion order = least recently used first
        if isinstance(root_or_files, (str, os.PathLike)):
            root = Path(root_or_files)
            if not root.exists():
                raise FileNotFoundError(f"dataset folder not found: {str(root)!r}")
            if not root.is_dir():
                raise DataSourceError(
                    f"expected a folder or a list of files, got the file {str(root)!r}"
                )
            self.root: Path | None = root
            self.files = list_images(root)
            if not self.files:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise DataSourceError(f"no images ({exts}) found in folder {str(root)!r}")
            self.names = [p.relative_to(root).as_posix() for p in self.files]
        else:
            self.root = None
            self.files = [Path(f) for f in root_or_files]
            if not self.files:
                raise ValueError("FaceSRDataset got an empty list of files")
            self.names = [p.name for p in self.files]
        if augment is True:
            self.augment: Callable[..., Image.Image] | None = ReferenceAugment(hr_size)
        elif augment is False or augment is None:
            self.augment = None
        elif callable(augment):
            self.augment = augment
        else:
            raise ValueError(f"augment must be True, False or a callable, got {augment!r}")

    @staticmethod
    def _check_patch(patch: int, hr_size: int, scale: int) -> None:
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < scale:
            raise ValueError(f"patch size must be a positive multiple of {scale}, got {patch!r}")
        if patch % scale or patch > hr_size:
            raise ValueError(
                f"patch size {patch} must be a multiple of {scale} and at most hr_size {hr_size}"
            )

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch used to derive per-item random streams (when ``seed`` is set)."""
        self.epoch = int(epoch)

    def load_hr(self, index: int) -> Image.Image:
        """Item ``index`` as an ``hr_size`` × ``hr_size`` RGB image (no augmentation)."""
        if self.cache_size <= 0:
            return square_resize(load_rgb(self.files[index]), self.hr_size)
        img = self._cache.pop(index, None)
        if img is None:
            img = square_resize(load_rgb(self.files[index]), self.hr_size)
            if len(self._cache) >= self.cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[index] = img
        return img

    def _resolve(self, key: int | Sequence[int]) -> tuple[int, random.Random, int]:
        """(index, random stream, patch side) of an int index or a training draw."""
        if isinstance(key, (tuple, list)):
            if len(key) not in (3, 4):
                raise IndexError(f"a training draw is (index, step, slot[, patch]), got {key!r}")
            index, step, slot = (int(v) for v in key[:3])
            rng = self._rng if self.seed is None else random.Random(f"{self.seed}-{step}-{slot}")
            patch = int(key[3]) if len(key) == 4 else (self.patch_size or self.hr_size)
            self._check_patch(patch, self.hr_size, self.scale)
        else:
            index = int(key)
            if -len(self) <= index < 0:
                index += len(self)  # ds[-1] is ds[len - 1], augmentation included
            epoch = self.epoch
            rng = self._rng if self.seed is None else random.Random(f"{self.seed}-{epoch}-{index}")
            patch = self.patch_size or self.hr_size
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        return index % len(self), rng, patch

    def __getitem__(self, key: int | Sequence[int]) -> dict[str, Any]:
        index, rng, patch = self._resolve(key)
        hr = self.load_hr(index)
        if self.augment is not None:
            seeded = isinstance(self.augment, ReferenceAugment) or getattr(
                self.augment, "seeded", False
            )
            hr = self.augment(hr, rng) if seeded else self.augment(hr)
            if hr.size != (self.hr_size, self.hr_size):
                raise ValueError(
                    f"augmentation returned a {hr.size[0]}x{hr.size[1]} image, "
                    f"expected {self.hr_size}x{self.hr_size}"
                )
        lr, lr_up = degrade(hr, self.scale)
        item = {"lr": to_tensor(lr), "lr_up": to_tensor(lr_up), "hr": to_tensor(hr)}
        if patch < self.hr_size:
            # top first, then left: the order of the draws is part of the exact-resume contract
            s, room = self.scale, (self.hr_size - patch) // self.scale + 1
            top, left = rng.randrange(0, room) * s, rng.randrange(0, room) * s
            for k in ("lr_up", "hr"):
                item[k] = item[k][:, top : top + patch, left : left + patch]
            rows, cols = slice(top // s, (top + patch) // s), slice(left // s, (left + patch) // s)
            item["lr"] = item["lr"][:, rows, cols]
        item["name"] = self.names[index]
        return item

    def validate(self, progress: bool = False) -> list[tuple[str, str]]:
        """Try to decode every file and list the bad ones.

        Parameters
        ----------
        progress : bool, default False
            Show a tqdm progress bar.

        Returns
        -------
        list of (str, str)
            ``(path, reason)`` for each unreadable file; empty when all are fine.
        """
        bad = []
        for path in tqdm(self.files, desc="validate", disable=not progress):
            try:
                load_rgb(path)
            except ImageReadError as exc:
                bad.append((str(path), str(exc)))
        return bad
