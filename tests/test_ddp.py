"""Two-process DistributedDataParallel smoke run (gloo on the CPU) through torchrun."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ctcnet.weights import load_model, read_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_torchrun_two_ranks(tmp_path):
    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        img = np.kron(rng.normal(0, 40, (4, 4, 3)), np.ones((8, 8, 1))) + 128
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(data / f"{i}.png")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "ctcnet", "train", "--preset", "tiny", "--data", str(data), "--val", str(data)]
    cmd += ["--hr-size", "32", "--steps", "3", "--batch-size", "4", "--save-every", "2"]
    cmd += ["--device", "cpu", "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("trained 3 steps") == 2  # both ranks finished
    ckpt = read_checkpoint(out / "last.pt")  # written by rank 0
    assert ckpt["step"] == 3
    assert not any(k.startswith("module.") for k in ckpt["model"])
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    load_model(out / "last.pt")
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 4  # header + one row per step: only rank 0 logs
    assert (out / "best.pt").is_file()
