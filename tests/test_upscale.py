"""Tests for ctcnet.upscale: face detection, crops at the border, odd input formats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet import build_model
from ctcnet.upscale import crop_reflect, detect_faces, square_box, upscale_photo

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("tiny").eval()


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage_data.astronaut())  # 512x512, one face near (177, 66)


def _check_outputs(result, out, stem, size):
    assert result.ok, result.problems
    assert len(result.faces) >= 1
    names = {p.name for p in result.outputs}
    assert {f"{stem}_face0_sr.png", f"{stem}_face0_compare.png", f"{stem}_sr_faces.png"} <= names
    assert Image.open(out / f"{stem}_face0_sr.png").size == (128, 128)
    assert Image.open(out / f"{stem}_face0_compare.png").size[0] == 4 * 128
    assert Image.open(out / f"{stem}_sr_faces.png").size == size
    assert not list(out.glob(".*tmp"))


def test_haar_finds_the_astronaut(astronaut):
    faces = detect_faces(astronaut)
    assert len(faces) == 1
    x, y, w, h = faces[0]
    assert 150 < x + w / 2 < 260 and 70 < y + h / 2 < 160


@pytest.mark.parametrize("kind", ["rgb", "grey", "rgba", "grey16", "exif"])
def test_upscale_formats(kind, astronaut, model, tmp_path):
    astronaut = astronaut.resize((256, 256), Image.BICUBIC)  # faster detection, face ~53 px
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


def test_face_at_the_border_is_reflect_padded(astronaut, model, tmp_path):
    # cut the photo so the face touches the left border: the enlarged crop leaves the image
    cut = astronaut.crop((160, 30, 512, 400))
    cut.save(tmp_path / "edge.png")
    result = upscale_photo(tmp_path / "edge.png", model, tmp_path / "out")
    _check_outputs(result, tmp_path / "out", "edge", cut.size)
    assert len(result.faces) == 1
    left, top, side = result.faces[0].box
    assert left < 0 < left + side  # the crop reaches past the left border


def test_crop_reflect_and_square_box():
    img = Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10)).convert("RGB")
    crop = np.asarray(crop_reflect(img, (-2, -2, 6)))[..., 0]
    src = np.arange(100).reshape(10, 10)
    assert crop.shape == (6, 6)
    assert crop[2, 2] == src[0, 0] and crop[0, 0] == src[2, 2]  # reflection, not edge copy
    assert square_box((10, 20, 50, 50), 1.6) == (-5, 5, 80)


def test_tiny_image_is_upscaled_directly(model, tmp_path):
    face = skimage_data.astronaut()[66:162, 177:273]
    Image.fromarray(face).resize((24, 24), Image.BICUBIC).save(tmp_path / "tiny.png")
    result = upscale_photo(tmp_path / "tiny.png", model, tmp_path / "out")
    assert result.ok and len(result.faces) == 1
    assert Image.open(tmp_path / "out" / "tiny_face0_sr.png").size == (128, 128)
    assert not (tmp_path / "out" / "tiny_sr_faces.png").exists()


def test_no_face_and_bad_file_are_problems(model, tmp_path):
    Image.new("RGB", (200, 160), (120, 130, 140)).save(tmp_path / "wall.png")
    (tmp_path / "text.png").write_text("hello")
    for name, message in (("wall.png", "no face found"), ("text.png", "cannot read image")):
        result = upscale_photo(tmp_path / name, model, tmp_path / "out")
        assert not result.ok and not result.outputs
        assert len(result.problems) == 1 and message in result.problems[0]
    assert not (tmp_path / "out").exists()
