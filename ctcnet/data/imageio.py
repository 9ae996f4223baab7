"""Reading, cropping and writing images: the one decoder, the one square crop, the one PNG writer.

* :func:`open_rgb` / :func:`load_rgb` / :func:`decode_image` turn a file, a file object or bytes
  into an upright 8-bit RGB image, whatever its mode (grey, palette, alpha, 16-bit, float). Every
  failure is an :class:`~ctcnet.errors.ImageReadError` naming the image; a file with more
  pixels than PIL's safety limit is a :class:`~ctcnet.errors.DecompressionBombError`.
* :func:`crop_square` cuts a square box out of an image, filling whatever lies outside it by
  reflection (CelebA, the offline face set and face crops in photos all use it).
* :func:`save_png` writes a PNG atomically (a crash leaves the old file or none, never half of
  one); :func:`is_complete_png` tells a finished output from a torn or stale one.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from .._atomic import atomic_write
from ..errors import DecompressionBombError, ImageReadError, one_line

__all__ = [
    "ALPHA_BACKGROUND",
    "IMAGE_EXTENSIONS",
    "crop_square",
    "decode_image",
    "is_complete_png",
    "is_image_name",
    "list_images",
    "load_rgb",
    "open_rgb",
    "save_png",
    "square_resize",
]

#: File extensions treated as images (case-insensitive).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)

#: Background colour used when flattening transparent images (see :func:`load_rgb`).
ALPHA_BACKGROUND = (255, 255, 255)


def is_image_name(name: str) -> bool:
    """True for a visible file name whose extension is in :data:`IMAGE_EXTENSIONS`."""
    base = PurePosixPath(name)
    return base.suffix.lower() in IMAGE_EXTENSIONS and not base.name.startswith(".")


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """List image files under a folder, recursively, sorted by relative path.

    Parameters
    ----------
    root : str or os.PathLike
        Folder to search.

    Returns
    -------
    list of pathlib.Path
        Files with an extension in :data:`IMAGE_EXTENSIONS` (hidden files skipped).

    Raises
    ------
    FileNotFoundError
        If ``root`` is not an existing folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {str(root)!r}")
    found = [p for p in root.rglob("*") if p.is_file() and is_image_name(p.name)]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as an 8-bit RGB PIL image.

    Handling of special modes:

    * EXIF orientation is applied (``ImageOps.exif_transpose``) so the pixels are upright.
    * Grey (``L``, ``1``) and palette (``P``) images are converted to RGB.
    * Transparent images (``RGBA``, ``LA``, ``P`` with transparency) are **composited on white**
      (:data:`ALPHA_BACKGROUND`): face crops with a removed background look like studio shots
      rather than getting a black halo, and fully transparent pixels never leak their hidden RGB.
    * 16-bit grey (``I;16*`` and ``I`` modes) is scaled linearly ``v / 65535 * 255`` and rounded;
      32-bit float (``F``) is assumed to be in [0, 1] when its maximum is ≤ 1, else in [0, 255].

    Parameters
    ----------
    path : str or os.PathLike
        Image file.

    Returns
    -------
    PIL.Image.Image
        A fully loaded image in mode ``RGB``.

    Raises
    ------
    ImageReadError
        If the file is missing, is not an image, or is truncated/corrupt (message names the file).
    DecompressionBombError
        If the image has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows.
    """
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise ImageReadError(f"cannot read image {p!r}: file not found")
    return open_rgb(p, label=p)


def decode_image(data: bytes, label: str) -> Image.Image:
    """Decode image bytes (e.g. an archive member) with the rules of :func:`load_rgb`."""
    return open_rgb(io.BytesIO(data), label=label)


def open_rgb(source: str | BinaryIO, label: str) -> Image.Image:
    """Decode an image from a path or binary file object with the rules of :func:`load_rgb`.

    Parameters
    ----------
    source : str or binary file object
        What ``PIL.Image.open`` accepts.
    label : str
        Name used in error messages (e.g. the file or archive member name).

    Returns
    -------
    PIL.Image.Image
        RGB image.

    Raises
    ------
    ImageReadError
        If the data is not a readable image.
    DecompressionBombError
        If the image has more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` allows.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                im.load()
                im = ImageOps.exif_transpose(im)
                rgb = _to_rgb(im)
        for warning in caught:  # Pillow's own says neither which file nor what to do
            if issubclass(warning.category, Image.DecompressionBombWarning):
                pixels = rgb.size[0] * rgb.size[1]
                warnings.warn(
                    f"image {label!r} has {pixels:,} pixels, more than Pillow's limit of "
                    f"{Image.MAX_IMAGE_PIXELS:,} for untrusted files: decoded anyway (it may "
                    "need much memory)",
                    Image.DecompressionBombWarning,
                    stacklevel=3,
                )
            else:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        return rgb
    except Image.DecompressionBombError as exc:
        # Checked before OSError/ValueError: the file is probably fine, only too large to trust.
        raise DecompressionBombError(
            f"refusing to decode image {label!r}: it is a possible decompression bomb "
            f"({one_line(exc)}); if you trust the file, raise PIL.Image.MAX_IMAGE_PIXELS"
        ) from None
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read image {label!r}: not a recognised image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(
            f"cannot read image {label!r}: corrupt or truncated ({one_line(exc)})"
        ) from None


def _high_bit_to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale a 16-bit (or 32-bit integer holding 16-bit data) grey array to uint8."""
    arr = arr.astype(np.float64)
    vmax = float(arr.max()) if arr.size else 0.0
    # 'I;16' files hold 0..65535; PIL often opens 16-bit PNGs as mode 'I' (int32) with the same
    # range. Anything larger than 16 bits is scaled by its own maximum.
    full = 65535.0 if vmax <= 65535.0 else vmax
    return np.clip(np.round(np.clip(arr, 0, None) / full * 255.0), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode.startswith("I;16") or mode == "I":
        grey = _high_bit_to_uint8(np.asarray(im))
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        grey = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


# --------------------------------------------------------------------------------------------
# Cropping
# --------------------------------------------------------------------------------------------
def crop_square(
    image: Image.Image, box: Iterable[int], size: int | None = None
) -> Image.Image:
    """Cut the square ``box = (left, top, side)`` out of ``image``, optionally resized to ``size``.

    Where the box leaves the image, the missing pixels are the image mirrored at its border
    (``numpy.pad(mode="reflect")``; ``"edge"`` for a one-pixel-wide image, which has nothing to
    mirror), so a face near the border gets no black bars. The resize, when ``size`` differs from
    ``side``, is PIL's bicubic; with ``size`` equal to ``side`` (or ``None``) no resampling happens.

    Parameters
    ----------
    image : PIL.Image.Image
        Source image; a box that leaves it is filled from an RGB copy.
    box : (int, int, int)
        Left, top and side of the square, in pixels; left/top may be negative.
    size : int, optional
        Output side length (default: ``side``).

    Returns
    -------
    PIL.Image.Image
        The ``size`` × ``size`` crop.

    Raises
    ------
    ValueError
        If ``side`` or ``size`` is not positive.
    """
    left, top, side = (int(v) for v in box)
    size = side if size is None else int(size)
    if side <= 0 or size <= 0:
        raise ValueError(f"crop side and output size must be positive, got {side} and {size}")
    width, height = image.size
    if left >= 0 and top >= 0 and left + side <= width and top + side <= height:
        patch = image.crop((left, top, left + side, top + side))
    else:
        arr = np.asarray(image.convert("RGB"))
        pad_top, pad_left = max(0, -top), max(0, -left)
        pad_bottom, pad_right = max(0, top + side - height), max(0, left + side - width)
        arr = np.pad(
            arr,
            ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)),
            mode="reflect" if min(height, width) > 1 else "edge",
        )
        y0, x0 = top + pad_top, left + pad_left
        patch = Image.fromarray(np.ascontiguousarray(arr[y0 : y0 + side, x0 : x0 + side]))
    if size != side:
        patch = patch.resize((size, size), Image.Resampling.BICUBIC)
    return patch


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre-crop the largest square and resize it to ``size`` × ``size`` with PIL bicubic.

    Images that already are ``size`` × ``size`` are returned unchanged (no resampling).
    """
    width, height = img.size
    if (width, height) == (size, size):
        return img
    side = min(width, height)
    return crop_square(img, ((width - side) // 2, (height - side) // 2, side), size)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def save_png(
    image: Image.Image | np.ndarray,
    path: str | os.PathLike[str],
    text: Mapping[str, str] | None = None,
) -> Path:
    """Write ``image`` (PIL, or a uint8 ``(H, W[, 3])`` array) as a PNG atomically (temporary
    file + rename); ``text`` goes into tEXt chunks (e.g. a fingerprint that
    :func:`is_complete_png` checks). Returns the path."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    info = None
    if text:
        info = PngImagePlugin.PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    path = Path(path)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG", pnginfo=info)
    return path


def is_complete_png(
    path: str | os.PathLike[str], size: int, text: Mapping[str, str] | None = None
) -> bool:
    """True if ``path`` is a fully decodable ``size`` × ``size`` PNG carrying ``text`` (if given).

    Used to resume a build: a torn, resized or stale (other fingerprint) file is redone.
    """
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with Image.open(path) as img:
            if img.format != "PNG" or img.size != (size, size):
                return False
            img.load()
            stored = getattr(img, "text", {})
            return all(stored.get(k) == v for k, v in (text or {}).items())
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False
