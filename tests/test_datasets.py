"""Tests for ctcnet.data.datasets (FaceSRDataset). Preparation: test_prepare.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet.data import datasets as D
from ctcnet.data.degradation import degrade
from ctcnet.errors import ImageReadError
from ctcnet.pixels import to_tensor


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------- dataset
def test_empty_and_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images .* found in folder .*empty"):
        D.FaceSRDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nope"):
        D.FaceSRDataset(tmp_path / "nope")
    with pytest.raises(ValueError, match="empty list"):
        D.FaceSRDataset([])
    with pytest.raises(ValueError, match="multiple of scale"):
        D.FaceSRDataset([tmp_path / "a.png"], hr_size=100)


def test_item_contents(tmp_path):
    (tmp_path / "sub").mkdir()
    _img(128, 128, 1).save(tmp_path / "a.png")
    _img(200, 160, 2).save(tmp_path / "sub" / "b.jpg")
    ds = D.FaceSRDataset(tmp_path)
    assert len(ds) == 2 and ds.names == ["a.png", "sub/b.jpg"]
    item = ds[0]
    assert item["lr"].shape == (3, 16, 16) and item["lr_up"].shape == (3, 128, 128)
    assert item["hr"].shape == (3, 128, 128) and item["name"] == "a.png"
    hr = Image.open(tmp_path / "a.png").convert("RGB")
    small, up = degrade(hr)
    assert torch.equal(item["hr"], to_tensor(hr))
    assert torch.equal(item["lr"], to_tensor(small))
    assert torch.equal(item["lr_up"], to_tensor(up))
    # non-square: centre square crop (160x160 at x=20) then bicubic to 128
    b = Image.open(tmp_path / "sub" / "b.jpg").convert("RGB")
    ref = b.crop((20, 0, 180, 160)).resize((128, 128), Image.BICUBIC)
    assert torch.equal(ds[1]["hr"], to_tensor(ref))
    for key in ("lr", "lr_up", "hr"):
        assert item[key].min() >= -1 and item[key].max() <= 1


def test_augment_seeded(tmp_path):
    for i in range(3):
        _img(128, 128, i).save(tmp_path / f"{i}.png")
    a = D.FaceSRDataset(tmp_path, augment=True, seed=1)
    b = D.FaceSRDataset(tmp_path, augment=True, seed=1)
    assert torch.equal(a[2]["hr"], b[2]["hr"])
    plain = D.FaceSRDataset(tmp_path)
    assert not torch.equal(a[2]["hr"], plain[2]["hr"])
    a.set_epoch(1)
    assert not torch.equal(a[2]["hr"], b[2]["hr"])
    flipped = D.FaceSRDataset(tmp_path, augment=lambda im: im.transpose(Image.FLIP_LEFT_RIGHT))
    assert torch.equal(flipped[0]["hr"], plain[0]["hr"].flip(-1))


def test_corrupt_file_and_validate(tmp_path):
    _img(128, 128).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = D.FaceSRDataset(tmp_path)
    with pytest.raises(ImageReadError, match="bad.png"):
        ds[0]  # sorted: bad.png first
    assert ds[1]["name"] == "good.png"
    bad = ds.validate()
    assert [p for p, _ in bad] == [str(tmp_path / "bad.png")]
