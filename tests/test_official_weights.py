"""Tests for ctcnet.weights.download and `ctcnet weights official` (offline: gdown faked)."""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

import pytest
import torch

import ctcnet
from ctcnet.cli import main
from ctcnet.errors import WeightsUnavailableError
from ctcnet.weights import download as W
from ctcnet.weights import save_checkpoint


class _TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3)  # 84 parameters


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """The cache `ctcnet weights official` fills, away from the user's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CTCNET_WEIGHTS", str(folder))
    return folder


@pytest.fixture()
def fake_loader(monkeypatch):
    """Loading the real 22M-parameter model is tested once; elsewhere a small stand-in."""
    loaded: list[Path] = []

    def load(path):
        loaded.append(Path(path))
        return _TinyModel()

    monkeypatch.setattr(W, "_load_official", load)
    return loaded


def _drive_download(folder: Path, checkpoint: bytes | None = None) -> Path:
    """The Drive folder as a browser downloads it: a checkpoint next to test outputs."""
    (folder / "test_results").mkdir(parents=True)
    (folder / "test_results" / "000001.png").write_bytes(b"not a checkpoint")
    if checkpoint is not None:
        (folder / "PSNR_28.37.pth").write_bytes(checkpoint)
    return folder


def test_local_official_checkpoint_is_loaded_fingerprinted_and_cached(tmp_path, cache):
    folder = _drive_download(tmp_path / "drive_download")
    model = ctcnet.build_model("official")
    torch.save(ctcnet.export_official_state_dict(model), folder / "PSNR_28.37.pth")

    [weights] = W.official_weights(folder)
    assert weights.path == cache / "PSNR_28.37.pth"
    assert weights.copied_from == folder / "PSNR_28.37.pth"
    assert weights.path.read_bytes() == weights.copied_from.read_bytes()
    assert weights.sha256 == hashlib.sha256(weights.path.read_bytes()).hexdigest()
    assert weights.parameters == sum(p.numel() for p in model.parameters())
    assert not weights.model.training
    loaded = weights.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    # --checkpoint official now means this file
    assert ctcnet.weights.resolve_weights("official") == weights.path


def test_weights_command_prints_path_sha256_and_parameters(tmp_path, capsys, fake_loader, cache):
    folder = _drive_download(tmp_path / "drive_download", checkpoint=b"weights")
    assert main(["weights", "official", "--source", str(folder)]) == 0
    out = capsys.readouterr().out
    sha = hashlib.sha256(b"weights").hexdigest()
    source = folder / "PSNR_28.37.pth"
    assert f"{cache / 'PSNR_28.37.pth'}: sha256 {sha}, 84 parameters (copied from {source})" in out
    assert fake_loader == [source]


def test_weights_source_that_is_not_a_checkpoint_is_refused_in_one_line(tmp_path, capsys):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    assert main(["weights", "official", "--source", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err


def test_weights_folder_without_checkpoint_says_what_to_do(tmp_path, fake_loader):
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no .pth or .pt checkpoint in .*--source PATH"):
        W.official_weights(tmp_path)
    assert fake_loader == []


def test_weights_without_gdown_say_what_to_do(tmp_path, monkeypatch, capsys, fake_loader):
    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(WeightsUnavailableError) as info:
        W.official_weights(dest=tmp_path / "w")
    msg = str(info.value)
    assert 'pip install "ctcnet[colab]"' in msg and "--source PATH" in msg and "\n" not in msg
    assert W.OFFICIAL_WEIGHTS_FOLDER in msg
    assert main(["weights", "official", "--dest", str(tmp_path / "w")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def _fake_gdown(listing: list[str], fail: Exception | None = None) -> types.ModuleType:
    """A gdown stand-in: lists ``listing`` in the Drive folder; downloads write the id as bytes."""
    module = types.ModuleType("gdown")
    module.calls = []

    def download_folder(url, output, quiet, remaining_ok, skip_download=False):
        module.calls.append(("folder", url, skip_download))
        if fail is not None:
            raise fail
        return [
            types.SimpleNamespace(id=f"id-{i}", path=name, local_path=str(Path(output) / name))
            for i, name in enumerate(listing)
        ]

    def download(id, output, quiet):  # noqa: A002 (gdown's own keyword)
        module.calls.append(("file", id))
        Path(output).write_bytes(id.encode())
        return output

    module.download_folder = download_folder
    module.download = download
    return module


def test_weights_fetch_only_the_checkpoints_of_the_drive_folder(tmp_path, monkeypatch, fake_loader):
    fake = _fake_gdown(["CTCNet/PSNR_28.37.pth", "CTCNet/results/000001.png", "log.txt"])
    monkeypatch.setitem(sys.modules, "gdown", fake)
    [weights] = W.official_weights(dest=tmp_path / "w", quiet=True)
    assert weights.path == tmp_path / "w" / "CTCNet" / "PSNR_28.37.pth"
    assert weights.sha256 == hashlib.sha256(b"id-0").hexdigest() and weights.parameters == 84
    assert fake.calls == [("folder", W.OFFICIAL_WEIGHTS_FOLDER, True), ("file", "id-0")]
    # a second call finds the file and downloads nothing
    W.official_weights(dest=tmp_path / "w", quiet=True)
    assert len(fake.calls) == 2


def test_weights_drive_refusal_is_one_line(tmp_path, monkeypatch, fake_loader):
    refusal = RuntimeError("Too many users have viewed or downloaded this file recently.\nMore")
    monkeypatch.setitem(sys.modules, "gdown", _fake_gdown([], fail=refusal))
    with pytest.raises(WeightsUnavailableError) as info:
        W.official_weights(dest=tmp_path / "w", quiet=True)
    msg = str(info.value)
    assert "Too many users" in msg and "--source PATH" in msg and "\n" not in msg
    assert fake_loader == []


def test_weights_source_that_is_a_ctcnet_checkpoint_says_so_in_one_line(tmp_path, capsys, cache):
    ours = save_checkpoint(tmp_path / "ours.pt", ctcnet.build_model("tiny"))
    torch.save(ctcnet.build_model("reduced").state_dict(), tmp_path / "state_dict.pth")
    for source in (ours, tmp_path / "state_dict.pth"):
        assert main(["weights", "official", "--source", str(source)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "this is a ctcnet checkpoint, not the authors'" in err, err
        assert str(source) in err and "missing" not in err  # no dump of key lists
    assert not cache.exists()  # nothing copied into the cache
