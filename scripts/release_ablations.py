"""Score every ablation run of scripts/train_ablations.sh and release what chapters 12 and 14 need.

    python scripts/release_ablations.py RUNS [RUNS ...]       # folders of runs, or single runs
    python scripts/release_ablations.py --compare RUN ...      # print scores against the file only
    python scripts/release_ablations.py --no-weights RUN ...   # measure, but leave VARIANT.pt alone
    python scripts/release_ablations.py --summary              # the tables of benchmarks/RESULTS.md

A run is a folder ``VARIANT_sSEED`` holding ``ema.pt`` and ``log.csv``; its training length is read
from the checkpoint (``step``), so runs of several lengths can be released together. Every run
given is measured and its rows *replace* the rows of the same (variant, steps, seed) in the files
below; rows of runs not given are kept. Before replacing, the script prints how far the new mean
PSNR lies from the old one (a re-run of the same recipe should agree within float noise).

Writes, under ctcnet/weights/ablations/:
  test_scores.csv   one row per (variant, steps, seed, test face): PSNR/SSIM of the run's EMA
                    weights and of bicubic, ``ctcnet`` protocol, fp32;
  erf_radii.csv     one row per (variant, steps, seed, test face): the 50 % and 90 % Chebyshev
                    radii of the effective receptive field of the centre output pixel (residual
                    branch, ``ctcnet.analysis.erf_maps``), in input pixels;
  lam_di.csv        one row per (variant, steps, seed, face, window): the Diffusion Index of the
                    LAM map of an eye and a mouth window of the first DI_FACES test faces
                    (midpoint rule, 8 steps, 16 where the completeness error exceeds 5 %);
  logs/VARIANT_sSEED_STEPSsteps.csv   each run's training log;
  VARIANT.pt        the EMA weights of seed 1 at SHIP_STEPS steps (config + weights only).
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ctcnet.analysis import erf_maps, lam_windows, t_interval
from ctcnet.course.book import face_batch, faces
from ctcnet.data.offline_faces import build_offline_faces
from ctcnet.evaluate import evaluate
from ctcnet.face_regions import crop_landmarks, landmark_window
from ctcnet.stats import paired_bootstrap_ci
from ctcnet.weights import load_model, read_checkpoint, strip_for_release

RELEASE = Path(__file__).resolve().parent.parent / "ctcnet" / "weights" / "ablations"
KEY = ("variant", "steps", "seed")
SHIP_STEPS = 200  # the length whose seed-1 weights ship (11 MB per variant)
DI_FACES = 8  # faces whose eye and mouth windows get a LAM map
LAM_STEPS, LAM_TOLERANCE = 8, 0.05


def runs_in(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        found += ([path] if (path / "ema.pt").is_file()
                  else sorted(p.parent for p in path.glob("*_s*/ema.pt")))
    if not found:
        raise SystemExit(f"no finished runs (RUN/ema.pt) in {', '.join(map(str, paths))}")
    return found


def identity(run: Path) -> dict:
    match = re.fullmatch(r"(.+)_s(\d+)", run.name)
    if match is None:
        raise SystemExit(f"{run}: a run folder is named VARIANT_sSEED")
    return {"variant": match.group(1), "steps": int(read_checkpoint(run / "ema.pt")["step"]),
            "seed": int(match.group(2))}


def read_rows(name: str) -> list[dict]:
    path = RELEASE / name
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(name: str, rows: list[dict]) -> None:
    columns = list(KEY) + [c for c in rows[0] if c not in KEY]
    rows = sorted(rows, key=lambda r: (r["variant"], int(r["steps"]), int(r["seed"])))
    with open(RELEASE / name, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})


def merged(old: list[dict], new: list[dict]) -> list[dict]:
    replaced = {tuple(str(r[k]) for k in KEY) for r in new}
    return [r for r in old if tuple(str(r[k]) for k in KEY) not in replaced] + new


def scores_of(model, test_dir: Path, ident: dict) -> list[dict]:
    return [{**ident, **row} for row in evaluate(model, test_dir, protocol="ctcnet", precision="fp32")]


def erf_rows(model, test_faces, inputs, ident: dict) -> list[dict]:
    maps = erf_maps(model, inputs)  # the centre pixel, residual branch, batches of 4
    r50, r90 = maps.radii(0.5)[0], maps.radii(0.9)[0]
    return [{**ident, "name": name, "r50": float(a), "r90": float(b)}
            for (name, _), a, b in zip(test_faces, r50, r90)]


def di_rows(model, di_faces, batch, windows, ident: dict) -> list[dict]:
    rows = []
    for i, (name, _) in enumerate(di_faces):
        parts = list(windows[name])
        results = lam_windows(model, batch["lr"][i:i + 1], [windows[name][p] for p in parts],
                              steps=LAM_STEPS, rule="midpoint", batch_size=LAM_STEPS)
        for part, result in zip(parts, results):
            steps = LAM_STEPS
            if abs(result.completeness_error) > LAM_TOLERANCE:  # more path points where needed
                steps = 2 * LAM_STEPS
                result = lam_windows(model, batch["lr"][i:i + 1], [result.window], steps=steps,
                                     rule="midpoint", batch_size=LAM_STEPS)[0]
            top, left, size = result.window
            rows.append({**ident, "name": name, "part": part, "top": top, "left": left,
                         "size": size, "lam_steps": steps, "di": float(result.diffusion_index),
                         "completeness_error": float(result.completeness_error)})
    return rows


def summary() -> None:
    """Markdown tables of the released files: per length and variant, the runs' means, and each
    module's effect (variant - full, paired by seed) with its t interval over seeds (df = seeds - 1)
    next to the paired bootstrap interval over faces of the seed-averaged values."""
    files = {"PSNR (dB)": ("test_scores.csv", "psnr", "{:+.3f}"),
             "ERF r50 (px)": ("erf_radii.csv", "r50", "{:+.2f}"),
             "ERF r90 (px)": ("erf_radii.csv", "r90", "{:+.2f}"),
             "LAM DI": ("lam_di.csv", "di", "{:+.2f}")}
    for title, (name, column, fmt) in files.items():
        if not (RELEASE / name).is_file():
            print(f"\n{title}: no {name} yet")
            continue
        table = pd.read_csv(RELEASE / name)
        per_run = table.groupby(["steps", "variant", "seed"])[column].mean()
        print(f"\n{title}\n\n| steps | variant | per seed | mean ± SD over seeds | Δ vs full, mean "
              "of seeds | 95 % t interval over seeds | 95 % bootstrap interval over faces |\n"
              "|---|---|---|---|---|---|---|")
        for steps in sorted(table["steps"].unique()):
            per_face = table[table["steps"] == steps].groupby(["variant", "name"])[column].mean()
            for variant in ("full", "no_fsau", "no_transformer", "no_mffu"):
                if (steps, variant) not in per_run.index:
                    continue
                runs = per_run.loc[(steps, variant)]
                spread = f" ± {runs.std(ddof=1):.3f}" if len(runs) > 1 else ""
                cells = [", ".join(f"{v:.3f}" for v in runs), f"{runs.mean():.3f}{spread}"]
                d = (runs - per_run.loc[(steps, "full")]).dropna()
                if variant == "full" or len(d) < 2:
                    cells += ["—", "—", "—"]
                else:
                    seeds, faces_ = t_interval(d), paired_bootstrap_ci(per_face.loc[variant],
                                                                      per_face.loc["full"])
                    cells += [fmt.format(d.mean()),
                              f"[{fmt.format(seeds.low)}, {fmt.format(seeds.high)}] ({len(d)} seeds)",
                              f"[{fmt.format(faces_.low)}, {fmt.format(faces_.high)}]"]
                print(f"| {steps} | {variant} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders, or folders of runs")
    parser.add_argument("--summary", action="store_true",
                        help="print the tables of the released files and stop")
    parser.add_argument("--compare", action="store_true",
                        help="only print each run's mean PSNR against the released file")
    parser.add_argument("--no-weights", action="store_true",
                        help="do not write VARIANT.pt (e.g. when measuring the shipped weights)")
    args = parser.parse_args()
    if args.summary:
        return summary()
    if not args.runs:
        parser.error("give run folders (or --summary)")
    torch.manual_seed(0)
    test_dir = Path(build_offline_faces(progress=False)) / "test"
    test_faces = faces("test")
    inputs = face_batch([img for _, img in test_faces])["lr_up"]
    di_faces = test_faces[:DI_FACES]
    di_batch = face_batch([img for _, img in di_faces])
    windows = {name: {part: landmark_window(crop_landmarks(img)[0], part)
                      for part in ("eye", "mouth")} for name, img in di_faces}
    old_scores = read_rows("test_scores.csv")
    new = {"test_scores.csv": [], "erf_radii.csv": [], "lam_di.csv": []}
    for run in runs_in(args.runs):
        ident = identity(run)
        model = load_model(run / "ema.pt")
        scores = scores_of(model, test_dir, ident)
        psnr = np.mean([r["psnr"] for r in scores])
        before = [float(r["psnr"]) for r in old_scores
                  if all(str(r[k]) == str(ident[k]) for k in KEY)]
        was = (f", released {np.mean(before):.4f} dB (new − released "
               f"{psnr - np.mean(before):+.4f})") if before else ""
        print(f"{run}: {ident['steps']} steps, mean PSNR {psnr:.4f} dB{was}", flush=True)
        if args.compare:
            continue
        new["test_scores.csv"] += scores
        new["erf_radii.csv"] += erf_rows(model, test_faces, inputs, ident)
        new["lam_di.csv"] += di_rows(model, di_faces, di_batch, windows, ident)
        log_name = f"{ident['variant']}_s{ident['seed']}_{ident['steps']}steps.csv"
        (RELEASE / "logs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run / "log.csv", RELEASE / "logs" / log_name)
        if ident["seed"] == 1 and ident["steps"] == SHIP_STEPS and not args.no_weights:
            strip_for_release(run / "ema.pt", RELEASE / f"{ident['variant']}.pt")
    if args.compare:
        return
    for name, rows in new.items():
        write_rows(name, merged(read_rows(name), rows))
        print(f"{len(rows)} new rows -> {RELEASE / name}")


if __name__ == "__main__":
    main()
