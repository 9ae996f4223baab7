"""Score every ablation run of scripts/train_ablations.sh on the offline test faces and release
what chapter 14 needs.

    python scripts/release_ablations.py [RUNS_DIR]        # default runs/ablations

Writes, under ctcnet/weights/ablations/:
  test_scores.csv   one row per (variant, seed, test face): PSNR/SSIM of the model and of bicubic
                    under the `ctcnet` protocol, fp32, the EMA weights each run released;
  logs/VARIANT_sSEED.csv   each run's training log;
  VARIANT.pt        the EMA weights of the lowest seed of each variant (config + weights only).
"""
import csv
import re
import shutil
import sys
from pathlib import Path

from ctcnet.data.offline_faces import build_offline_faces
from ctcnet.evaluate import evaluate
from ctcnet.weights import load_model, strip_for_release

runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/ablations")
release = Path(__file__).resolve().parent.parent / "ctcnet" / "weights" / "ablations"
test_dir = Path(build_offline_faces(progress=False)) / "test"

finished = sorted(p.parent for p in runs.glob("*_s*/ema.pt"))
if not finished:
    sys.exit(f"no finished runs (RUN/ema.pt) under {runs}")
rows, released = [], set()
for run in sorted(finished, key=lambda r: (r.name.rsplit("_s", 1)[0], int(r.name.rsplit("_s", 1)[1]))):
    match = re.fullmatch(r"(.+)_s(\d+)", run.name)
    variant, seed = match.group(1), int(match.group(2))
    model = load_model(run / "ema.pt")
    scores = evaluate(model, test_dir, protocol="ctcnet", precision="fp32")
    for row in scores:
        rows.append({"variant": variant, "seed": seed, **row})
    gain = scores.gains()["psnr"]
    print(f"{run.name:22s} PSNR {scores['psnr'].mean():.3f} dB, gain {gain.mean:+.3f} "
          f"[{gain.low:+.3f}, {gain.high:+.3f}]")
    (release / "logs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "log.csv", release / "logs" / f"{run.name}.csv")
    if variant not in released:  # the lowest seed of each variant ships its weights
        strip_for_release(run / "ema.pt", release / f"{variant}.pt")
        released.add(variant)

with open(release / "test_scores.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
print(f"{len(rows)} rows -> {release / 'test_scores.csv'}; weights of {sorted(released)}")
