"""Tests for ctcnet.train (fit, exact resume, NaN/Ctrl-C/SIGKILL safety) and ctcnet.checkpoint."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctcnet import build_model
from ctcnet.checkpoint import (
    CheckpointError,
    load_model,
    read_checkpoint,
    save_checkpoint,
    strip_for_release,
)
from ctcnet.official import export_official_state_dict
from ctcnet.train import TrainConfig, TrainingError, batch_indices, fit, reference_init_

ROOT = Path(__file__).resolve().parents[1]


def make_faces(folder: Path, n: int = 4, size: int = 32, seed: int = 0) -> Path:
    """Smooth random colour images (a face-like amount of low-frequency content)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        base = rng.normal(0, 1, (size // 8, size // 8, 3))
        img = np.kron(base, np.ones((8, 8, 1))) * 40 + 128 + rng.normal(0, 2, (size, size, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"f{i}.png")
    return folder


@pytest.fixture
def faces(tmp_path) -> Path:
    return make_faces(tmp_path / "faces")


def cfg(faces: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        preset="tiny",
        data=str(faces),
        out=str(out),
        steps=6,
        batch_size=2,
        hr_size=32,
        patch_size=32,
        save_every=3,
        seed=7,
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    base.update(kw)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------- training
def test_loss_decreases_on_a_fixed_batch(faces, tmp_path):
    # batch = the whole (2-image) set and no augmentation: every step sees the same batch
    two = make_faces(tmp_path / "two", n=2)
    r = fit(cfg(two, tmp_path / "run", steps=16, lr=2e-3, augment=False, save_every=0))
    losses = [loss for _, loss in r["losses"]]
    assert len(losses) == 16
    assert np.mean(losses[-4:]) < 0.95 * losses[0]
    assert min(losses) < 0.92 * losses[0]


def test_resume_gives_identical_losses_and_weights(faces, tmp_path):
    straight = fit(cfg(faces, tmp_path / "a", patch_size=24, hr_size=32))
    first = fit(cfg(faces, tmp_path / "b", steps=3, patch_size=24, hr_size=32))
    second = fit(cfg(faces, tmp_path / "b", patch_size=24, hr_size=32, resume=True))
    assert [s for s, _ in second["losses"]] == [3, 4, 5]
    assert straight["losses"] == first["losses"] + second["losses"]  # exact on the CPU
    a = read_checkpoint(tmp_path / "a" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "last.pt")
    assert a["step"] == b["step"] == 6
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    log = (tmp_path / "b" / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,lr,time,val_psnr,val_ssim,bicubic_psnr"
    assert [line.split(",")[0] for line in log[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_same_seed_same_losses_other_seed_differs(faces, tmp_path):
    a = fit(cfg(faces, tmp_path / "a", steps=3))
    b = fit(cfg(faces, tmp_path / "b", steps=3))
    c = fit(cfg(faces, tmp_path / "c", steps=3, seed=8))
    assert a["losses"] == b["losses"]
    assert a["losses"] != c["losses"]


def test_batch_indices_cover_each_epoch():
    idx = [i for step in range(5) for i in batch_indices(3, step, 2, 5)]
    assert sorted(idx) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert batch_indices(3, 4, 2, 5) == batch_indices(3, 4, 2, 5)


def test_validation_writes_best_and_log(faces, tmp_path):
    r = fit(cfg(faces, tmp_path / "run", steps=4, val=str(faces), eval_every=2))
    assert (tmp_path / "run" / "best.pt").is_file()
    assert math.isfinite(r["best_psnr"]) and r["last_val"]["bicubic_psnr"] > 10
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    assert rows[1].split(",")[4] and not rows[0].split(",")[4]  # val_psnr at step 2 only
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["extra"]["best_psnr"] == pytest.approx(r["best_psnr"])


def test_reference_init_statistics():
    model = reference_init_(build_model("tiny"))
    w = model.head.weight
    assert abs(w.std().item() - 0.02) < 0.01 and model.head.bias.abs().max() == 0
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(abs(m.weight.mean().item() - 1) < 0.05 for m in bn)


def test_nan_loss_stops_naming_the_step(faces, tmp_path, monkeypatch):
    import ctcnet.train as T

    real, calls = T.F.l1_loss, []

    def poisoned(a, b):
        calls.append(1)
        loss = real(a, b)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(T.F, "l1_loss", poisoned)
    with pytest.raises(TrainingError, match=r"loss is nan at step 3"):
        fit(cfg(faces, tmp_path / "run", save_every=1))
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_huge_lr_stops_with_a_one_line_error(faces, tmp_path):
    with pytest.raises(TrainingError, match=r"step \d+") as info:
        fit(cfg(faces, tmp_path / "run", lr=1e30, steps=20, save_every=1))
    assert "\n" not in str(info.value)
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")  # never holds NaN weights
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_ctrl_c_saves_last_and_resume_matches(faces, tmp_path):
    def interrupt(step, info):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(cfg(faces, tmp_path / "b", steps=4, save_every=0, callback=interrupt))
    assert read_checkpoint(tmp_path / "b" / "last.pt")["step"] == 2
    resumed = fit(cfg(faces, tmp_path / "b", steps=4, resume=True))
    straight = fit(cfg(faces, tmp_path / "a", steps=4))
    assert straight["losses"][2:] == resumed["losses"]


def test_sigkill_leaves_a_loadable_last_pt(faces, tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import torch
        torch.set_num_threads(1)
        from ctcnet.train import TrainConfig, fit
        fit(TrainConfig(preset="tiny", data={str(faces)!r}, out={str(out)!r}, steps=100000,
                        batch_size=2, hr_size=32, patch_size=32, save_every=1, seed=7,
                        progress=False, tensorboard=False, device="cpu"))
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not (out / "last.pt").exists() and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        time.sleep(0.3)  # let it be in the middle of more saves
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ckpt = read_checkpoint(out / "last.pt")  # not truncated
    step = ckpt["step"]
    assert step >= 1
    load_model(out / "last.pt")
    r = fit(cfg(faces, out, steps=step + 2, resume=True))
    assert [s for s, _ in r["losses"]] == [step, step + 1]
    assert read_checkpoint(out / "last.pt")["step"] == step + 2


def test_bad_settings_and_data(tmp_path, faces):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no images"):
        fit(cfg(tmp_path / "empty", tmp_path / "r"))
    with pytest.raises(TrainingError, match="not found"):
        fit(cfg(tmp_path / "missing", tmp_path / "r"))
    with pytest.raises(TrainingError, match="patch size 20"):
        fit(cfg(faces, tmp_path / "r", patch_size=20))
    with pytest.raises(TrainingError, match="cannot resume"):
        fit(cfg(faces, tmp_path / "r", resume=True))
    with pytest.raises(TrainingError, match="unknown schedule"):
        fit(cfg(faces, tmp_path / "r", schedule="linear"))
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_any_preset(tmp_path):
    model = build_model("tiny", use_mffu=False)
    path = save_checkpoint(tmp_path / "c.pt", model, step=5, extra={"best_psnr": 1.5})
    loaded = load_model(path)
    assert loaded.config == model.config and not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left


def test_checkpoint_of_another_preset_is_named(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", build_model("tiny"))
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = build_model("reduced").state_dict()
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"preset 'tiny'.*wrong shape.*fit preset 'reduced'"):
        load_model(path)


def test_checkpoint_errors_are_one_line(tmp_path):
    good = save_checkpoint(tmp_path / "c.pt", build_model("tiny"))
    ckpt = torch.load(good, weights_only=True)
    del ckpt["model"]["head.weight"]
    torch.save(ckpt, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    cases = {
        "missing.pt": r"1 missing \(head.weight\)",
        "junk.pt": "cannot read checkpoint",
        "other.pt": "not a CTCNet reference checkpoint",
        "nope.pt": "checkpoint not found",
    }
    for name, pattern in cases.items():
        with pytest.raises(CheckpointError, match=pattern) as info:
            load_model(tmp_path / name)
        assert "\n" not in str(info.value)


def test_official_checkpoint_is_detected(tmp_path):
    model = build_model("official")
    torch.save(export_official_state_dict(model), tmp_path / "official.pth")
    loaded = load_model(tmp_path / "official.pth")
    assert torch.equal(loaded.head.weight, model.head.weight)


def test_strip_for_release(tmp_path, faces):
    fit(cfg(faces, tmp_path / "run", steps=1))
    dst = strip_for_release(tmp_path / "run" / "last.pt", tmp_path / "w" / "release.pt")
    ckpt = read_checkpoint(dst)
    assert ckpt["optimizer"] is None and ckpt["rng"] is None and ckpt["step"] == 1
    assert dst.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size
    load_model(dst)


def test_default_weights_missing_message(monkeypatch, tmp_path):
    import ctcnet.checkpoint as C

    monkeypatch.setattr(C, "default_weights_path", lambda: tmp_path / "none.pt")
    with pytest.raises(CheckpointError, match="train_reduced.sh"):
        load_model()
