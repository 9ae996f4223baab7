"""Enlarging a photo and super-resolving the faces in it that the model can improve.

CTCNet turns a 16x16 face into a 128x128 one (x8). It adds detail only to faces that are about
that small in the photo, so ``ctcnet upscale`` works like GFPGAN's and CodeFormer's ``--upscale``:
it enlarges the *whole* photo ``scale`` times and pastes the super-resolved faces at the enlarged
size. For one photo:

1. load it (grey, palette, 16-bit and EXIF-rotated files are fine; an alpha channel is kept);
2. enlarge it ``scale`` x in width and height with PIL's bicubic filter (:data:`RESAMPLER`, the
   filter that also makes the model's training input): this *plain enlargement* is the
   background and every face the model cannot improve;
3. find the faces: a photo of at most :data:`TINY_SIDE` (32) pixels is taken as one face with no
   detection; otherwise :func:`ctcnet.faces.detect_faces` searches faces from ``min_face`` (8) px
   by working on an enlarged copy of the photo;
4. decide per face (:func:`improvable`): **the model improves a face whose crop covers at most**
   :data:`MAX_CROP_SIDE` **input pixels** (the crop is the square a training crop puts around a
   face, about twice its MTCNN box: faces up to about 40 px wide). Measured on the held-out test
   faces of the offline set, shrunk into size bins and enlarged back x8 (``benchmarks/
   bench_upscale.py``, table in ``benchmarks/RESULTS.md``, "Upscaling photos"): the gain in PSNR
   on Y inside the face box over the plain enlargement is +1.4 to +1.6 dB in every bin from 8 to
   32 px, with every face better; larger faces were not measured, so they are left as the plain
   enlargement, and so is every face with ``scale`` 1, where the output has no more pixels than
   the photo. The JSON record of such a face says why. These photos were shrunk the way the
   training faces were (PIL bicubic); saved as JPEG quality 75 they gain only 0 to 0.3 dB and
   some faces come out worse (down to -0.55 dB), so "never worse" holds for clean photos only;
5. super-resolve each improvable face from the photo's **own pixels at the training scale**: the
   square window of input pixels that holds its crop (at least the model's 16x16 input), placed
   by its landmarks where a training crop holds its face (an integer shift, no resampling;
   mirrored where it leaves the photo), bicubic-upsampled x8 as in training. The model is fully
   convolutional, so a window of ``n`` pixels gives an ``8n`` output covering ``n * scale``
   output pixels: it is resampled once (bicubic when ``scale`` < 8, not at all at 8) and blended
   into the enlargement through a feathered edge. Feeding the crop shrunk to 16x16 instead (and
   resizing the output back) loses most of the gain;
6. write ``NAME_x<scale>.png`` (the enlarged photo; RGBA in gives RGBA out, grey gives grey) and
   ``NAME.json`` (:meth:`UpscaleResult.as_json`: every face's box in input and output pixels,
   whether it was super-resolved and why not). ``save_faces`` also writes ``NAME_face<i>.png``
   per super-resolved face (input window | plain enlargement | super-resolved).

"Nothing to do": with ``scale`` > 1 the enlarged photo is always written, faces or not (it is what
was asked for). With ``scale`` 1 a photo is written only when a face was super-resolved, which
``scale`` 1 never does, so only the JSON is written: no copy of the input.

Every image written carries a PNG text chunk (:data:`OUTPUT_MARK`), so that a folder scanned again
(``ctcnet upscale D -o D``) never takes this command's outputs as inputs (:func:`collect_photos`).
Output names never collide: each photo gets a name from its path relative to the folder it was
found in (sub-folders are mirrored) or its file name; photos that would get the same name get
their extension added, then a number.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from ._atomic import atomic_write
from .data.imageio import IMAGE_EXTENSIONS, list_images, load_rgb, save_png
from .errors import ImageReadError
from .faces import (
    DETECTOR_MIN_FACE,
    Face,
    available_detectors,
    crop_matrix,
    detect_faces,
    feather_mask,
    matrix_scale,
    smallest_face_searched,
)
from .model import CTCNet
from .pixels import to_tensor, to_uint8
from .strips import comparison_strip

__all__ = [
    "DEFAULT_MIN_FACE",
    "DEFAULT_SCALE",
    "MAX_CROP_SIDE",
    "MAX_SCALE",
    "FaceRecord",
    "Photo",
    "UpscaleResult",
    "collect_photos",
    "improvable",
    "is_upscale_output",
    "super_resolve",
    "upscale_photo",
    "upscale_photos",
]

FACE_SIZE = 128  #: the model's output side
MODEL_SCALE = 8  #: the model's enlargement
LR_SIDE = FACE_SIZE // MODEL_SCALE  #: the model's input side (16)
TINY_SIDE = 32  #: a photo whose longer side is at most this is taken as one face
MAX_SCALE = 8
#: Default ``scale``: the model's own factor, so that a face at the training scale is pasted at
#: the resolution the model outputs, with no resampling (``benchmarks/RESULTS.md``).
DEFAULT_SCALE = 8
#: The largest crop side (input pixels) of a face the model improves (measured, see the module
#: docstring); the crop of a face whose MTCNN box is w pixels wide is about 2 w.
MAX_CROP_SIDE = 80.0
DEFAULT_MIN_FACE = 8
DEFAULT_MAX_FACES = 32
#: The resampler of the plain enlargement (and of the model's training input).
RESAMPLER = Image.Resampling.BICUBIC
#: PNG text key that marks this command's outputs.
OUTPUT_MARK = "ctcnet-upscale"
BATCH = 8


def max_output_pixels() -> int:
    """The largest enlarged photo written: what PIL opens without a decompression-bomb warning."""
    return int(Image.MAX_IMAGE_PIXELS or 89_478_485)


# --------------------------------------------------------------------------------------------
# records


@dataclass
class FaceRecord:
    """One face of a photo: where it is, whether it was super-resolved and, if not, why.

    ``box`` is ``(x, y, w, h)`` in input pixels (``output_box`` is the same in output pixels);
    ``crop_side`` is the side, in input pixels, of the square a training crop would put around
    the face; ``window`` the ``(x, y, side)`` of input pixels the model read (super-resolved faces
    only); ``reason`` says why a face was left as the plain enlargement.
    """

    index: int
    face: Face
    crop_side: float
    scale: int
    super_resolved: bool = False
    reason: str = ""
    window: tuple[int, int, int] | None = None
    file: Path | None = None

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.face.box

    @property
    def output_box(self) -> tuple[float, float, float, float]:
        return tuple(v * self.scale for v in self.face.box)

    def as_json(self) -> dict:
        """The record as plain JSON types (boxes rounded to 0.1 px)."""
        face = self.face.as_json()
        return {
            "index": self.index,
            "box": face["box"],
            "output_box": [round(v, 1) for v in self.output_box],
            "score": face["score"],
            "landmarks": face["landmarks"],
            "crop_side": round(self.crop_side, 1),
            "super_resolved": self.super_resolved,
            "reason": self.reason or None,
            "window": list(self.window) if self.window else None,
            "file": self.file.name if self.file else None,
        }


@dataclass
class UpscaleResult:
    """What :func:`upscale_photo` did for one input; :meth:`as_json` is its ``NAME.json``."""

    input: Path
    name: str
    scale: int = DEFAULT_SCALE
    size: tuple[int, int] | None = None
    detector: str = ""
    smallest_face: float | None = None
    image: Path | None = None
    note: str = ""
    faces: list[FaceRecord] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the photo was processed without a problem."""
        return not self.problems

    @property
    def super_resolved(self) -> int:
        return sum(f.super_resolved for f in self.faces)

    def as_json(self) -> dict:
        w, h = self.size or (0, 0)
        return {
            "input": str(self.input),
            "size": [w, h],
            "scale": self.scale,
            "output_size": [w * self.scale, h * self.scale],
            "image": self.image.name if self.image else None,
            "note": self.note or None,
            "detector": self.detector,
            "smallest_face_searched": (
                None if self.smallest_face is None else round(self.smallest_face, 1)
            ),
            "rule": f"super-resolved when the face's crop covers at most {MAX_CROP_SIDE:g} input "
            "pixels and scale >= 2",
            "faces": [f.as_json() for f in self.faces],
            "warnings": self.warnings,
        }


