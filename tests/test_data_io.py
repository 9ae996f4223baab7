"""Tests for the data layer's plumbing: fetch-and-verify, archives, decoding, crops, PNG writes."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import stat
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from ctcnet import errors as E
from ctcnet._atomic import atomic_write
from ctcnet.data.fetch import (
    ArchiveReader,
    download_url,
    ensure_writable_folder,
    file_digest,
    verify_bytes,
    verify_file,
)
from ctcnet.data.imageio import (
    crop_square,
    decode_image,
    is_complete_png,
    load_rgb,
    save_png,
    square_resize,
)


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------- errors
def test_every_error_is_under_the_one_root_and_keeps_its_builtin_base():
    assert issubclass(E.ImageReadError, ValueError)
    assert issubclass(E.DecompressionBombError, E.ImageReadError)
    assert issubclass(E.ChecksumError, ValueError)
    assert issubclass(E.DataFolderError, OSError)
    for cls in (E.DatasetUnavailableError, E.RegistryUnavailableError, E.WeightsUnavailableError):
        assert issubclass(cls, E.UnavailableError) and issubclass(cls, RuntimeError)
    for cls in (E.DatasetUnavailableError, E.RegistryUnavailableError, E.ImageReadError,
                E.ChecksumError, E.ArchiveError, E.ManifestError, E.DataSourceError):
        assert issubclass(cls, E.DataError)
    for name in E.__all__:
        if name != "one_line":
            assert issubclass(getattr(E, name), E.CTCNetError)
    from ctcnet import train

    assert train.TrainingError is E.TrainingError  # the training loop raises the root's class


def test_one_line_drops_errno_noise_and_extra_lines():
    assert E.one_line(OSError(28, "No space left on device", "/x/a.png")) == (
        "no space left on device: /x/a.png"
    )
    assert E.one_line(ValueError("first\nsecond")) == "first"
    assert E.one_line(KeyError()) == "KeyError"
    assert E.one_line(E.DataFolderError("cannot write to folder x")) == "cannot write to folder x"


# ---------------------------------------------------------------------------- digests
def test_verify_file_and_bytes_name_what_mismatched(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello")
    assert file_digest(path) == hashlib.sha256(b"hello").hexdigest()
    assert file_digest(path, "md5") == hashlib.md5(b"hello").hexdigest()
    assert verify_file(path, hashlib.sha256(b"hello").hexdigest().upper()) == path
    with pytest.raises(E.ChecksumError, match=r"sha256 mismatch for .*a\.bin"):
        verify_file(path, "0" * 64)
    assert path.exists()  # kept unless asked
    with pytest.raises(E.ChecksumError, match="removed"):
        verify_file(path, "0" * 32, "md5", remove_bad=True)
    assert not path.exists()
    with pytest.raises(E.ChecksumError, match="member x.png"):
        verify_bytes(b"data", "f" * 64, what="member x.png")


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


@pytest.fixture()
def server():
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_download_resumes_with_range_and_verifies(tmp_path, server):
    payload = _RangeHandler.payload
    dest = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(payload[:1000])  # interrupted earlier
    download_url(f"{server}/file.bin", dest, hashlib.md5(payload).hexdigest(), "md5", progress=False)
    assert dest.read_bytes() == payload and not (tmp_path / "file.bin.part").exists()
    assert _RangeHandler.seen_ranges[-1] == "bytes=1000-"
    sha = hashlib.sha256(payload).hexdigest()
    assert download_url(f"{server}/file.bin", tmp_path / "b.bin", sha, progress=False).exists()


def test_download_with_wrong_digest_leaves_nothing(tmp_path, server):
    with pytest.raises(E.ChecksumError, match="sha256 mismatch"):
        download_url(f"{server}/file.bin", tmp_path / "other.bin", "0" * 64, progress=False)
    assert not list(tmp_path.iterdir())


class _QuotaPageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        body = b"<html><title>Google Drive - Quota exceeded</title></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_download_refuses_a_quota_web_page_instead_of_saving_it(tmp_path):
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _QuotaPageHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/img_align_celeba.zip"
        with pytest.raises(E.UnavailableError, match="web page instead of the file"):
            download_url(url, tmp_path / "a.zip", progress=False, expect_binary=True)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not list(tmp_path.iterdir())  # no HTML saved under a .zip name


def test_download_offline_is_one_line_with_the_hint(tmp_path):
    with pytest.raises(E.UnavailableError) as info:
        download_url("http://127.0.0.1:9/x.zip", tmp_path / "x.zip", progress=False, hint="do Y")
    msg = str(info.value)
    assert "offline" in msg and msg.endswith("do Y") and "\n" not in msg


# ---------------------------------------------------------------------------- archives
def test_archive_reader_reads_zip_and_tar_and_names_missing_members(tmp_path):
    zpath = tmp_path / "a.whl"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("pkg/x.txt", b"zip member")
        zf.writestr("pkg/dir/", b"")
    tpath = tmp_path / "b.tgz"
    with tarfile.open(tpath, "w:gz") as tf:
        info = tarfile.TarInfo("package/y.txt")
        info.size = 10
        tf.addfile(info, io.BytesIO(b"tar member"))
    with ArchiveReader(zpath) as reader:
        assert reader.names() == ["pkg/x.txt"] and reader.read("pkg/x.txt") == b"zip member"
        assert reader.label("pkg/x.txt") == "a.whl::pkg/x.txt"
        with pytest.raises(E.ArchiveError, match="member nope not found in a.whl"):
            reader.read("nope")
    with ArchiveReader(tpath) as reader:
        assert reader.names() == ["package/y.txt"] and reader.read("package/y.txt") == b"tar member"
    (tmp_path / "c.zip").write_bytes(b"neither")
    with pytest.raises(E.ArchiveError, match="neither a readable zip nor a tar"):
        ArchiveReader(tmp_path / "c.zip")


# ---------------------------------------------------------------------------- decoding
def test_decompression_bomb_is_named_not_called_corrupt(tmp_path, monkeypatch):
    _img(100, 100).save(tmp_path / "big.png")
    # PIL refuses images over twice MAX_IMAGE_PIXELS; a small limit makes a 100x100 PNG a "bomb"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(E.DecompressionBombError) as info:
        load_rgb(tmp_path / "big.png")
    msg = str(info.value)
    assert "decompression bomb" in msg and "corrupt" not in msg
    assert "big.png" in msg and "MAX_IMAGE_PIXELS" in msg and "\n" not in msg
    assert isinstance(info.value, E.ImageReadError)  # callers that skip bad images skip it too


def test_decode_image_names_the_member():
    with pytest.raises(E.ImageReadError, match=r"a\.zip::x\.png.*not a recognised image"):
        decode_image(b"not an image", "a.zip::x.png")


# ---------------------------------------------------------------------------- crops
def test_crop_square_reflects_where_the_box_leaves_the_image():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    out = np.asarray(crop_square(img, (-8, -5, 30)))  # same size out as in: no resampling
    padded = np.pad(arr, ((5, 0), (8, 0), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(out, padded[:30, :30])
    # mirrored, not black: row 0 of the crop is image row 5, column 0 is image column 8
    np.testing.assert_array_equal(out[0, 8:], arr[5, :22])
    np.testing.assert_array_equal(out[5:, 0], arr[:25, 8])
    out2 = np.asarray(crop_square(img, (35, 25, 30)))  # right/bottom overflow too
    padded2 = np.pad(arr, ((0, 15), (0, 15), (0, 0)), mode="reflect")
    np.testing.assert_array_equal(out2, padded2[25:55, 35:65])


def test_crop_square_inside_resizes_with_pil_bicubic_and_one_pixel_images_use_edges():
    img = _img(60, 50, 1)
    ref = img.crop((5, 4, 45, 44)).resize((16, 16), Image.Resampling.BICUBIC)
    np.testing.assert_array_equal(np.asarray(crop_square(img, (5, 4, 40), 16)), np.asarray(ref))
    line = Image.fromarray(np.full((1, 5, 3), 9, dtype=np.uint8))
    assert np.all(np.asarray(crop_square(line, (-2, -2, 4))) == 9)
    with pytest.raises(ValueError, match="positive"):
        crop_square(img, (0, 0, 0))


def test_square_resize_centre_crops():
    img = _img(200, 160, 2)
    ref = img.crop((20, 0, 180, 160)).resize((128, 128), Image.BICUBIC)
    np.testing.assert_array_equal(np.asarray(square_resize(img, 128)), np.asarray(ref))
    same = _img(128, 128)
    assert square_resize(same, 128) is same


# ---------------------------------------------------------------------------- writing
def test_save_png_is_complete_and_carries_its_fingerprint(tmp_path):
    path = save_png(_img(16, 16), tmp_path / "sub" / "a.png", {"key": "v1"})
    assert is_complete_png(path, 16, {"key": "v1"})
    assert not is_complete_png(path, 16, {"key": "v2"})  # stale: rebuilt
    assert not is_complete_png(path, 32)
    path.write_bytes(path.read_bytes()[:40])  # torn
    assert not is_complete_png(path, 16)
    assert not list((tmp_path / "sub").glob(".*.tmp"))
    arr = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    np.testing.assert_array_equal(np.asarray(Image.open(save_png(arr, tmp_path / "b.png"))), arr)


@pytest.fixture()
def umask():
    def set_mask(mask):
        previous = os.umask(mask)
        restore.append(previous)

    restore: list[int] = []
    yield set_mask
    for previous in reversed(restore):
        os.umask(previous)


def test_atomic_write_honours_the_umask(tmp_path, umask):
    umask(0o022)
    with atomic_write(tmp_path / "a.bin") as handle:
        handle.write(b"x")
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    umask(0o077)
    save_png(_img(4, 4), tmp_path / "b.png")
    assert stat.S_IMODE((tmp_path / "b.png").stat().st_mode) == 0o600


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "script.sh"
    target.write_text("old")
    target.chmod(0o750)
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o750


def test_ensure_writable_folder_names_the_folder(tmp_path, monkeypatch):
    assert ensure_writable_folder(tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(E.DataFolderError, match=r"file exists and is not a folder"):
        ensure_writable_folder(tmp_path / "file")
    with pytest.raises(E.DataFolderError, match=r"cannot create output folder .*file/sub"):
        ensure_writable_folder(tmp_path / "file" / "sub")
    monkeypatch.setattr("ctcnet.data.fetch.os.access", lambda path, mode: False)
    with pytest.raises(E.DataFolderError) as info:
        ensure_writable_folder(tmp_path / "a", "data root")
    assert str(info.value) == (
        f"cannot write to data root {tmp_path / 'a'}: permission denied (choose another folder)"
    )
