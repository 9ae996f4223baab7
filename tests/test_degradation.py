"""Tests for ctcnet.data.degradation and ctcnet.pixels (degradation, tensors, loading, augmentation)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet.data.degradation import ReferenceAugment, degrade
from ctcnet.data.imageio import load_rgb
from ctcnet.errors import ImageReadError
from ctcnet.pixels import to_tensor, to_uint8


def _rand_img(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_degrade_equals_direct_pil_calls():
    hr = _rand_img(128, 64)
    small, up = degrade(hr)
    ref_small = hr.resize((16, 8), Image.BICUBIC)
    ref_up = ref_small.resize((128, 64), Image.BICUBIC)
    assert small.size == (16, 8) and up.size == (128, 64)
    np.testing.assert_array_equal(np.asarray(small), np.asarray(ref_small))
    np.testing.assert_array_equal(np.asarray(up), np.asarray(ref_up))
    # and it is not a no-op / not nearest-neighbour
    assert not np.array_equal(np.asarray(up), np.asarray(hr))


def test_degrade_scale_4_and_errors():
    hr = _rand_img(32, 32)
    small, up = degrade(hr, scale=4)
    assert small.size == (8, 8) and up.size == (32, 32)
    with pytest.raises(ValueError, match="not divisible by scale 8"):
        degrade(_rand_img(130, 128))
    with pytest.raises(ValueError, match="positive integer"):
        degrade(hr, scale=0)


def test_to_tensor_values():
    arr = np.array([[[0, 128, 255]]], dtype=np.uint8)
    t = to_tensor(arr)
    assert t.shape == (3, 1, 1) and t.dtype == torch.float32
    expected = (np.array([0, 128, 255], dtype=np.float32) / np.float32(255) - 0.5) / 0.5
    np.testing.assert_array_equal(t[:, 0, 0].numpy(), expected)
    assert t.min() == -1 and t.max() == 1
    # PIL input gives the same tensor
    assert torch.equal(to_tensor(Image.fromarray(arr)), t)
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(arr.astype(np.float32))


def test_to_uint8_truncates_exact_values():
    vals = torch.tensor([-1.0, 1.0, 0.0, 0.999, 2.0, -3.0, 0.5])
    t = vals.view(1, 1, -1).expand(3, 1, 7).contiguous()
    out = to_uint8(t)
    assert out.shape == (1, 7, 3) and out.dtype == np.uint8
    # (v+1)/2*255 = 0, 255, 127.5, 254.87, 382.5, -255, 191.25 -> clip -> truncate
    assert out[0, :, 0].tolist() == [0, 255, 127, 254, 255, 0, 191]
    # rounding would give 128 and 255 for the 3rd/4th values: truncation is what we do
    assert out[0, 3, 0] != round((0.999 + 1) / 2 * 255)


def test_to_uint8_batch_and_layout():
    rng = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 4, 5, generator=rng) * 2 - 1
    out = to_uint8(t)
    assert out.shape == (2, 4, 5, 3)
    manual = np.floor(np.clip((t.numpy().astype(np.float64) + 1) / 2 * 255, 0, 255))
    diff = np.abs(out.astype(np.float64) - manual.transpose(0, 2, 3, 1))
    assert diff.max() <= 1  # float32 vs float64 only matters at exact integer boundaries
    assert (diff == 0).mean() > 0.99
    with pytest.raises(ValueError, match="CHW or NCHW"):
        to_uint8(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="floating"):
        to_uint8(torch.zeros(3, 4, 5, dtype=torch.uint8))


def test_course_figures_show_the_pixels_the_metrics_score():
    """The course's to_uint8 (figures) is the library's truncating conversion, not a rounding one."""
    plotting = pytest.importorskip("ctcnet.course.plotting")  # needs matplotlib (analysis extra)
    t = torch.rand(1, 3, 5, 6, generator=torch.Generator().manual_seed(1)) * 2 - 1
    np.testing.assert_array_equal(plotting.to_uint8(t), to_uint8(t)[0])
    hwc = t[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(plotting.to_uint8(hwc), to_uint8(t[0]))
    assert plotting.to_uint8(torch.full((3, 1, 1), 0.999))[0, 0, 0] == 254  # rounding gives 255
    u8 = np.zeros((2, 2, 3), dtype=np.uint8)
    assert plotting.to_uint8(u8) is u8


def test_round_trip_loses_at_most_one():
    arr = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    back = to_uint8(to_tensor(arr))
    d = arr.astype(int) - back.astype(int)
    assert set(np.unique(d)) <= {0, 1}


# ---------------------------------------------------------------------------- loading
def test_load_grey_palette_rgb(tmp_path):
    grey = Image.fromarray(np.full((6, 5), 77, dtype=np.uint8), mode="L")
    grey.save(tmp_path / "g.png")
    img = load_rgb(tmp_path / "g.png")
    assert img.mode == "RGB" and img.size == (5, 6)
    assert np.all(np.asarray(img) == 77)
    pal = _rand_img(8, 8).convert("P")
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        np.asarray(load_rgb(tmp_path / "p.png")), np.asarray(pal.convert("RGB"))
    )


def test_load_rgba_composites_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = [10, 20, 30, 0]  # fully transparent -> white
    arr[0, 1] = [10, 20, 30, 255]  # opaque -> itself
    arr[1, 0] = [0, 0, 0, 128]  # half black on white -> ~127
    arr[1, 1] = [200, 100, 50, 255]
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_rgb(tmp_path / "a.png")).astype(int)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [10, 20, 30]
    assert np.all(np.abs(out[1, 0] - 255 * (1 - 128 / 255)) <= 1)
    assert out[1, 1].tolist() == [200, 100, 50]


def test_load_16bit_scaled(tmp_path):
    arr = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "d16.png")
    assert Image.open(tmp_path / "d16.png").mode in ("I;16", "I")
    out = np.asarray(load_rgb(tmp_path / "d16.png"))
    assert out.shape == (1, 4, 3)
    expected = np.round(arr / 65535 * 255).astype(np.uint8)  # 0, 1, 128, 255
    np.testing.assert_array_equal(out[..., 0], expected)
    assert expected.tolist() == [[0, 1, 128, 255]]


def test_load_exif_orientation(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = 255  # left half white
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    img.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = load_rgb(tmp_path / "r.jpg")
    assert out.size == (10, 20)  # width and height swapped
    o = np.asarray(out).astype(int)
    assert o[:10].mean() > 200 and o[10:].mean() < 50  # white half is now on top


@pytest.mark.parametrize("kind", ["missing", "text", "truncated"])
def test_load_errors_name_the_file(tmp_path, kind):
    path = tmp_path / f"bad_{kind}.png"
    if kind == "text":
        path.write_text("not an image")
    elif kind == "truncated":
        _rand_img(64, 64).save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        load_rgb(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------- augmentation
def test_augment_reproducible_and_sized():
    img = _rand_img(128, 128, seed=3)
    aug = ReferenceAugment()
    a = [np.asarray(aug(img, random.Random(7))) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    outs = [np.asarray(aug(img, random.Random(s))) for s in range(10)]
    assert all(o.shape == (128, 128, 3) for o in outs)
    assert len({o.tobytes() for o in outs}) > 5  # different seeds -> different crops
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    np.testing.assert_array_equal(np.asarray(aug(img, g1)), np.asarray(aug(img, g2)))


def test_augment_flip_only_and_disabled():
    img = _rand_img(128, 128, seed=4)
    flip = ReferenceAugment(p_flip=1.0, scale_range=(1.0, 1.0))  # int(128*1.0) == 128: no crop
    np.testing.assert_array_equal(np.asarray(flip(img)), np.asarray(img)[:, ::-1])
    off = ReferenceAugment(enabled=False)
    assert off(img) is img
    with pytest.raises(ValueError, match="128x128"):
        ReferenceAugment()(_rand_img(64, 64))


def test_augment_crop_box_statistics():
    aug = ReferenceAugment()
    rng = random.Random(0)
    for _ in range(200):
        left, top, right, bottom = aug.crop_box(128, 128, rng)
        w, h = right - left, bottom - top
        assert 0 <= left and 0 <= top and right <= 128 and bottom <= 128
        assert 0.65 * 128 * 128 <= w * h <= 128 * 128
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05
