"""Super-resolving the faces in ordinary photos.

CTCNet is trained on 128x128 face crops degraded to 16x16, so a photo is processed face by face:

1. load it (grey, RGBA, 16-bit and EXIF-rotated files are fine: :func:`load_rgb`);
2. find the faces (:func:`ctcnet.faces.detect_faces`: MTCNN with five landmarks, or OpenCV's Haar
   cascade when MTCNN is not installed);
3. warp each face to the 128x128 crop: *aligned* (default) by the similarity that puts its five
   landmarks on the mean landmarks of the training crops, or *unaligned* (``align=False``) as a
   square 1.6 times the detection; both are one affine warp, reflecting the photo at its border;
4. make the model's training input: bicubic down to 16x16 and back up to 128x128;
5. super-resolve, and save the 128x128 face, a comparison strip (LR | bicubic | SR | original
   crop), the photo with the faces warped back (inverse warp, feathered edges) and a JSON record.

What happens per face size. The result is the *model's* reconstruction from 16x16 pixels, not an
enhancement of the photo. A face whose crop covers at most 128x128 photo pixels (a face up to
about 60 px wide: the crop is about twice the face) is written as a 128x128 face, larger and
sharper than in the photo, and pasted back. A face whose crop covers more photo pixels than the
model outputs would only lose detail by being replaced, so it is left as it is in the photo
(``"pasted": false`` in the JSON); its 128x128 face and comparison are still written.

An image whose longer side is at most 32 pixels is taken to be a tiny face already: it is resized
to 16x16 and up-scaled x8 directly.

Output names never collide: each photo gets a name (:func:`collect_photos`) from its path relative
to the folder it was found in (sub-folders are mirrored) or its file name; photos that would get
the same name get their extension added, then a number.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ._atomic import atomic_write
from .data.imageio import IMAGE_EXTENSIONS, list_images, load_rgb, save_png
from .errors import ImageReadError
from .faces import (
    Face,
    available_detectors,
    crop_matrix,
    detect_faces,
    matrix_scale,
    paste_back,
    warp_to_crop,
)
from .model import CTCNet
from .pixels import to_tensor, to_uint8
from .strips import comparison_strip

__all__ = [
    "FaceResult",
    "Photo",
    "UpscaleResult",
    "collect_photos",
    "super_resolve",
    "upscale_photo",
    "upscale_photos",
]

FACE_SIZE = 128
SCALE = 8
TINY_SIDE = 32
LR_SIDE = FACE_SIZE // SCALE
DEFAULT_MAX_FACES = 32


@dataclass
class FaceResult:
    """One processed face: the detection, the photo pixels its crop covers (``crop_side``),
    whether it was pasted back, and the files written for it."""

    index: int
    face: Face
    crop_side: float
    pasted: bool
    files: list[Path] = field(default_factory=list)


@dataclass
class UpscaleResult:
    """What :func:`upscale_photo` did for one input."""

    input: Path
    name: str
    faces: list[FaceResult] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one face was written and nothing went wrong."""
        return bool(self.faces) and not self.problems


@dataclass
class Photo:
    """One input photo and its output name; ``problem`` says why an input gives no photo (a
    missing path, a folder without images), in which case ``name`` is empty."""

    path: Path
    name: str = ""
    problem: str = ""


