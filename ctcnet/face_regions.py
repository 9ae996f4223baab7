"""Where the parts of a face are, from its five landmarks: the one home of face-region geometry.

Everything that needs "the mouth of this face" or "the pixels on the eyes" asks this module, so
the definitions are written once:

* :func:`crop_landmarks` finds the five landmarks of the face that fills a crop;
* :func:`part_points` turns five landmarks into the named points of :data:`REGIONS` (eye, nose,
  mouth, cheek, forehead/hair);
* :func:`landmark_window` is a square window centred on one of them, :func:`region_pixels` the
  pixel of each, kept a margin inside the image, :func:`landmark_mask` discs (or squares) around
  landmarks and :func:`face_box` the box that holds the features.

Landmarks are ``(x, y)`` in the order of :data:`ctcnet.faces.CANONICAL_LANDMARKS`: left eye,
right eye, nose tip, left and right mouth corner (left and right as seen in the image).
"""

from __future__ import annotations

import numpy as np
import torch

from .faces import CANONICAL_LANDMARKS, detect_faces

__all__ = [
    "LANDMARK_NAMES",
    "REGIONS",
    "crop_landmarks",
    "face_box",
    "landmark_mask",
    "landmark_window",
    "part_points",
    "region_pixels",
]

#: The five landmarks, in the order every landmark array uses.
LANDMARK_NAMES = ("left eye", "right eye", "nose", "left mouth corner", "right mouth corner")

#: The named points of :func:`part_points` and :func:`region_pixels`, in order.
REGIONS = ("eye", "nose", "mouth", "cheek", "forehead/hair")


def _as_faces(landmarks) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ValueError(f"landmarks must be (5, 2) or (N, 5, 2), got {pts.shape}")
    return pts


def part_points(landmarks) -> dict[str, np.ndarray]:
    """The points of :data:`REGIONS` as ``{name: (N, 2) array of (x, y)}``.

    ``eye`` is the left eye; ``nose`` the nose tip; ``mouth`` the middle of the mouth corners;
    ``cheek`` the left cheek, midway between the left eye and the left mouth corner and moved
    outwards by 0.35 of the distance between the eyes; ``forehead/hair`` lies above the face:
    from the midpoint of the eyes, 1.2 times the eye-mouth distance further along the
    mouth-to-eyes direction (so it turns with a tilted face). ``N = 1`` for a ``(5, 2)`` input.
    """
    pts = _as_faces(landmarks)
    left_eye, right_eye, nose, mouth_l, mouth_r = (pts[:, i] for i in range(5))
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_l + mouth_r) / 2
    return {
        "eye": left_eye,
        "nose": nose,
        "mouth": mouth,
        "cheek": (left_eye + mouth_l) / 2 - 0.35 * (right_eye - left_eye),
        "forehead/hair": eyes + 1.2 * (eyes - mouth),
    }