@dataclass
class Photo:
    """One input photo and its output name. ``problem`` says why an input gives no photo (a
    missing path, a folder without images), in which case ``name`` is empty."""

    path: Path
    name: str = ""
    problem: str = ""


# --------------------------------------------------------------------------------------------
# inputs


def is_upscale_output(path: str | os.PathLike[str]) -> bool:
    """True for a PNG that this command wrote (it carries the :data:`OUTPUT_MARK` text chunk)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # said when decoded
            with Image.open(path) as im:
                return OUTPUT_MARK in im.info
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def collect_photos(
    inputs: Iterable[str | os.PathLike[str]], skipped: list[Path] | None = None
) -> list[Photo]:
    """The photos to process, in input order, each with an output name no other photo gets.

    A file is taken as it is (whatever its extension); a folder is searched recursively for
    :data:`~ctcnet.data.imageio.IMAGE_EXTENSIONS` and its photos are named by their path relative
    to it without the extension (``sub/photo``: sub-folders are mirrored in the output). Images
    that this command wrote (:func:`is_upscale_output`) are skipped in folders and appended to
    ``skipped``, so that ``ctcnet upscale D -o D`` run twice never reads its own outputs. Names
    that would repeat (``a/photo.jpg`` and ``b/photo.png`` given as files) get the extension
    (``photo_png``) and then a number; names are compared ignoring case, as macOS and Windows
    file systems do. A missing path or a folder with no image gives an entry with ``problem`` set.
    """
    found: list[Photo] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            images = list_images(path)
            ours = [p for p in images if is_upscale_output(p)]
            if skipped is not None:
                skipped += ours
            images = [p for p in images if p not in ours]
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


_GREY_MODES = ("1", "L", "LA", "La", "I", "F") + tuple(f"I;16{e}" for e in ("", "B", "L", "N"))


def _load(path: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """The photo as RGB uint8, its alpha channel (or None) and whether it is grey."""
    rgb = np.asarray(load_rgb(path))  # one-line ImageReadError for anything unreadable
    with warnings.catch_warnings():
        # load_rgb has already said, in one line, if the photo is larger than Pillow trusts
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            grey = im.mode in _GREY_MODES or (im.mode == "P" and _palette_is_grey(im))
            has_alpha = "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info)
            alpha = np.asarray(im.convert("RGBA").getchannel("A")) if has_alpha else None
    return rgb, alpha, grey


def _palette_is_grey(im: Image.Image) -> bool:
    colours = np.asarray(im.convert("RGB")).reshape(-1, 3)
    return bool((colours == colours[:, :1]).all())


# --------------------------------------------------------------------------------------------
# faces


def improvable(crop_side: float, scale: int, max_crop_side: float = MAX_CROP_SIDE) -> str:
    """Why the model cannot improve a face whose crop covers ``crop_side`` input pixels when the
    photo is enlarged ``scale`` times; ``""`` when it can (see :data:`MAX_CROP_SIDE`)."""
    if scale < 2:
        return "scale 1: the output has no more pixels than the photo, so there is nothing to add"
    if crop_side > max_crop_side:
        return (
            f"too large for the model: its crop covers {crop_side:.0f} input pixels, more than "
            f"the {max_crop_side:g} up to which the model improves a face"
            + (" (measured)" if max_crop_side == MAX_CROP_SIDE else " (--max-crop)")
        )
    return ""


def _crop_side_and_centre(face: Face, align: bool) -> tuple[float, np.ndarray]:
    """The side (input pixels) of the training-style crop around ``face`` and its centre."""
    matrix = crop_matrix(face, align=align, size=FACE_SIZE)
    centre = np.linalg.solve(matrix[:, :2], np.array([63.5, 63.5]) - matrix[:, 2])
    return FACE_SIZE / matrix_scale(matrix), centre


def window_side(crop_side: float) -> int:
    """The side (input pixels) of the window the model reads for a face whose crop covers
    ``crop_side`` input pixels: the whole crop, and at least the model's own 16x16 input."""
    return max(LR_SIDE, int(np.ceil(crop_side - 1e-6)))


