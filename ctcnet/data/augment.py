"""A stronger training augmentation than the authors' flip + random-resized crop.

:class:`FaceAugment` is the ``augment="strong"`` recipe of :class:`ctcnet.train.TrainConfig`
(off by default, so the reference recipe and its results do not move). It applies, in order:

1. a horizontal flip (faces are nearly symmetric, so this doubles the data for free);
2. a small rotation and zoom about the centre, in one bicubic resampling. The zoom is never
   below what the rotation needs to keep the frame covered (``|cos a| + |sin a|``), so no
   padding or black corners enter the target;
3. colour jitter: brightness, contrast and saturation, each by a factor near 1.

Both the network input and the target are made from the augmented HR face (the degradation
comes after the augmentation), so the jitter changes what the model sees, not what it is asked
to undo. Every draw comes from the ``rng`` passed in: the same stream gives the same image.
"""

from __future__ import annotations

import math
import random

from PIL import Image, ImageEnhance

__all__ = ["FaceAugment"]


class FaceAugment:
    """Flip, small rotation and zoom, colour jitter; seeded by the caller's ``rng``.

    Parameters
    ----------
    hr_size : int, default 128
        Side of the (square) input and output images.
    p_flip : float, default 0.5
        Horizontal-flip probability.
    max_rotation : float, default 10.0
        Rotation angle drawn uniformly from ``[-max_rotation, max_rotation]`` degrees.
    zoom : tuple of float, default (1.0, 1.1)
        Extra zoom drawn uniformly from this range, on top of the zoom that hides the corners.
    jitter : float, default 0.1
        Brightness, contrast and saturation factors are drawn from ``[1 - jitter, 1 + jitter]``.
    """

    #: :class:`ctcnet.data.datasets.FaceSRDataset` passes its per-item stream to seeded callables.
    seeded = True

    def __init__(
        self,
        hr_size: int = 128,
        p_flip: float = 0.5,
        max_rotation: float = 10.0,
        zoom: tuple[float, float] = (1.0, 1.1),
        jitter: float = 0.1,
    ) -> None:
        if not 0.0 <= p_flip <= 1.0:
            raise ValueError(f"p_flip must be in [0, 1], got {p_flip}")
        if not 0.0 <= max_rotation <= 45.0:
            raise ValueError(f"max_rotation must be in [0, 45] degrees, got {max_rotation}")
        if not 1.0 <= zoom[0] <= zoom[1]:
            raise ValueError(f"zoom must satisfy 1 <= low <= high, got {zoom}")
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {jitter}")
        self.hr_size = hr_size
        self.p_flip = p_flip
        self.max_rotation = max_rotation
        self.zoom = tuple(zoom)
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"FaceAugment(hr_size={self.hr_size}, p_flip={self.p_flip}, "
            f"max_rotation={self.max_rotation}, zoom={self.zoom}, jitter={self.jitter})"
        )

    def __call__(self, img: Image.Image, rng: random.Random) -> Image.Image:
        """Augment one ``hr_size`` × ``hr_size`` RGB image with draws from ``rng``."""
        size = self.hr_size
        if img.size != (size, size):
            raise ValueError(f"FaceAugment expects a {size}x{size} image, got {img.size}")
        if rng.random() < self.p_flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        cos, sin = math.cos(angle), math.sin(angle)
        zoom = rng.uniform(*self.zoom) * (abs(cos) + abs(sin))
        # PIL maps each output pixel to an input position: rotate and shrink about the centre
        a, b, d, e = cos / zoom, -sin / zoom, sin / zoom, cos / zoom
        c0 = size / 2
        coeffs = (a, b, c0 - a * c0 - b * c0, d, e, c0 - d * c0 - e * c0)
        img = img.transform((size, size), Image.AFFINE, coeffs, resample=Image.BICUBIC)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            img = enhancer(img).enhance(rng.uniform(1 - self.jitter, 1 + self.jitter))
        return img
