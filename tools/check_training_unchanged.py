"""Train the same runs with the code of a git commit and with the working tree, and compare them.

Usage::

    python tools/check_training_unchanged.py REF            # e.g. a commit before a refactoring

Each run trains the tiny preset on a few synthetic 32x32 faces (in identity folders, so that a
validation set can be carved) in a fresh process, once with ``ctcnet`` as it was at ``REF``
(``git archive``) and once with the working tree. The losses must be equal (``==``), and so must
every tensor of ``last.pt`` (weights, BatchNorm statistics, Adam and EMA state, torch RNG state),
``best.pt``, ``ema.pt`` and ``step_N.pt`` (``torch.equal``), and the step/loss/lr/validation
columns of ``log.csv``. Runs: the plain recipe in fp32; every recipe option at once in the automatic
precision (bf16 where the CPU has it); and the plain recipe stopped after 3 steps and resumed.
Exit status 1 on any difference. Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
COMMON = dict(preset="tiny", hr_size=32, batch_size=2, steps=6, save_every=3, seed=7,
              progress=False, tensorboard=False, device="cpu")  # fmt: skip
RUNS = {
    "plain": [dict(COMMON, patch_size=24, precision="fp32", val="none")],
    "options": [dict(COMMON, batch_size=4, patch_size=24, full_size_from_step=4, lr=1e-3,
                     schedule="cosine", warmup_steps=2, ema_decay=0.9, augment="strong",
                     val="carve:2", eval_every=3, keep_every=3, precision="auto")],  # fmt: skip
    "resumed": [dict(COMMON, patch_size=24, precision="fp32", val="none", steps=3),
                dict(COMMON, patch_size=24, precision="fp32", val="none", resume=True)],
}
#: The global NumPy and Python RNGs: seeded from OS entropy when a process starts and never used
#: by training (its random streams are keyed by seed, step and slot), so their saved states
#: differ between any two processes.
UNSEEDED = ("/rng/numpy", "/rng/python")
TRAIN = """
import json, sys, torch
torch.set_num_threads(1)
from ctcnet.train import TrainConfig, fit
losses = []
for kw in json.loads(sys.argv[1]):
    losses += fit(TrainConfig(**kw))["losses"]
print(json.dumps(losses))
"""


def make_faces(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for who in ("ann", "bob", "cat", "dan"):
        (folder / who).mkdir(parents=True)
        for i in range(2):
            img = np.kron(rng.normal(0, 1, (4, 4, 3)), np.ones((8, 8, 1))) * 40 + 128
            img += rng.normal(0, 2, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / who / f"{i}.png")


def train(code: Path, runs: list[dict], data: Path, out: Path) -> list:
    runs = [dict(kw, data=str(data), out=str(out)) for kw in runs]
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", TRAIN, json.dumps(runs)], env=env, cwd=out.parent,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"training with {code} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a checkpoint, by its path of keys."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    return {k: v for key, value in items for k, v in tensors(value, f"{prefix}/{key}").items()}


def differences(a: Path, b: Path) -> list[str]:
    found = []
    names = sorted(p.name for p in a.glob("*.pt"))
    if names != sorted(p.name for p in b.glob("*.pt")):
        return [f"checkpoint files differ: {names}"]
    for name in names:
        ta, tb = (tensors(torch.load(d / name, weights_only=True)) for d in (a, b))
        if ta.keys() != tb.keys():
            found.append(f"{name}: different entries")
        found += [f"{name}{k}" for k in ta if k in tb and not k.startswith(UNSEEDED)
                  and not torch.equal(ta[k], tb[k])]  # fmt: skip
    cols = ("step", "loss", "lr", "val_psnr", "val_ssim", "bicubic_psnr")
    logs = [[{k: r.get(k) for k in cols} for r in csv.DictReader((d / "log.csv").open())]
            for d in (a, b)]  # fmt: skip
    if logs[0] != logs[1]:
        found.append("log.csv")
    return found


def main() -> int:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    ref = sys.argv[1]
    with tempfile.TemporaryDirectory(prefix="ctcnet_unchanged_") as tmp:
        tmp = Path(tmp)
        archive = subprocess.run(["git", "archive", ref, "ctcnet"], cwd=ROOT, check=True,
                                 capture_output=True).stdout  # fmt: skip
        (tmp / "ref.tar").write_bytes(archive)
        with tarfile.open(tmp / "ref.tar") as tar:
            tar.extractall(tmp / "ref", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        make_faces(tmp / "faces")
        failed = False
        for name, runs in RUNS.items():
            outs = {side: tmp / f"{name}_{side}" for side in ("ref", "tree")}
            before = train(tmp / "ref", runs, tmp / "faces", outs["ref"])
            after = train(ROOT, runs, tmp / "faces", outs["tree"])
            diff = differences(outs["ref"], outs["tree"])
            same = before == after and not diff
            failed |= not same
            print(f"{name:8s} {len(after)} steps: losses {'equal' if before == after else 'DIFFER'}; "
                  f"checkpoints and log {'equal' if not diff else 'DIFFER: ' + ', '.join(diff[:5])}")
    print("unchanged" if not failed else "CHANGED")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
