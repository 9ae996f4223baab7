"""Tests for ctcnet.data.datasets (FaceSRDataset, CelebA crop, preparation, downloads)."""

from __future__ import annotations

import http.server
import threading
import urllib.error
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet.data import datasets as D
from ctcnet.data.degradation import ImageReadError, degrade, to_tensor


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _fake_celeba(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _img(178, 218, seed=i).save(folder / f"{i + 1:06d}.jpg", quality=95)


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


# ---------------------------------------------------------------------------- CelebA crop
def test_celeba_face_crop():
    img = _img(178, 218, 5)
    out = D.celeba_face_crop(img)
    assert out.size == (128, 128)
    ref = img.crop((15, 40, 163, 188)).resize((128, 128), Image.BICUBIC)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    assert D.celeba_face_crop(img, 64).size == (64, 64)
    with pytest.raises(ValueError, match="178x218"):
        D.celeba_face_crop(_img(128, 128))


# ---------------------------------------------------------------------------- preparation
def test_prepare_celeba_sorted_split(tmp_path):
    _fake_celeba(tmp_path / "img_align_celeba", 7)
    s = D.prepare_dataset(
        "celeba",
        tmp_path / "out",
        tmp_path / "img_align_celeba",
        n_train=4,
        n_test=2,
        progress=False,
    )
    train = sorted(p.name for p in (tmp_path / "out/celeba/train").iterdir())
    test = sorted(p.name for p in (tmp_path / "out/celeba/test").iterdir())
    assert train == [f"{i:06d}.png" for i in range(1, 5)]
    assert test == ["000005.png", "000006.png"]
    assert s["split_used"] == "sorted names" and s["train"]["written"] == 4
    out = Image.open(tmp_path / "out/celeba/train/000001.png")
    assert out.size == (128, 128)
    src = Image.open(tmp_path / "img_align_celeba/000001.jpg").convert("RGB")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(D.celeba_face_crop(src)))
    assert (tmp_path / "out/celeba/manifest.json").exists()


def test_prepare_celeba_zip_with_partition(tmp_path):
    _fake_celeba(tmp_path / "raw", 6)
    zpath = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((tmp_path / "raw").iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
        zf.writestr(
            "list_eval_partition.txt",
            "".join(f"{i:06d}.jpg {v}\n" for i, v in enumerate([0, 2, 0, 1, 2, 0], start=1)),
        )
    s = D.prepare_dataset("celeba", tmp_path / "out", zpath, progress=False)
    assert s["split_used"] == "official partition"
    assert sorted(p.name for p in (tmp_path / "out/celeba/train").iterdir()) == [
        "000001.png",
        "000003.png",
        "000006.png",
    ]
    assert sorted(p.name for p in (tmp_path / "out/celeba/test").iterdir()) == [
        "000002.png",
        "000005.png",
    ]


def test_prepare_resumes_after_interruption(tmp_path, monkeypatch):
    _fake_celeba(tmp_path / "src", 5)
    real_save = D._atomic_save_png
    calls = {"n": 0}

    def flaky(img, dest):
        calls["n"] += 1
        if calls["n"] == 3:
            dest.with_name(f".{dest.name}.part").write_bytes(b"half")  # a torn temp file
            raise KeyboardInterrupt
        real_save(img, dest)

    monkeypatch.setattr(D, "_atomic_save_png", flaky)
    with pytest.raises(KeyboardInterrupt):
        D.prepare_dataset(
            "celeba", tmp_path / "out", tmp_path / "src", n_train=5, n_test=0, progress=False
        )
    done = sorted(p.name for p in (tmp_path / "out/celeba/train").glob("*.png"))
    assert done == ["000001.png", "000002.png"]  # no partial 000003.png
    monkeypatch.setattr(D, "_atomic_save_png", real_save)
    s = D.prepare_dataset(
        "celeba", tmp_path / "out", tmp_path / "src", n_train=5, n_test=0, progress=False
    )
    assert s["train"] == {"written": 3, "skipped": 2, "failed": 0, "total": 5}
    for p in (tmp_path / "out/celeba/train").glob("*.png"):
        assert Image.open(p).size == (128, 128)


def test_prepare_skips_corrupt_inputs(tmp_path):
    _fake_celeba(tmp_path / "src", 3)
    (tmp_path / "src" / "000002.jpg").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="000002.jpg"):
        s = D.prepare_dataset(
            "celeba", tmp_path / "out", tmp_path / "src", n_train=3, n_test=0, progress=False
        )
    assert s["train"]["failed"] == 1 and len(s["failed_inputs"]) == 1


def test_prepare_ffhq_and_helen_rules(tmp_path):
    src = tmp_path / "thumbnails128x128"
    src.mkdir()
    for i in range(5):
        _img(128, 128, i).save(src / f"{69997 + i - 2:05d}.png")
    s = D.prepare_dataset("ffhq-thumbnails", tmp_path / "out", src, n_test=2, progress=False)
    assert s["train"]["total"] == 3 and s["test"]["total"] == 2
    assert sorted(p.name for p in (tmp_path / "out/ffhq-thumbnails/test").iterdir()) == [
        "69998.png",
        "69999.png",
    ]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out/ffhq-thumbnails/train/69995.png")),
        np.asarray(Image.open(src / "69995.png")),
    )
    helen = tmp_path / "helen_src"
    for part, n in (("helen_1", 2), ("helen_5", 1)):
        (helen / part).mkdir(parents=True)
        for i in range(n):
            _img(300, 400, i).save(helen / part / f"{part}_{i}.jpg")
    s = D.prepare_dataset("helen", tmp_path / "out", helen, progress=False)
    assert s["train"]["total"] == 2 and s["test"]["total"] == 1
    assert Image.open(tmp_path / "out/helen/test/helen_5_0.png").size == (128, 128)


def test_prepare_errors_offline_and_manual(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset"):
        D.prepare_dataset("lfw", tmp_path)
    with pytest.raises(D.DatasetUnavailableError, match="offline-faces"):
        D.prepare_dataset("ffhq-thumbnails", tmp_path, progress=False)

    def no_net(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(D.urllib.request, "urlopen", no_net)
    with pytest.raises(D.DatasetUnavailableError) as info:
        D.prepare_dataset("helen", tmp_path, progress=False)
    msg = str(info.value)
    assert "offline" in msg and "www.ifp.illinois.edu" in msg and "\n" not in msg
    assert "offline-faces" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        D.prepare_dataset("celeba", tmp_path / "o", tmp_path / "empty", progress=False)


# ---------------------------------------------------------------------------- download
class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = bytes(range(256)) * 40
    seen_ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server API)
        rng = self.headers.get("Range")
        self.seen_ranges.append(rng)
        body, status = self.payload, 200
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            body, status = self.payload[start:], 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_resumes_with_range(tmp_path):
    import hashlib

    server = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/file.bin"
        payload = _RangeHandler.payload
        dest = tmp_path / "file.bin"
        (tmp_path / "file.bin.part").write_bytes(payload[:1000])  # interrupted earlier
        md5 = hashlib.md5(payload).hexdigest()
        D.download_file(url, dest, md5, progress=False)
        assert dest.read_bytes() == payload and not (tmp_path / "file.bin.part").exists()
        assert _RangeHandler.seen_ranges[-1] == "bytes=1000-"
        with pytest.raises(D.ChecksumError, match="MD5"):
            D.download_file(url, tmp_path / "other.bin", "0" * 32, progress=False)
        assert not (tmp_path / "other.bin").exists()
    finally:
        server.shutdown()
        server.server_close()