def _window(rgb: np.ndarray, centre: np.ndarray, side: int) -> tuple[np.ndarray, int, int]:
    """The ``side`` x ``side`` input pixels centred on ``centre``; where they leave the photo,
    the photo mirrored at its border, edge pixel included (``numpy.pad`` "symmetric": on tiny
    photos it beat "reflect", "edge" and resizing, see ``benchmarks/RESULTS.md``)."""
    x0, y0 = (int(round(c - (side - 1) / 2)) for c in centre)
    h, w = rgb.shape[:2]
    if 0 <= x0 and 0 <= y0 and x0 + side <= w and y0 + side <= h:
        return rgb[y0 : y0 + side, x0 : x0 + side], x0, y0
    padded, pad = rgb, 0
    while pad < side:  # numpy mirrors at most the array's size at once
        step = min(side - pad, *padded.shape[:2])
        padded = np.pad(padded, ((step, step), (step, step), (0, 0)), mode="symmetric")
        pad += step
    return padded[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side], x0, y0


@torch.no_grad()
def super_resolve(model: CTCNet, lr: list[Image.Image]) -> tuple[list[Image.Image], list[np.ndarray]]:
    """Bicubic-upsample square low-resolution faces x8 (the training input) and run the model;
    returns (the bicubic inputs, the super-resolved faces as uint8 ``(8n, 8n, 3)`` arrays).

    The model is fully convolutional: a window larger than 16x16 (a face larger than the
    training faces, read whole at the training scale) gives a proportionally larger output.
    Windows of the same size run as one batch."""
    parameter = next(model.parameters())
    bicubic = [im.resize((im.width * MODEL_SCALE, im.height * MODEL_SCALE), RESAMPLER) for im in lr]
    model.eval()
    sr: list[np.ndarray | None] = [None] * len(lr)
    by_size: dict[tuple[int, int], list[int]] = {}
    for k, im in enumerate(bicubic):
        by_size.setdefault(im.size, []).append(k)
    for indices in by_size.values():
        for start in range(0, len(indices), BATCH):
            batch = indices[start : start + BATCH]
            x = torch.stack([to_tensor(bicubic[k]) for k in batch]).to(parameter.device)
            for k, face in zip(batch, to_uint8(model(x).float())):
                sr[k] = face
    return bicubic, sr