def collect_photos(inputs: Iterable[str | os.PathLike[str]]) -> list[Photo]:
    """The photos to process, in input order, each with an output name no other photo gets.

    A file is taken as it is (whatever its extension); a folder is searched recursively for
    :data:`~ctcnet.data.datasets.IMAGE_EXTENSIONS`, and its photos are named by their path
    relative to it without the extension (``sub/photo``: sub-folders are mirrored in the output).
    Names that would repeat (``a/photo.jpg`` and ``b/photo.png`` given as files) get the extension
    (``photo_png``) and then a number; names are compared ignoring case, as macOS and Windows
    file systems do. A missing path or a folder with no image gives an entry with ``problem`` set.
    """
    found: list[Photo] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = list_images(path)
            if not images:
                exts = " ".join(sorted(IMAGE_EXTENSIONS))
                found.append(Photo(path, problem=f"no images in folder {path} (looked for {exts})"))
            found += [Photo(p, p.relative_to(path).with_suffix("").as_posix()) for p in images]
        elif path.exists():
            found.append(Photo(path, path.stem))
        else:
            looks_like_file = bool(path.suffix) and not str(item).endswith(("/", os.sep))
            kind = "file" if looks_like_file else "folder"
            found.append(Photo(path, problem=f"{kind} not found: {path}"))
    counts: dict[str, int] = {}
    for photo in found:
        if photo.name:
            counts[photo.name.lower()] = counts.get(photo.name.lower(), 0) + 1
    taken: set[str] = set()
    for photo in found:
        if not photo.name:
            continue
        name = photo.name
        if counts[name.lower()] > 1 and photo.path.suffix:
            name = f"{name}_{photo.path.suffix.lstrip('.').lower()}"
        unique, k = name, 2
        while unique.lower() in taken:
            unique, k = f"{name}-{k}", k + 1
        taken.add(unique.lower())
        photo.name = unique
    return found


@torch.no_grad()
def super_resolve(model: CTCNet, lr: list[Image.Image]) -> tuple[list[Image.Image], np.ndarray]:
    """Bicubic-upsample 16x16 faces to 128x128 and run the model; returns (bicubic, SR uint8)."""
    parameter = next(model.parameters())
    bicubic = [im.resize((FACE_SIZE, FACE_SIZE), Image.BICUBIC) for im in lr]
    x = torch.stack([to_tensor(im) for im in bicubic]).to(parameter.device)
    model.eval()
    sr = to_uint8(model(x).float())
    return bicubic, sr


