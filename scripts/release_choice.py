"""Choose the released weights of scripts/train_release.sh, then measure what two recipe choices did.

    python scripts/release_choice.py RUN [SNAPSHOT] [--out RELEASE.pt]

RUN is the run folder (its last.pt holds the raw weights of the last step and, for resuming, the
EMA weights); SNAPSHOT an optional copy of last.pt from the end of the patch phase (step 3,500 of
the release recipe).

The rule, fixed before the run ended: of the EMA weights and the raw weights of the last step,
release the one with the higher mean PSNR on the carved validation faces (`--val carve:8`:
whole training identities held out of training, identity-disjoint from train and test). The test
faces play no part in the choice; they are scored afterwards, to report (paired bootstrap 95 %
CIs over the 21 test faces, `ctcnet` protocol, fp32):

  * EMA - raw at the last step (what the averaging bought);
  * last step - snapshot, for each kind of weights (what the whole-face phase bought).
"""
import argparse
import json
from pathlib import Path

from ctcnet.data.offline_faces import build_offline_faces
from ctcnet.evaluate import evaluate
from ctcnet.stats import paired_bootstrap_ci
from ctcnet.train import TrainConfig, load_data
from ctcnet.weights import model_from_checkpoint, read_checkpoint, save_checkpoint

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", type=Path)
parser.add_argument("snapshot", type=Path, nargs="?")
parser.add_argument("--out", type=Path, help="write the chosen weights here (default RUN/release.pt)")
args = parser.parse_args()


def weights(path: Path):
    """(step, raw model, EMA model) of a training checkpoint with an EMA state."""
    ckpt = read_checkpoint(path)
    raw = model_from_checkpoint(ckpt, str(path))
    averaged = ckpt["extra"]["ema"]  # an AveragedModel's state: "module." + our names, n_averaged
    ema = model_from_checkpoint({**ckpt, "model": {k: v for k, v in averaged.items()
                                                   if k.startswith("module.")}}, f"EMA of {path}")
    return int(ckpt["step"]), raw.eval(), ema.eval(), ckpt


step, raw, ema, ckpt = weights(args.run / "last.pt")
recipe = json.loads((args.run / "config.json").read_text())
cfg = TrainConfig(**{k: tuple(v) if k == "betas" else v for k, v in recipe.items()})
_, val_set = load_data(cfg)
test_dir = Path(build_offline_faces(progress=False)) / "test"

# ---- the choice, on validation faces only
val = {name: evaluate(m, val_set, protocol="ctcnet", precision="fp32") for name, m in
       (("EMA", ema), ("raw", raw))}
for name, result in val.items():
    print(f"validation ({len(result['psnr'])} carved faces), step {step}, {name:3s}: "
          f"PSNR {result['psnr'].mean():.3f} dB (bicubic {result['bicubic_psnr'].mean():.3f})")
chosen = max(val, key=lambda name: val[name]["psnr"].mean())
print(f"rule: the higher validation PSNR -> release the {chosen} weights of step {step}")
out = args.out or args.run / "release.pt"
# "val" and "best_psnr" of the training checkpoint describe the weights the trainer validated (the
# EMA when EMA is on): replace them by the validation of the weights released here
extra = {k: v for k, v in ckpt["extra"].items() if k not in ("ema", "scaler", "best_psnr")}
extra["val"] = {m: float(val[chosen][c].mean()) for m, c in
                (("psnr", "psnr"), ("ssim", "ssim"), ("bicubic_psnr", "bicubic_psnr"))}
extra["val_by_weights"] = {name: float(result["psnr"].mean()) for name, result in val.items()}
extra["released_weights"] = f"{chosen} of step {step} (higher mean PSNR on carve validation)"
save_checkpoint(out, ema if chosen == "EMA" else raw, None, step=step, extra=extra, rng=False)
print(f"wrote {out}")

# ---- afterwards, to report: the test faces
test = {f"{name}, step {step}": evaluate(m, test_dir, protocol="ctcnet", precision="fp32")
        for name, m in (("EMA", ema), ("raw", raw))}
if args.snapshot:
    snap_step, snap_raw, snap_ema, _ = weights(args.snapshot)
    for name, m in (("EMA", snap_ema), ("raw", snap_raw)):
        test[f"{name}, step {snap_step}"] = evaluate(m, test_dir, protocol="ctcnet", precision="fp32")
print(f"\ntest ({len(list(test_dir.glob('*.png')))} faces), ctcnet protocol, fp32:")
for name, result in test.items():
    gain = result.gains()["psnr"]
    print(f"  {name:16s} PSNR {result['psnr'].mean():.3f} dB, gain over bicubic {gain.mean:+.3f} "
          f"[{gain.low:+.3f}, {gain.high:+.3f}]")


def report(a: str, b: str) -> None:
    ci = paired_bootstrap_ci(test[a]["psnr"], test[b]["psnr"])
    print(f"  ({a}) - ({b}): {ci.mean:+.3f} dB [{ci.low:+.3f}, {ci.high:+.3f}]")


print("paired differences on the test faces (95 % bootstrap CI):")
report(f"EMA, step {step}", f"raw, step {step}")
if args.snapshot:
    for name in ("EMA", "raw"):
        report(f"{name}, step {step}", f"{name}, step {snap_step}")
