"""The model's pixel convention: uint8 RGB images in, float tensors in [-1, 1] out, and back.

Both directions follow the authors' pipeline (``data/single_dataset.py`` on the way in, their
``test.py`` and ``psnr_ssim.py`` on the way out):

* Tensors: ``ToTensor`` + ``Normalize(0.5, 0.5)``, i.e. ``(v / 255 - 0.5) / 0.5`` in [-1, 1].
* Output images: ``(y + 1) / 2 * 255``, clipped to [0, 255], **truncated** to ``uint8``.

Data (:mod:`ctcnet.data`), metrics, evaluation and upscaling all convert through these two
functions, so a score and a saved image always see the same pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["to_tensor", "to_uint8"]


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """Convert a uint8 RGB image to a float32 CHW tensor in [-1, 1].

    Equivalent to torchvision's ``ToTensor()`` followed by ``Normalize(0.5, 0.5)``:
    ``(v / 255 - 0.5) / 0.5`` computed in float32.

    Parameters
    ----------
    img : PIL.Image.Image or numpy.ndarray
        A PIL image (converted to RGB) or a ``uint8`` array of shape ``(H, W, 3)``.

    Returns
    -------
    torch.Tensor
        Tensor of shape ``(3, H, W)``, dtype float32.

    Raises
    ------
    ValueError
        If an array is not ``uint8`` with shape ``(H, W, 3)``.
    """
    if isinstance(img, Image.Image):
        arr = np.asarray(img.convert("RGB"))
    elif isinstance(img, np.ndarray):
        if img.dtype != np.uint8:
            raise ValueError(f"to_tensor expects a uint8 array, got dtype {img.dtype}")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"to_tensor expects an (H, W, 3) array, got shape {img.shape}")
        arr = img
    else:
        raise ValueError(f"to_tensor expects a PIL image or numpy array, got {type(img).__name__}")
    t = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32)
    return (t.div(255.0) - 0.5) / 0.5


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Convert a [-1, 1] tensor to uint8 images exactly as the reference post-processing does.

    ``((y + 1) / 2 * 255)`` in the tensor's float precision, clipped to [0, 255], then cast to
    ``uint8`` by **truncation** (not rounding): 0.999 → 254.87 → 254. Because of truncation and
    float32 rounding, ``to_uint8(to_tensor(x))`` can be 1 lower than ``x`` for some values.

    Parameters
    ----------
    t : torch.Tensor
        ``(3, H, W)`` or ``(N, 3, H, W)`` tensor (any float dtype; gradients are detached).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(H, W, 3)`` or ``(N, H, W, 3)``.

    Raises
    ------
    ValueError
        If ``t`` is not a floating tensor of rank 3 or 4, or contains NaN.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"to_uint8 expects a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"to_uint8 expects a floating tensor in [-1, 1], got dtype {t.dtype}")
    if t.ndim not in (3, 4):
        raise ValueError(f"to_uint8 expects a CHW or NCHW tensor, got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError("to_uint8 got a tensor containing NaN")
    y = ((t.detach().cpu() + 1) / 2 * 255).clamp(0, 255)
    arr = y.numpy().astype(np.uint8)  # truncation toward zero (values are >= 0)
    return np.moveaxis(arr, -3, -1)