def crop_landmarks(
    crop: np.ndarray, detector: str = "mtcnn", pad: int = 64
) -> tuple[np.ndarray, bool]:
    """The five landmarks (x, y) of the face that fills a crop, and whether they were found.

    A detector rarely finds a face that fills the whole image, so the crop is reflect-padded by
    ``pad`` pixels first and only a face centred within 32 px of the middle counts. When none is
    found, :data:`~ctcnet.faces.CANONICAL_LANDMARKS` (scaled to the crop's side) is returned
    with ``False``.
    """
    crop = np.asarray(crop)
    padded = np.pad(crop, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    centre = padded.shape[0] / 2
    found = [
        f
        for f in detect_faces(padded, detector)
        if f.landmarks is not None
        and abs(f.box[0] + f.box[2] / 2 - centre) < 32
        and abs(f.box[1] + f.box[3] / 2 - centre) < 32
    ]
    if found:
        return found[0].landmarks - pad, True
    return CANONICAL_LANDMARKS * (crop.shape[0] / 128), False


def landmark_window(
    landmarks: np.ndarray, part: str, size: int = 16, side: int = 128
) -> tuple[int, int, int]:
    """A ``(top, left, size)`` window centred on ``part`` of one face, kept inside a ``side``
    image. ``part`` is one of :data:`REGIONS` (``"eye"`` is the left eye as seen in the image)."""
    if part not in REGIONS:
        raise ValueError(f"part must be one of {sorted(REGIONS)}, not {part!r}")
    x, y = part_points(landmarks)[part][0]
    top = int(np.clip(round(y - size / 2), 0, side - size))
    left = int(np.clip(round(x - size / 2), 0, side - size))
    return top, left, size


def region_pixels(landmarks, size: int = 128, margin: int = 30) -> dict[str, np.ndarray]:
    """The output pixel of each point of :func:`part_points`, as ``(row, col)``.

    Parameters
    ----------
    landmarks : array (5, 2) or (N, 5, 2)
        Five ``(x, y)`` landmarks per face.
    size : int, default 128
        Side of the square image.
    margin : int, default 30
        Every pixel is clamped to ``[margin, size - 1 - margin]`` on both axes, so that a square
        of radius ``margin`` around it lies inside the image (see ``ERFMaps.radii(window=...)``);
        the clamping brings ``forehead/hair`` back onto the upper forehead or the hairline when
        the face fills the image.

    Returns
    -------
    dict
        ``{region: (N, 2) int array of (row, col)}`` for the regions of :data:`REGIONS`.
    """
    if not 0 <= margin < size / 2:
        raise ValueError(f"margin must be in [0, {size / 2}), got {margin}")
    lo, hi = margin, size - 1 - margin
    points = part_points(landmarks)
    return {name: np.clip(np.round(p[:, ::-1]), lo, hi).astype(np.int64) for name, p in points.items()}


def landmark_mask(
    landmarks: np.ndarray | torch.Tensor,
    size: int = 128,
    radius: float = 10.0,
    shape: str = "disc",
) -> torch.Tensor:
    """Boolean masks of the pixels within ``radius`` of any landmark.

    Parameters
    ----------
    landmarks : array (K, 2) or (N, K, 2)
        ``(x, y)`` pixel positions (e.g. the five points of :func:`crop_landmarks`).
    size : int
        Side of the square image.
    radius : float
        Disc radius, or half the side of a square, in pixels.
    shape : {"disc", "square"}
        Euclidean discs or axis-aligned squares (``|dx| <= radius and |dy| <= radius``).

    Returns
    -------
    tensor (N, size, size) of bool
        True inside any disc (``N = 1`` for a ``(K, 2)`` input).
    """
    if shape not in ("disc", "square"):
        raise ValueError(f"shape must be 'disc' or 'square', not {shape!r}")
    pts = torch.as_tensor(np.asarray(landmarks), dtype=torch.float64)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"landmarks must be (K, 2) or (N, K, 2), got {tuple(pts.shape)}")
    coords = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    dx = xx[None, None] - pts[..., 0, None, None]
    dy = yy[None, None] - pts[..., 1, None, None]
    if shape == "disc":
        inside = dx**2 + dy**2 <= radius**2
    else:
        inside = (dx.abs() <= radius) & (dy.abs() <= radius)
    return inside.any(dim=1)


def face_box(landmarks, side: int | None = None) -> np.ndarray:
    """The box ``(x0, y0, x1, y1)`` that holds the facial features of each face.

    Horizontally the outermost landmarks plus half the eye distance on each side; vertically from
    0.8 of the eye-mouth distance above the eyes (the brows and lower forehead) to 0.5 of it below
    the mouth (the chin). With ``side`` the box is clipped to a ``side`` image. Returns ``(4,)``
    for a ``(5, 2)`` input and ``(N, 4)`` for ``(N, 5, 2)``.
    """
    single = np.asarray(landmarks).ndim == 2
    pts = _as_faces(landmarks)
    eyes, mouth = pts[:, :2].mean(axis=1), pts[:, 3:].mean(axis=1)
    eye_distance = np.linalg.norm(pts[:, 1] - pts[:, 0], axis=1)
    drop = np.linalg.norm(mouth - eyes, axis=1)
    box = np.stack(
        [
            pts[:, :, 0].min(axis=1) - 0.5 * eye_distance,
            eyes[:, 1] - 0.8 * drop,
            pts[:, :, 0].max(axis=1) + 0.5 * eye_distance,
            mouth[:, 1] + 0.5 * drop,
        ],
        axis=1,
    )
    if side is not None:
        box = np.clip(box, 0, side - 1)
    return box[0] if single else box
