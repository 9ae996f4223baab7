"""Full mode of the book, offline: which model and faces the chapters analyse, the size cap,
the GPU appendix's plan and its CelebA stand-in (small local stand-ins, no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet.course import book
from ctcnet.data.prepare import prepare_dataset
from ctcnet.model import PRESETS


def _pngs(folder: Path, n: int, size: int = 128) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):  # smooth images, so that resampling changes them little
        img = np.stack([xx * 2 % 256, yy * 2 % 256, (xx + yy + 40 * i) % 256], -1)
        Image.fromarray(img.astype(np.uint8)).save(folder / f"face{i}.png")
    return folder


@pytest.fixture
def places(tmp_path, monkeypatch):
    """Empty weight and CelebA places, offline faces in tmp, a tiny model as the shipped one."""
    weights, celeba, offline = tmp_path / "weights", tmp_path / "celeba_root", tmp_path / "offline"
    monkeypatch.setenv("CTCNET_WEIGHTS", str(weights))
    monkeypatch.setenv(book.CELEBA_ENV, str(celeba))
    monkeypatch.delenv(book.OFFICIAL_CHECKPOINT_ENV, raising=False)
    monkeypatch.setenv("CTCNET_DATA", str(offline))
    monkeypatch.setattr(book, "faces", lambda *a, **k: [])
    monkeypatch.setattr(book, "trained_model", lambda device=None: torch.nn.Identity())
    monkeypatch.delenv("CTCNET_BOOK_CAP", raising=False)
    _pngs(offline / "test", 2, size=16)
    return weights, celeba


def test_smoke_cap_keeps_full_mode_and_caps_sizes(monkeypatch):
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    monkeypatch.setenv("CTCNET_BOOK_CAP", "smoke")
    s = book.settings()
    assert s.mode == "full" and s.cap == "smoke"
    assert s.eval_images == 3 and s.train_steps == 2 and s.lam_steps == 2
    reduced = PRESETS["reduced"]  # chapter 9 trains it on patches of this size
    assert s.train_patch >= reduced.min_input_size and s.train_patch % reduced.size_multiple == 0
    monkeypatch.setenv("CTCNET_BOOK_CAP", "none")
    assert book.settings().eval_images == 10_000
    monkeypatch.setenv("CTCNET_BOOK_CAP", "huge")
    with pytest.raises(ValueError, match="CTCNET_BOOK_CAP"):
        book.settings()


def test_small_mode_uses_the_shipped_model_silently(places, monkeypatch, capsys):
    monkeypatch.setenv("CTCNET_BOOK_MODE", "small")
    got = book.subject()
    assert not got.official and got.notice is None
    assert got.test_dir.name == "test" and "2 offline test faces" in got.label
    assert capsys.readouterr().out == ""


def test_full_mode_without_the_real_thing_falls_back_with_a_notice(places, monkeypatch, capsys):
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    got = book.subject()
    printed = capsys.readouterr().out
    assert not got.official and "shipped reduced" in got.label
    assert printed.strip() == got.notice
    assert "ctcnet weights official" in printed and "ctcnet data prepare celeba" in printed
    assert "the authors' weights" in printed and "CelebA test faces" in printed


def test_full_mode_uses_the_authors_weights_on_celeba_when_both_are_here(
        places, monkeypatch, capsys):
    weights, celeba = places
    weights.mkdir()
    (weights / "a_other.pth").write_bytes(b"x")
    (weights / "net_best.pth").write_bytes(b"x")
    _pngs(celeba / "celeba" / "test", 3, size=16)
    loaded = []
    monkeypatch.setattr(book, "load_official_checkpoint",
                        lambda path, device: loaded.append(path) or torch.nn.Conv2d(3, 3, 1))
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    got = book.subject()
    assert got.official and got.notice is None and capsys.readouterr().out == ""
    assert loaded == [weights / "net_best.pth"] and got.weights == weights / "net_best.pth"
    assert got.test_dir == celeba / "celeba" / "test"
    assert "3 CelebA test faces" in got.label and "net_best.pth" in got.label
    # only the weights: still the fallback, and the notice names only what is missing
    monkeypatch.setenv(book.CELEBA_ENV, str(celeba / "nowhere"))
    got = book.subject()
    assert not got.official and "the authors' weights (" not in got.notice


def test_env_var_names_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("CTCNET_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.delenv(book.OFFICIAL_CHECKPOINT_ENV, raising=False)
    assert book.official_checkpoint() is None or str(book.official_checkpoint()).startswith(
        "/content")
    pth = tmp_path / "mine.pth"
    pth.write_bytes(b"x")
    monkeypatch.setenv(book.OFFICIAL_CHECKPOINT_ENV, str(pth))
    assert book.official_checkpoint() == pth


def test_reproduction_plan(monkeypatch, tmp_path):
    monkeypatch.delenv("CTCNET_BOOK_CAP", raising=False)
    monkeypatch.setenv("CTCNET_BOOK_MODE", "small")
    small = book.reproduction_plan(workdir=tmp_path, colab=False)
    assert small.stand_in and small.preset == "tiny" and small.first_steps < small.steps
    assert small.run_dir.is_relative_to(tmp_path)
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    real = book.reproduction_plan(colab=True)
    assert not real.stand_in and real.preset == "official" and real.batch_size == 10
    assert real.steps == 181_800 and real.run_dir == book.COLAB_RUN_DIR
    assert real.val.startswith("carve:")  # selection never on the test faces
    assert book.reproduction_plan(colab=False).run_dir == Path("runs/official")
    monkeypatch.setenv("CTCNET_BOOK_CAP", "smoke")
    assert book.reproduction_plan(workdir=tmp_path, colab=True).stand_in


def test_celeba_stand_in_goes_through_the_real_prepare_path(tmp_path):
    faces = [(f"f{i}", np.asarray(Image.open(p))) for i, p in
             enumerate(sorted(_pngs(tmp_path / "src", 3).glob("*.png")))]
    source = book.celeba_stand_in(tmp_path / "celeba_mini", faces, n_train=2, n_test=1)
    assert Image.open(source / "img_align_celeba" / "000001.jpg").size == (178, 218)
    summary = prepare_dataset("celeba", tmp_path / "data", source, progress=False)
    assert summary["split_used"] == "official partition"
    assert summary["train"]["written"] == 2 and summary["test"]["written"] == 1
    back = np.asarray(Image.open(tmp_path / "data" / "celeba" / "test" / "000003.png"), float)
    assert back.shape == (128, 128, 3)
    assert np.abs(back - faces[2][1]).mean() < 8  # the face crop gives the face back
    with pytest.raises(ValueError, match="need 5 faces"):
        book.celeba_stand_in(tmp_path / "x", faces, n_train=4, n_test=1)


def test_smoke_stand_in_is_found_and_loaded_as_the_authors_network(tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "smoke_full_mode", Path(__file__).resolve().parent.parent / "tools" / "smoke_full_mode.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    offline = _pngs(tmp_path / "offline" / "test", 2)
    monkeypatch.setenv("CTCNET_DATA", str(offline.parent))
    monkeypatch.setattr(book, "faces", lambda *a, **k: [])
    env = smoke.stand_in_official(tmp_path / "weights")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CTCNET_BOOK_MODE", "full")
    got = book.subject(device="cpu")
    assert got.official and got.test_dir == offline
    assert got.model.config == PRESETS["official"]
