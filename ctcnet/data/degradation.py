"""The reference ×8 degradation and training augmentation.

Both follow the authors' data pipeline (``data/celeba_dataset.py`` and
``data/single_dataset.py``); the tensors the model sees are made by :mod:`ctcnet.pixels`.

* LR generation: PIL bicubic down to ``(W/8, H/8)`` then PIL bicubic back up to ``(W, H)``; the
  network input is the up-sampled image.
* Augmentation: horizontal flip (p = 0.5) then a random-resized-crop branch, as
  ``data/celeba_dataset.py`` does.

PIL's bicubic uses a = -0.5 and widens its kernel when down-scaling (anti-aliasing); it is neither
``torch.nn.functional.interpolate(mode="bicubic")`` nor MATLAB ``imresize``.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
from PIL import Image

__all__ = ["ReferenceAugment", "degrade"]

# --------------------------------------------------------------------------------------------
# Degradation
# --------------------------------------------------------------------------------------------
def degrade(hr: Image.Image, scale: int = 8) -> tuple[Image.Image, Image.Image]:
    """Produce the reference low-resolution input from a high-resolution image.

    Parameters
    ----------
    hr : PIL.Image.Image
        High-resolution RGB image whose width and height are divisible by ``scale``.
    scale : int, default 8
        Down-scaling factor.

    Returns
    -------
    lr_small : PIL.Image.Image
        ``hr`` resized to ``(W // scale, H // scale)`` with PIL bicubic.
    lr_up : PIL.Image.Image
        ``lr_small`` resized back to ``(W, H)`` with PIL bicubic (the network input).

    Raises
    ------
    ValueError
        If ``scale`` is not a positive integer or the size is not divisible by it.
    """
    if not isinstance(hr, Image.Image):
        raise ValueError(f"degrade expects a PIL image, got {type(hr).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    w, h = hr.size
    if w % scale or h % scale:
        raise ValueError(f"image size {w}x{h} is not divisible by scale {scale}")
    lr_small = hr.resize((w // scale, h // scale), Image.BICUBIC)
    lr_up = lr_small.resize((w, h), Image.BICUBIC)
    return lr_small, lr_up


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------
Rng = random.Random | torch.Generator


def _uniform(rng: Rng, a: float, b: float) -> float:
    if isinstance(rng, torch.Generator):
        return a + (b - a) * float(torch.rand((), generator=rng, dtype=torch.float64))
    return rng.uniform(a, b)


def _randint(rng: Rng, a: int, b: int) -> int:
    """Uniform integer in [a, b] inclusive."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(a, b + 1, (), generator=rng))
    return rng.randint(a, b)


class ReferenceAugment:
    """The reference training augmentation (the authors' ``data/celeba_dataset.py``).

    1. Horizontal flip with probability ``p_flip``.
    2. Draw ``s ~ U[scale_range)``; if ``int(W * s) > W`` (≈97 % of draws for W = 128 and the
       default range) replace the image by a random-resized crop of it: area fraction
       ``U[area)``, aspect ratio log-uniform in ``ratio``, up to 10 attempts and a centre-crop
       fallback (the torchvision ``RandomResizedCrop`` recipe), resized to ``hr_size`` × ``hr_size``
       with PIL bicubic. Otherwise the image is left unchanged.

    Parameters
    ----------
    hr_size : int, default 128
        Expected (square) input size and output size.
    p_flip : float, default 0.5
        Horizontal-flip probability.
    scale_range : tuple of float, default (1.0, 1.3)
        Range of the scale draw that gates the crop branch.
    area : tuple of float, default (0.7, 1.0)
        Range of the crop's area fraction.
    ratio : tuple of float, default (3/4, 4/3)
        Range of the crop's aspect ratio (width / height).
    enabled : bool, default True
        When False the call returns the image unchanged (evaluation mode).
    rng : random.Random or torch.Generator or int, optional
        Default random source; an int seeds a new ``random.Random``. Each call can override it.
    """

    def __init__(
        self,
        hr_size: int = 128,
        p_flip: float = 0.5,
        scale_range: tuple[float, float] = (1.0, 1.3),
        area: tuple[float, float] = (0.7, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        enabled: bool = True,
        rng: Rng | int | None = None,
    ) -> None:
        if hr_size < 1:
            raise ValueError(f"hr_size must be positive, got {hr_size}")
        if not 0.0 <= p_flip <= 1.0:
            raise ValueError(f"p_flip must be in [0, 1], got {p_flip}")
        for name, (lo, hi) in (("scale_range", scale_range), ("area", area), ("ratio", ratio)):
            if not (0 < lo <= hi):
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if area[1] > 1.0:
            raise ValueError(f"area fractions must be <= 1, got {area}")
        self.hr_size = hr_size
        self.p_flip = p_flip
        self.scale_range = tuple(scale_range)
        self.area = tuple(area)
        self.ratio = tuple(ratio)
        self.enabled = enabled
        self.rng: Rng = random.Random(rng) if rng is None or isinstance(rng, int) else rng

    def __repr__(self) -> str:
        return (
            f"ReferenceAugment(hr_size={self.hr_size}, p_flip={self.p_flip}, "
            f"scale_range={self.scale_range}, area={self.area}, ratio={self.ratio}, "
            f"enabled={self.enabled})"
        )

    def crop_box(self, width: int, height: int, rng: Rng) -> tuple[int, int, int, int]:
        """Draw a random-resized-crop box ``(left, top, right, bottom)``.

        Parameters
        ----------
        width, height : int
            Image size.
        rng : random.Random or torch.Generator
            Random source.

        Returns
        -------
        tuple of int
            PIL crop box.
        """
        total = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = total * _uniform(rng, *self.area)
            aspect = math.exp(_uniform(rng, log_lo, log_hi))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = _randint(rng, 0, height - h)
                left = _randint(rng, 0, width - w)
                return left, top, left + w, top + h
        # Fallback: centre crop with the aspect ratio clamped into range.
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        left, top = (width - w) // 2, (height - h) // 2
        return left, top, left + w, top + h

    def __call__(self, img: Image.Image, rng: Rng | None = None) -> Image.Image:
        """Augment one HR image.

        Parameters
        ----------
        img : PIL.Image.Image
            ``hr_size`` × ``hr_size`` image.
        rng : random.Random or torch.Generator, optional
            Random source for this call (defaults to the instance's).

        Returns
        -------
        PIL.Image.Image
            The augmented ``hr_size`` × ``hr_size`` image.

        Raises
        ------
        ValueError
            If the image is not ``hr_size`` × ``hr_size``.
        """
        if img.size != (self.hr_size, self.hr_size):
            raise ValueError(
                f"ReferenceAugment expects a {self.hr_size}x{self.hr_size} image, "
                f"got {img.size[0]}x{img.size[1]}"
            )
        if not self.enabled:
            return img
        rng = self.rng if rng is None else rng
        if _uniform(rng, 0.0, 1.0) < self.p_flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        s = _uniform(rng, *self.scale_range)
        width, height = img.size
        if int(width * s) > width:
            box = self.crop_box(width, height, rng)
            img = img.crop(box).resize((self.hr_size, self.hr_size), Image.BICUBIC)
        return img

    def state(self) -> dict[str, Any]:
        """Return the configuration as a plain dict (for logging)."""
        return {
            "hr_size": self.hr_size,
            "p_flip": self.p_flip,
            "scale_range": self.scale_range,
            "area": self.area,
            "ratio": self.ratio,
            "enabled": self.enabled,
        }