def _paste(enlarged: np.ndarray, sr: np.ndarray, x0: int, y0: int, side: int, scale: int) -> None:
    """Blend the model's output for the ``side``-pixel window at input ``(x0, y0)`` into
    ``enlarged`` (in place): resampled once to ``side * scale`` pixels, feathered at its edges."""
    size = side * scale
    if sr.shape[0] != size:
        sr = np.asarray(Image.fromarray(sr).resize((size, size), RESAMPLER))
    mask = feather_mask(size)[..., None]
    h, w = enlarged.shape[:2]
    ox, oy = x0 * scale, y0 * scale
    ax0, ay0, ax1, ay1 = max(ox, 0), max(oy, 0), min(ox + size, w), min(oy + size, h)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    part = (slice(ay0 - oy, ay1 - oy), slice(ax0 - ox, ax1 - ox))
    under = enlarged[ay0:ay1, ax0:ax1, :3].astype(np.float32)
    blended = under * (1 - mask[part]) + sr[part].astype(np.float32) * mask[part]
    enlarged[ay0:ay1, ax0:ax1, :3] = np.clip(np.round(blended), 0, 255).astype(np.uint8)


def _region(image: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` RGB pixels of ``image`` from ``(x, y)``, edge-padded outside it."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    part = image[y0:y1, x0:x1, :3]
    pads = ((y0 - y, y + side - y1), (x0 - x, x + side - x1), (0, 0))
    return np.pad(part, pads, mode="edge") if part.size else np.zeros((side, side, 3), np.uint8)


def _enlarge(rgb: np.ndarray, alpha: np.ndarray | None, scale: int) -> np.ndarray:
    """The plain enlargement (RGB, or RGBA with the alpha enlarged the same way)."""
    h, w = rgb.shape[:2]
    image = Image.fromarray(rgb) if alpha is None else Image.fromarray(np.dstack([rgb, alpha]))
    if scale == 1:
        return np.array(image)
    # PIL resizes RGBA with premultiplied alpha, so transparent pixels do not bleed colour
    return np.array(image.resize((w * scale, h * scale), RESAMPLER))


# --------------------------------------------------------------------------------------------
# one photo


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
    scale: int = DEFAULT_SCALE,
    detector: str = "auto",
    align: bool = True,
    min_face: int = DEFAULT_MIN_FACE,
    max_faces: int = DEFAULT_MAX_FACES,
    save_faces: bool = False,
    max_crop_side: float = MAX_CROP_SIDE,
    protected: Iterable[Path] = (),
) -> UpscaleResult:
    """Enlarge one photo ``scale`` times and super-resolve the faces the model can improve.

    Parameters
    ----------
    path : str or os.PathLike
        The photo (any format PIL reads).
    model : CTCNet
        A trained model (eval mode is set here).
    out_dir : str or os.PathLike
        Output folder (created). For the name ``N``: ``N_x<scale>.png`` (the enlarged photo, not
        written for ``scale`` 1), ``N.json`` (:meth:`UpscaleResult.as_json`) and, with
        ``save_faces``, ``N_face<i>.png`` per super-resolved face.
    name : str, optional
        Output name (may contain ``/`` for a sub-folder); default: the file's stem. Use
        :func:`collect_photos` to get names that never collide.
    scale : int, default 8
        Enlargement, 1 to 8.
    detector : {"auto", "mtcnn", "haar"}
        Face detector (:func:`ctcnet.faces.detect_faces`).
    align : bool, default True
        Place each face's window by its five landmarks (when the detector gives them) rather
        than by the centre of its box.
    min_face : int, default 8
        Smallest face searched, in input pixels (smaller than the detector's 20 px: it searches
        an enlarged copy; the JSON's ``smallest_face_searched`` says what a large photo allowed).
    max_faces : int, default 32
        Super-resolve at most this many faces (the most confident first); the others are left as
        the plain enlargement, with a warning.
    save_faces : bool, default False
        Also write a comparison strip per super-resolved face.
    max_crop_side : float, default MAX_CROP_SIDE
        Super-resolve faces whose crop covers at most this many input pixels. The default is the
        measured rule; a larger value super-resolves larger faces too (how the rule was
        measured), which may make them worse than the plain enlargement.
    protected : iterable of Path
        Files that must not be overwritten (the inputs of the run); a photo whose output would
        replace one is refused with a problem.

    Returns
    -------
    UpscaleResult
        The faces, the files written, one-line problems (unreadable file, output too large, an
        input in the way) and warnings (``max_faces`` reached).
    """
    path = Path(path)
    out = Path(out_dir)
    name = name or path.stem
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be an integer from 1 to {MAX_SCALE}, got {scale!r}")
    result = UpscaleResult(input=path, name=name, scale=scale)
    try:
        rgb, alpha, grey = _load(path)
    except ImageReadError as exc:
        result.problems.append(str(exc))
        return result
    h, w = rgb.shape[:2]
    result.size = (w, h)
    if scale > 1 and w * h * scale * scale > max_output_pixels():  # scale 1 writes no image
        fits = int(np.sqrt(max_output_pixels() / (w * h)))
        hint = f"use --scale {fits} or less" if fits >= 1 else "shrink it first"
        result.problems.append(
            f"{path}: {w}x{h} enlarged x{scale} would be {w * scale}x{h * scale} "
            f"({w * h * scale * scale / 1e6:.0f} MP), more than the {max_output_pixels() / 1e6:.0f}"
            f" MP PIL opens without a warning: {hint}"
        )
        return result
    image_path = out / f"{name}_x{scale}.png"
    protected = {p.resolve() for p in protected}
    if image_path.resolve() in protected and scale > 1:
        result.problems.append(
            f"{path}: the output {image_path} would overwrite an input; choose another -o folder"
        )
        return result

    # the faces: a tiny photo is one face, any other is searched
    if max(w, h) <= TINY_SIDE:
        faces = [Face((0.0, 0.0, float(w), float(h)), 1.0)]
        result.detector = f"none (a photo of at most {TINY_SIDE} px is one face)"
    else:
        result.detector = detector if detector != "auto" else available_detectors()[0]
        # Haar is not run on enlarged copies: its false faces grow with resolution
        min_size = min_face if result.detector == "mtcnn" else max(min_face, DETECTOR_MIN_FACE)
        faces = detect_faces(rgb, result.detector, min_size=min_size)
        result.smallest_face = smallest_face_searched(w, h, min_size)
        faces.sort(key=lambda f: -f.score)
    centres = {}
    for i, face in enumerate(faces):
        if max(w, h) <= TINY_SIDE:  # the photo is taken as a face crop like the training ones
            crop_side, centres[i] = float(max(w, h)), np.array([(w - 1) / 2, (h - 1) / 2])
        else:
            crop_side, centres[i] = _crop_side_and_centre(face, align)
        reason = improvable(crop_side, scale, max_crop_side)
        result.faces.append(FaceRecord(i, face, crop_side, scale, reason=reason))
    chosen = [f for f in result.faces if not f.reason]
    if len(chosen) > max_faces:
        for record in chosen[max_faces:]:
            record.reason = f"over --max-faces {max_faces} (the most confident are super-resolved)"
        result.warnings.append(
            f"{path}: {len(chosen)} faces to super-resolve, only the {max_faces} most confident "
            "done (--max-faces)"
        )
        chosen = chosen[:max_faces]

    windows = []
    for record in chosen:
        side = window_side(record.crop_side)
        window, x0, y0 = _window(rgb, centres[record.index], side)
        record.window = (x0, y0, side)
        windows.append(Image.fromarray(np.ascontiguousarray(window)))
    sr = super_resolve(model, windows)[1]

    enlarged = _enlarge(rgb, alpha, scale)
    plain = enlarged.copy() if save_faces else None
    for k, record in enumerate(chosen):
        x0, y0, side = record.window
        _paste(enlarged, sr[k], x0, y0, side, scale)
        record.super_resolved = True
    if chosen or scale > 1:
        mode = ("LA" if alpha is not None else "L") if grey else None
        image = Image.fromarray(enlarged)
        if mode:
            image = image.convert(mode)
        result.image = save_png(image, image_path, text={OUTPUT_MARK: "enlarged photo"})
        result.outputs.append(result.image)
    else:
        result.note = (
            "no face was super-resolved, so the photo is unchanged: no image written"
            if scale == 1
            else ""
        )
    if save_faces:
        for k, record in enumerate(chosen):
            x0, y0, side = record.window
            strip = comparison_strip(
                [windows[k], _region(plain, x0 * scale, y0 * scale, side * scale), sr[k]],
                [f"input {side}x{side}", f"plain x{scale}", "SR x8"],
                FACE_SIZE,
            )
            record.file = save_png(
                strip, out / f"{name}_face{record.index}.png", text={OUTPUT_MARK: "face"}
            )
            result.outputs.append(record.file)
    result.outputs.append(_write_json(result.as_json(), out / f"{name}.json"))
    return result


def upscale_photos(
    inputs: Sequence[str | os.PathLike[str]],
    model: CTCNet,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = False,
    on_result: Callable[[UpscaleResult], None] | None = None,
    skipped: list[Path] | None = None,
    **kwargs,
) -> list[UpscaleResult]:
    """:func:`upscale_photo` for every photo of :func:`collect_photos` (files and folders).

    A photo that fails (unreadable, too large, an output folder that cannot be written) gives a
    result with a one-line problem and the others go on. ``on_result`` is called with each result
    as soon as it is ready (the command line prints its line there); ``progress`` shows a bar
    over the photos; ``skipped`` collects the images of earlier runs found in folders.
    """
    scale = kwargs.get("scale", DEFAULT_SCALE)
    if isinstance(scale, bool) or not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
        raise ValueError(f"scale must be an integer from 1 to {MAX_SCALE}, got {scale!r}")
    photos = collect_photos(inputs, skipped)
    protected = [p.path for p in photos if not p.problem]
    results = []
    bar = tqdm(photos, unit="photo", disable=not progress or len(photos) < 2, leave=False)
    for photo in bar:
        if photo.problem:
            result = UpscaleResult(photo.path, "", problems=[photo.problem])
        else:
            bar.set_postfix_str(photo.name, refresh=False)
            try:
                result = upscale_photo(
                    photo.path, model, out_dir, name=photo.name, protected=protected, **kwargs
                )
            except (OSError, ValueError, RuntimeError) as exc:  # e.g. a full disk: go on
                lines = str(exc).strip().splitlines()
                text = lines[0] if lines else type(exc).__name__
                result = UpscaleResult(photo.path, photo.name, problems=[f"{photo.path}: {text}"])
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
