"""Super-resolving the faces in an ordinary photo.

CTCNet is trained on 128x128 faces degraded to 16x16 (spec §8), so a photo is processed face by
face:

1. load it (grey, RGBA, 16-bit and EXIF-rotated files are fine: :func:`load_rgb`);
2. find the faces with OpenCV's frontal-face Haar cascade;
3. crop a square ``enlarge`` (1.6) times the detection around each face, reflect-padding where
   it leaves the photo, and resize it to 128x128;
4. make the model's training input: bicubic down to 16x16 and back up to 128x128;
5. super-resolve, and save the face, a comparison strip (LR | bicubic | SR | original crop) and
   the photo with the SR faces pasted back (resized to the crop size, with feathered edges).

An image whose longer side is at most 32 pixels is taken to be a tiny face already: it is resized
to 16x16 and up-scaled x8 directly. The result is the *model's* reconstruction from 16x16
pixels, not an enhancement of the photo: a sharp photo comes out blurrier than it went in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from .data.degradation import ImageReadError, load_rgb, to_tensor, to_uint8
from .evaluate import comparison_strip, save_png_atomic
from .model import CTCNet

__all__ = ["FaceCrop", "UpscaleResult", "detect_faces", "super_resolve", "upscale_photo"]

FACE_SIZE = 128
SCALE = 8
TINY_SIDE = 32
LR_SIDE = FACE_SIZE // SCALE


@dataclass
class FaceCrop:
    """One processed face: ``box`` = ``(left, top, side)`` of the square crop in the photo
    (it may reach outside the photo), and the files written for it."""

    index: int
    box: tuple[int, int, int]
    sr_path: Path
    strip_path: Path


@dataclass
class UpscaleResult:
    """What :func:`upscale_photo` did for one input."""

    input: Path
    faces: list[FaceCrop] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one face was written and nothing went wrong."""
        return bool(self.faces) and not self.problems


def detect_faces(img: Image.Image, min_size: int = 24) -> list[tuple[int, int, int, int]]:
    """Frontal faces ``(x, y, w, h)`` found by OpenCV's Haar cascade, largest first."""
    path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load the OpenCV face detector {path}")
    grey = cv2.equalizeHist(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2GRAY))
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_size,) * 2)
    boxes = [tuple(int(v) for v in b) for b in found]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def square_box(det: tuple[int, int, int, int], enlarge: float = 1.6) -> tuple[int, int, int]:
    """``(left, top, side)`` of a square ``enlarge`` times the detection, centred on it."""
    x, y, w, h = det
    side = max(1, int(round(max(w, h) * enlarge)))
    cx, cy = x + w / 2, y + h / 2
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_reflect(img: Image.Image, box: tuple[int, int, int]) -> Image.Image:
    """The square ``box`` of ``img``; parts outside the photo are filled by reflection."""
    left, top, side = box
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    pad = (max(0, -top), max(0, top + side - h)), (max(0, -left), max(0, left + side - w))
    if any(p for pair in pad for p in pair):
        arr = np.pad(arr, (*pad, (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    top, left = top + pad[0][0], left + pad[1][0]
    return Image.fromarray(arr[top : top + side, left : left + side])


@torch.no_grad()
def super_resolve(model: CTCNet, lr: list[Image.Image]) -> tuple[list[Image.Image], np.ndarray]:
    """Bicubic-upsample 16x16 faces to 128x128 and run the model; returns (bicubic, SR uint8)."""
    device = next(model.parameters()).device
    bicubic = [im.resize((FACE_SIZE, FACE_SIZE), Image.BICUBIC) for im in lr]
    x = torch.stack([to_tensor(im) for im in bicubic]).to(device)
    model.eval()
    sr = to_uint8(model(x).float())
    return bicubic, sr


def _feather_mask(side: int) -> Image.Image:
    ramp = max(1, side // 12)
    d = np.minimum(np.arange(side), np.arange(side)[::-1])
    w = np.clip((d + 1) / ramp, 0, 1)
    return Image.fromarray((np.outer(w, w) * 255).astype(np.uint8))


def upscale_photo(
    path: str | os.PathLike[str],
    model: CTCNet,
    out_dir: str | os.PathLike[str],
    enlarge: float = 1.6,
    max_faces: int = 32,
) -> UpscaleResult:
    """Detect, super-resolve and paste back every face of one photo.

    Parameters
    ----------
    path : str or os.PathLike
        The photo (any format PIL reads).
    model : CTCNet
        A trained model (eval mode is set here).
    out_dir : str or os.PathLike
        Output folder (created): ``<stem>_face<i>_sr.png``, ``<stem>_face<i>_compare.png``
        and, for a photo, ``<stem>_sr_faces.png``.
    enlarge : float, default 1.6
        Crop side relative to the detected face box.
    max_faces : int, default 32
        Process at most this many faces (largest first).

    Returns
    -------
    UpscaleResult
        The faces and files written, and one-line problems (unreadable file, no face found).
    """
    path = Path(path)
    out = Path(out_dir)
    result = UpscaleResult(input=path)
    try:
        photo = load_rgb(path)
    except ImageReadError as exc:
        result.problems.append(str(exc))
        return result
    stem = path.stem

    if max(photo.size) <= TINY_SIDE:  # already a tiny face: take it as the LR input
        lr = photo.resize((LR_SIDE, LR_SIDE), Image.BICUBIC)
        (bicubic,), sr = super_resolve(model, [lr])
        sr_path = save_png_atomic(sr[0], out / f"{stem}_face0_sr.png")
        strip = comparison_strip([lr, bicubic, sr[0]], ["LR", "bicubic", "SR"], FACE_SIZE)
        strip_path = save_png_atomic(strip, out / f"{stem}_face0_compare.png")
        result.faces.append(FaceCrop(0, (0, 0, max(photo.size)), sr_path, strip_path))
        result.outputs += [sr_path, strip_path]
        return result

    detections = detect_faces(photo)[:max_faces]
    if not detections:
        result.problems.append(f"no face found in {path}")
        return result
    boxes = [square_box(d, enlarge) for d in detections]
    crops = [crop_reflect(photo, b).resize((FACE_SIZE, FACE_SIZE), Image.BICUBIC) for b in boxes]
    lrs = [c.resize((LR_SIDE, LR_SIDE), Image.BICUBIC) for c in crops]
    bicubics, sr = super_resolve(model, lrs)
    pasted = photo.copy()
    for i, (box, crop, lr, bic) in enumerate(zip(boxes, crops, lrs, bicubics)):
        sr_path = save_png_atomic(sr[i], out / f"{stem}_face{i}_sr.png")
        strip = comparison_strip(
            [lr, bic, sr[i], crop], ["LR 16x16", "bicubic", "SR", "original"], FACE_SIZE
        )
        strip_path = save_png_atomic(strip, out / f"{stem}_face{i}_compare.png")
        result.faces.append(FaceCrop(i, box, sr_path, strip_path))
        result.outputs += [sr_path, strip_path]
        left, top, side = box
        face = Image.fromarray(sr[i]).resize((side, side), Image.BICUBIC)
        pasted.paste(face, (left, top), _feather_mask(side))
    result.outputs.append(save_png_atomic(pasted, out / f"{stem}_sr_faces.png"))
    return result
