"""Tests for ctcnet.data.prepare: CelebA (official and Kaggle layouts), FFHQ, Helen, downloads."""

from __future__ import annotations

import sys
import urllib.error
import zipfile

import numpy as np
import pytest
from PIL import Image

from ctcnet.cli import main
from ctcnet.data import prepare as P
from ctcnet.errors import DataFolderError, DatasetUnavailableError, DataSourceError


def _img(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _fake_celeba(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        _img(178, 218, seed=i).save(folder / f"{i + 1:06d}.jpg", quality=95)


# Partition of the 6-image stand-ins: 0 = train, 1 = validation (unused), 2 = test.
_PARTS = [0, 2, 0, 1, 2, 0]
_TRAIN, _TEST = ["000001.png", "000003.png", "000006.png"], ["000002.png", "000005.png"]


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _kaggle_standin(folder):
    """The layout of Kaggle's jessicali9530/celeba-dataset (what kagglehub unpacks)."""
    _fake_celeba(folder / "img_align_celeba" / "img_align_celeba", len(_PARTS))
    rows = "".join(f"{i:06d}.jpg,{v}\n" for i, v in enumerate(_PARTS, start=1))
    (folder / "list_eval_partition.csv").write_text("image_id,partition\n" + rows)
    (folder / "list_attr_celeba.csv").write_text("image_id,Smiling\n000001.jpg,1\n")
    return folder


# ---------------------------------------------------------------------------- CelebA crop
def test_celeba_face_crop():
    img = _img(178, 218, 5)
    out = P.celeba_face_crop(img)
    assert out.size == (128, 128)
    ref = img.crop((15, 40, 163, 188)).resize((128, 128), Image.BICUBIC)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(ref))
    assert P.celeba_face_crop(img, 64).size == (64, 64)
    with pytest.raises(ValueError, match="178x218"):
        P.celeba_face_crop(_img(128, 128))


# ---------------------------------------------------------------------------- CelebA layouts
def test_prepare_celeba_sorted_split(tmp_path):
    _fake_celeba(tmp_path / "img_align_celeba", 7)
    s = P.prepare_dataset(
        "celeba", tmp_path / "out", tmp_path / "img_align_celeba", n_train=4, n_test=2,
        progress=False,
    )
    assert _names(tmp_path / "out/celeba/train") == [f"{i:06d}.png" for i in range(1, 5)]
    assert _names(tmp_path / "out/celeba/test") == ["000005.png", "000006.png"]
    assert s["split_used"] == "sorted names" and s["train"]["written"] == 4
    out = Image.open(tmp_path / "out/celeba/train/000001.png")
    src = Image.open(tmp_path / "img_align_celeba/000001.jpg").convert("RGB")
    np.testing.assert_array_equal(np.asarray(out), np.asarray(P.celeba_face_crop(src)))
    assert (tmp_path / "out/celeba/manifest.json").exists()


def test_prepare_celeba_official_zip_with_partition_txt(tmp_path):
    _fake_celeba(tmp_path / "raw", len(_PARTS))
    zpath = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((tmp_path / "raw").iterdir()):
            zf.write(p, f"img_align_celeba/{p.name}")
        zf.writestr(
            "list_eval_partition.txt",
            "".join(f"{i:06d}.jpg {v}\n" for i, v in enumerate(_PARTS, start=1)),
        )
    s = P.prepare_dataset("celeba", tmp_path / "out", zpath, progress=False)
    assert s["split_used"] == "official partition"
    assert _names(tmp_path / "out/celeba/train") == _TRAIN
    assert _names(tmp_path / "out/celeba/test") == _TEST


def test_prepare_celeba_kaggle_folder_uses_partition_csv(tmp_path):
    source = _kaggle_standin(tmp_path / "celeba-dataset")
    s = P.prepare_dataset("celeba", tmp_path / "out", source, progress=False)
    assert s["split_used"] == "official partition"
    assert _names(tmp_path / "out/celeba/train") == _TRAIN
    assert _names(tmp_path / "out/celeba/test") == _TEST
    got = np.asarray(Image.open(tmp_path / "out/celeba/test/000005.png"))
    src = Image.open(source / "img_align_celeba/img_align_celeba/000005.jpg").convert("RGB")
    np.testing.assert_array_equal(got, np.asarray(P.celeba_face_crop(src)))


def test_prepare_celeba_kaggle_zip(tmp_path):
    source = _kaggle_standin(tmp_path / "unpacked")
    zpath = tmp_path / "archive.zip"  # the name Kaggle's "Download" button gives
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(source.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(source).as_posix())
    s = P.prepare_dataset("celeba", tmp_path / "out", zpath, progress=False)
    assert s["split_used"] == "official partition"
    assert _names(tmp_path / "out/celeba/train") == _TRAIN


def test_prepare_celeba_image_folder_next_to_partition_txt(tmp_path):
    _fake_celeba(tmp_path / "src" / "img_align_celeba", len(_PARTS))
    (tmp_path / "src" / "Eval").mkdir()
    (tmp_path / "src" / "Eval" / "list_eval_partition.txt").write_text(
        "".join(f"{i:06d}.jpg {v}\n" for i, v in enumerate(_PARTS, start=1))
    )
    P.prepare_dataset("celeba", tmp_path / "out", tmp_path / "src", progress=False)
    assert _names(tmp_path / "out/celeba/test") == _TEST


def test_prepare_refuses_malformed_partition_file(tmp_path):
    source = _kaggle_standin(tmp_path / "k")
    (source / "list_eval_partition.csv").write_text("image_id,partition\n000001.jpg,train\n")
    with pytest.raises(ValueError, match="line 2 is malformed"):
        P.prepare_dataset("celeba", tmp_path / "out", source, progress=False)


# ---------------------------------------------------------------------------- downloads
def test_prepare_celeba_downloads_from_kaggle_without_source(tmp_path, monkeypatch):
    standin = _kaggle_standin(tmp_path / "kagglehub-cache")
    asked = []

    def fake_download(handle):
        asked.append(handle)
        return standin

    monkeypatch.setattr(P, "_download_from_kaggle", fake_download)
    s = P.prepare_dataset("celeba", tmp_path / "out", progress=False)
    assert asked == ["jessicali9530/celeba-dataset"]
    assert s["source"] == str(standin) and s["train"]["written"] == 3


def test_prepare_celeba_without_kagglehub_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kagglehub", None)  # import kagglehub -> ImportError
    with pytest.raises(DatasetUnavailableError) as info:
        P.prepare_dataset("celeba", tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "pip install kagglehub" in msg and "--source" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists()  # a failed attempt leaves nothing behind


def test_prepare_celeba_kaggle_offline_is_one_line(tmp_path, monkeypatch):
    class OfflineKaggle:
        @staticmethod
        def dataset_download(handle):
            raise ConnectionError("Max retries exceeded with url: /api/v1/datasets\n(details)")

    monkeypatch.setitem(sys.modules, "kagglehub", OfflineKaggle)
    with pytest.raises(DatasetUnavailableError) as info:
        P.prepare_dataset("celeba", tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "Max retries exceeded" in msg and "--source" in msg and "\n" not in msg


def test_prepare_errors_offline_and_manual(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown dataset"):
        P.prepare_dataset("lfw", tmp_path)
    with pytest.raises(DatasetUnavailableError, match="offline-faces"):
        P.prepare_dataset("ffhq-thumbnails", tmp_path, progress=False)

    def no_net(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("ctcnet.data.fetch.urllib.request.urlopen", no_net)
    with pytest.raises(DatasetUnavailableError) as info:
        P.prepare_dataset("helen", tmp_path, progress=False)
    msg = str(info.value)
    assert "offline" in msg and "www.ifp.illinois.edu" in msg and "\n" not in msg
    assert "offline-faces" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        P.prepare_dataset("celeba", tmp_path / "o", tmp_path / "empty", progress=False)
    with pytest.raises(DatasetUnavailableError, match="downloading is off"):
        P.prepare_dataset("celeba", tmp_path / "o2", download=False, progress=False)


def test_prepare_refuses_unwritable_root_naming_it(tmp_path, monkeypatch):
    _fake_celeba(tmp_path / "src", 2)
    locked = tmp_path / "locked"
    locked.mkdir()
    # the tests may run as root, for whom chmod locks nothing: answer "not writable" instead
    monkeypatch.setattr("ctcnet.data.fetch.os.access", lambda path, mode: False)
    with pytest.raises(DataFolderError) as info:
        P.prepare_dataset("celeba", locked, tmp_path / "src", progress=False)
    assert str(locked / "celeba") in str(info.value) and "Errno" not in str(info.value)
    assert not list(locked.rglob("*.png"))


# ---------------------------------------------------------------------------- resume, bad input
def test_prepare_resumes_after_interruption(tmp_path, monkeypatch):
    _fake_celeba(tmp_path / "src", 5)
    real_save = P.save_png
    calls = {"n": 0}

    def flaky(img, dest, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_save(img, dest, *args, **kwargs)

    monkeypatch.setattr(P, "save_png", flaky)
    with pytest.raises(KeyboardInterrupt):
        P.prepare_dataset(
            "celeba", tmp_path / "out", tmp_path / "src", n_train=5, n_test=0, progress=False
        )
    assert _names(tmp_path / "out/celeba/train") == ["000001.png", "000002.png"]
    monkeypatch.setattr(P, "save_png", real_save)
    s = P.prepare_dataset(
        "celeba", tmp_path / "out", tmp_path / "src", n_train=5, n_test=0, progress=False
    )
    assert s["train"] == {"written": 3, "skipped": 2, "failed": 0, "total": 5}
    for p in (tmp_path / "out/celeba/train").glob("*.png"):
        assert Image.open(p).size == (128, 128)


def test_prepare_skips_corrupt_inputs(tmp_path):
    _fake_celeba(tmp_path / "src", 3)
    (tmp_path / "src" / "000002.jpg").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="000002.jpg"):
        s = P.prepare_dataset(
            "celeba", tmp_path / "out", tmp_path / "src", n_train=3, n_test=0, progress=False
        )
    assert s["train"]["failed"] == 1 and len(s["failed_inputs"]) == 1


def test_prepare_ffhq_and_helen_rules(tmp_path):
    src = tmp_path / "thumbnails128x128"
    src.mkdir()
    for i in range(5):
        _img(128, 128, i).save(src / f"{69997 + i - 2:05d}.png")
    s = P.prepare_dataset("ffhq-thumbnails", tmp_path / "out", src, n_test=2, progress=False)
    assert s["train"]["total"] == 3 and s["test"]["total"] == 2
    assert _names(tmp_path / "out/ffhq-thumbnails/test") == ["69998.png", "69999.png"]
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out/ffhq-thumbnails/train/69995.png")),
        np.asarray(Image.open(src / "69995.png")),
    )
    helen = tmp_path / "helen_src"
    for part, n in (("helen_1", 2), ("helen_5", 1)):
        (helen / part).mkdir(parents=True)
        for i in range(n):
            _img(300, 400, i).save(helen / part / f"{part}_{i}.jpg")
    s = P.prepare_dataset("helen", tmp_path / "out", helen, progress=False)
    assert s["train"]["total"] == 2 and s["test"]["total"] == 1
    assert Image.open(tmp_path / "out/helen/test/helen_5_0.png").size == (128, 128)


def test_dataset_info_names_the_kaggle_copy_of_celeba():
    info = P.dataset_info("celeba")
    assert info["kaggle"] == "jessicali9530/celeba-dataset"
    assert "drive.google" not in str(info) and "kaggle" in info["manual"]


def test_cli_prepare_celeba_from_kaggle_folder_prints_counts_per_split(tmp_path, capsys):
    source = _kaggle_standin(tmp_path / "celeba-dataset")
    args = ["data", "prepare", "celeba", "--root", str(tmp_path / "out"), "--source", str(source)]
    assert main([*args, "--n-test", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"prepared celeba in {tmp_path / 'out' / 'celeba'} (official partition)"
    assert out[1:] == [
        "  train: 3 written, 0 already there, 0 unreadable, of 3",
        "  test : 1 written, 0 already there, 0 unreadable, of 1",
    ]
    assert main(args) == 0  # the rest of the test split; the finished crops are kept
    assert capsys.readouterr().out.splitlines()[2] == (
        "  test : 1 written, 1 already there, 0 unreadable, of 2"
    )


def test_prepare_celeba_from_a_source_that_is_not_celeba_fails_in_one_line(tmp_path, capsys):
    faces = tmp_path / "faces"  # already-cropped 128x128 faces, e.g. the offline set
    faces.mkdir()
    for i in range(21):
        _img(128, 128, seed=i).save(faces / f"face_{i:02d}.png")
    code = main(["data", "prepare", "celeba", "--source", str(faces), "--root",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: "), err
    assert "not CelebA" in err and "178x218" in err and str(faces) in err
    assert not list((tmp_path / "out").rglob("*.png"))


def test_prepare_that_writes_nothing_usable_fails(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(b"not an image")
    (tmp_path / "src" / "b.png").write_bytes(b"not one either")
    with pytest.warns(UserWarning, match="skipping"), pytest.raises(
        DataSourceError, match="none of the 2 images .*a.png"
    ):
        P.prepare_dataset("helen", tmp_path / "out", tmp_path / "src", progress=False)