def _write_json(data: dict, target: Path) -> Path:
    with atomic_write(target, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    return target


def upscale_photo(
    path: str | os.PathLike[str],
    model: CTCNet,
    out_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    detector: str = "auto",
    align: bool = True,
    enlarge: float = 1.6,
    max_faces: int = DEFAULT_MAX_FACES,
    min_face: int = 20,
) -> UpscaleResult:
    """Detect, super-resolve and paste back every face of one photo.

    Parameters
    ----------
    path : str or os.PathLike
        The photo (any format PIL reads).
    model : CTCNet
        A trained model (eval mode is set here).
    out_dir : str or os.PathLike
        Output folder (created). For the name ``N``: ``N_face<i>_sr.png``,
        ``N_face<i>_compare.png``, ``N_sr_faces.png`` (the photo with the faces pasted back) and
        ``N.json`` (each face's ``box`` ``[x, y, w, h]`` in photo pixels, score, landmarks, crop
        size, whether it was pasted, and its files).
    name : str, optional
        Output name (may contain ``/`` for a sub-folder); default: the file's stem. Use
        :func:`collect_photos` to get names that never collide.
    detector : {"auto", "mtcnn", "haar"}
        Face detector (:func:`ctcnet.faces.detect_faces`).
    align : bool, default True
        Warp by the five landmarks (when the detector gives them) instead of a square crop.
    enlarge : float, default 1.6
        Side of the unaligned square crop relative to the detected box.
    max_faces : int, default 32
        Process at most this many faces (largest first); a warning says when more were found.
    min_face : int, default 20
        Smallest face searched, in pixels (of the photo scaled to at most 1600 px).

    Returns
    -------
    UpscaleResult
        The faces and files written, one-line problems (unreadable file, no face found) and
        warnings (``max_faces`` reached).
    """
    path = Path(path)
    out = Path(out_dir)
    name = name or path.stem
    result = UpscaleResult(input=path, name=name)
    try:
        photo = load_rgb(path)
    except ImageReadError as exc:
        result.problems.append(str(exc))
        return result
    record: dict = {"input": str(path), "size": list(photo.size), "faces": []}

    if max(photo.size) <= TINY_SIDE:  # already a tiny face: take it as the LR input
        lr = photo.resize((LR_SIDE, LR_SIDE), Image.BICUBIC)
        (bicubic,), sr = super_resolve(model, [lr])
        files = [
            save_png(sr[0], out / f"{name}_face0_sr.png"),
            save_png(
                comparison_strip([lr, bicubic, sr[0]], ["LR", "bicubic", "SR"], FACE_SIZE),
                out / f"{name}_face0_compare.png",
            ),
        ]
        w, h = photo.size
        face = Face((0.0, 0.0, float(w), float(h)), 1.0)
        result.faces.append(FaceResult(0, face, float(max(w, h)), False, files))
        result.outputs += files
        record.update(detector="none (tiny image taken as one face)", aligned=False)
        record["faces"].append(
            {
                **face.as_json(),
                "index": 0,
                "crop_side": max(w, h),
                "pasted": False,
                "files": [f.name for f in files],
            }
        )
        record["files"] = [f.name for f in files]
        record["warnings"] = result.warnings
        result.outputs.append(_write_json(record, out / f"{name}.json"))
        return result

    used = detector if detector != "auto" else available_detectors()[0]
    found = detect_faces(photo, used, min_size=min_face)
    if not found:
        result.problems.append(f"no face found in {path}")
        return result
    if len(found) > max_faces:
        result.warnings.append(
            f"{path}: {len(found)} faces found, only the {max_faces} largest upscaled (--max-faces)"
        )
    faces = found[:max_faces]
    record.update(detector=used, aligned=align and faces[0].landmarks is not None)

    rgb = np.asarray(photo)
    matrices = [crop_matrix(f, align=align, enlarge=enlarge, size=FACE_SIZE) for f in faces]
    crops = [Image.fromarray(warp_to_crop(rgb, m, FACE_SIZE)) for m in matrices]
    lrs = [c.resize((LR_SIDE, LR_SIDE), Image.BICUBIC) for c in crops]
    bicubics, sr = super_resolve(model, lrs)
    pasted = rgb
    for i, (face, matrix, crop, lr, bic) in enumerate(zip(faces, matrices, crops, lrs, bicubics)):
        strip = comparison_strip(
            [lr, bic, sr[i], crop], ["LR 16x16", "bicubic", "SR", "original"], FACE_SIZE
        )
        files = [
            save_png(sr[i], out / f"{name}_face{i}_sr.png"),
            save_png(strip, out / f"{name}_face{i}_compare.png"),
        ]
        crop_side = FACE_SIZE / matrix_scale(matrix)
        # a face with more photo pixels than the model outputs would only lose detail
        paste = crop_side <= FACE_SIZE
        if paste:
            pasted = paste_back(pasted, sr[i], matrix)
        result.faces.append(FaceResult(i, face, crop_side, paste, files))
        result.outputs += files
        record["faces"].append(
            {
                "index": i,
                **face.as_json(),
                "crop_side": round(crop_side, 1),
                "pasted": paste,
                "files": [f.name for f in files],
            }
        )
    result.outputs.append(save_png(pasted, out / f"{name}_sr_faces.png"))
    record["files"] = [p.name for p in result.outputs]
    record["warnings"] = result.warnings
    result.outputs.append(_write_json(record, out / f"{name}.json"))
    return result


def upscale_photos(
    inputs: Sequence[str | os.PathLike[str]],
    model: CTCNet,
    out_dir: str | os.PathLike[str],
    **kwargs,
) -> list[UpscaleResult]:
    """:func:`upscale_photo` for every photo of :func:`collect_photos` (files and folders)."""
    results = []
    for photo in collect_photos(inputs):
        if photo.problem:
            results.append(UpscaleResult(photo.path, "", problems=[photo.problem]))
            continue
        result = upscale_photo(photo.path, model, out_dir, name=photo.name, **kwargs)
        for message in result.warnings:
            warnings.warn(message, stacklevel=2)
        results.append(result)
    return results
