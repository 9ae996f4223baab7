"""Tests for ctcnet.weights: damaged files are refused at load, and names mean trained weights."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ctcnet
from ctcnet.cli import main
from ctcnet.errors import CheckpointError
from ctcnet.weights import (
    default_weights_path,
    export_official_state_dict,
    load_model,
    read_checkpoint,
    resolve_weights,
    save_checkpoint,
)


def _faces(folder: Path, n: int = 2, size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder


def _damage(path: Path, n_bytes: int = 16) -> Path:
    """Overwrite bytes inside the largest tensor's data, as a bad disk or transfer would: the
    zip archive stays readable (torch does not check its CRCs), only the numbers change."""
    with zipfile.ZipFile(path) as archive:
        largest = max((i for i in archive.infolist() if "/data/" in i.filename),
                      key=lambda i: i.file_size)
    with open(path, "r+b") as handle:
        handle.seek(largest.header_offset + 26)
        name_len, extra_len = np.frombuffer(handle.read(4), dtype="<u2")
        handle.seek(largest.header_offset + 30 + int(name_len) + int(extra_len) + 64)
        handle.write(b"\xff" * n_bytes)  # 0xffffffff is a NaN in float32
    return path


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ------------------------------------------------------------------------- damaged checkpoints
def test_damaged_checkpoint_is_refused_at_load_with_one_line_naming_the_file(tmp_path, capsys):
    torch.manual_seed(0)
    path = _damage(save_checkpoint(tmp_path / "tiny.pt", ctcnet.build_model("tiny")))
    with pytest.raises(CheckpointError, match="damaged"):
        load_model(path)
    code = main(["eval", "--checkpoint", str(path), "--data", str(_faces(tmp_path / "d"))])
    line = _one_line_error(capsys, code)
    assert str(path) in line and "damaged" in line


def test_resume_from_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, capsys):
    data = _faces(tmp_path / "d")
    args = ["train", "--preset", "tiny", "--data", str(data), "--val", "none", "--hr-size", "32",
            "--batch-size", "2", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "r")]
    assert main([*args, "--steps", "1"]) == 0
    capsys.readouterr()
    last = _damage(tmp_path / "r" / "last.pt")
    line = _one_line_error(capsys, main([*args, "--steps", "2", "--resume"]))
    assert str(last) in line and "damaged" in line


def test_checkpoint_without_a_digest_holding_nan_is_refused_naming_the_file(tmp_path):
    # the authors' files and ours from before the digest carry none: non-finite weights are
    # what a damaged one of them shows
    model = ctcnet.build_model("official")
    state = export_official_state_dict(model)
    state["head.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "theirs.pth")
    with pytest.raises(CheckpointError, match=r"theirs\.pth.*damaged.*head\.weight"):
        load_model(tmp_path / "theirs.pth")
    ours = read_checkpoint(save_checkpoint(tmp_path / "ours.pt", ctcnet.build_model("tiny")))
    ours.pop("digest")
    ours["model"]["tail.bias"][0] = float("inf")
    torch.save(ours, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt is damaged: tail\.bias"):
        load_model(tmp_path / "old.pt")


def test_digest_covers_every_entry_and_survives_save_and_load(tmp_path):
    model = ctcnet.build_model("tiny")
    opt = torch.optim.Adam(model.parameters())
    model(torch.zeros(1, 3, 32, 32)).mean().backward()
    opt.step()
    path = save_checkpoint(tmp_path / "c.pt", model, opt, step=3, extra={"best_psnr": 25.5})
    ckpt = read_checkpoint(path)  # verifies
    assert len(ckpt["digest"]) == 64
    for change in (lambda c: c["optimizer"]["state"][0]["exp_avg"].view(-1).__setitem__(0, 1.0),
                   lambda c: c.__setitem__("step", 4),
                   lambda c: c["extra"].__setitem__("best_psnr", 25.6)):
        edited = read_checkpoint(path)
        change(edited)
        torch.save(edited, tmp_path / "edited.pt")
        with pytest.raises(CheckpointError, match="damaged"):
            read_checkpoint(tmp_path / "edited.pt")


def test_shipped_weights_without_a_digest_still_load():
    ckpt = read_checkpoint(default_weights_path())
    assert "digest" not in ckpt  # shipped before the digest; a git blob and the wheel's RECORD
    model = load_model()  # hash them instead
    assert model.config == ctcnet.PRESETS["reduced"]


# ------------------------------------------------------------------- names mean trained weights
def test_checkpoint_official_means_the_authors_weights_from_the_cache(tmp_path, monkeypatch,
                                                                     capsys):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("CTCNET_WEIGHTS", str(cache))
    torch.manual_seed(1)
    theirs = ctcnet.build_model("official")
    torch.save(export_official_state_dict(theirs), cache / "net_best.pth")
    assert resolve_weights("official") == cache / "net_best.pth"
    assert main(["info"]) == 0
    assert f"the authors' weights (--checkpoint official): {cache / 'net_best.pth'}" in (
        capsys.readouterr().out
    )
    loaded = load_model("official")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in theirs.state_dict().items())


def test_checkpoint_official_without_the_authors_weights_says_how_to_get_them(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTCNET_WEIGHTS", str(tmp_path / "empty"))
    code = main(["eval", "--checkpoint", "official", "--data", str(_faces(tmp_path / "d"))])
    line = _one_line_error(capsys, code)
    assert "ctcnet weights official" in line and str(tmp_path / "empty") in line


def test_preset_name_without_weights_is_a_one_line_error_saying_how_to_get_them(tmp_path, capsys):
    code = main(["eval", "--checkpoint", "tiny", "--data", str(_faces(tmp_path / "d"))])
    line = _one_line_error(capsys, code)
    assert "ctcnet train --preset tiny" in line
    assert resolve_weights("reduced") == resolve_weights() == default_weights_path()


def test_a_file_named_like_a_preset_is_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_checkpoint(tmp_path / "tiny", ctcnet.build_model("tiny"))
    assert resolve_weights("tiny") == Path("tiny")
    assert load_model("tiny").config == ctcnet.PRESETS["tiny"]
