"""The weight-randomisation sanity check (Adebayo et al., NeurIPS 2018) of chapter 13's five
attribution methods, for the shipped model on every offline test face.

    python scripts/attribution_sanity.py [--faces N] [--keep-complete]

For each test face, the window on the left eye (as seen in the image) placed from the face's
MTCNN landmarks (`crop_landmarks`, `landmark_window`; the mean template where none is found) is
explained by LAM, integrated gradients, SmoothGrad, occlusion and Grad-CAM, for the trained model
and after each step of the cascading re-initialisation of `randomization_groups` (output side
first). Each map is compared with the trained model's by Spearman's rank correlation and SSIM.
A LAM or IG map whose completeness error exceeds TOLERANCE is recomputed with twice the steps,
up to MAX_STEPS (`sanity_check(completeness_tolerance=...)`); the steps kept are in the rows.

Writes ctcnet/weights/ctcnet_reduced_offline_sanity.csv, one row per (face, method, stage), with
the settings in columns; chapter 13 reads it and recomputes the first face's first stages to check
it. On the shared 2-core CPU of the project, 21 faces take about half an hour of one core.
``--keep-complete`` keeps the rows of the faces already in the file whose every map is within
TOLERANCE at the settings below (recomputing them would give the same rows) and computes the
others.
"""

from __future__ import annotations

import argparse
import csv
import time

import pandas as pd
import torch

from ctcnet.analysis import randomization_groups, sanity_check
from ctcnet.course.book import face_batch, faces
from ctcnet.face_regions import crop_landmarks, landmark_window
from ctcnet.weights import default_weights_path, load_model

OUT = default_weights_path().with_name("ctcnet_reduced_offline_sanity.csv")
#: The settings chapter 13 uses in small mode (its live check must reproduce these rows).
SETTINGS = dict(lam_steps=8, n_steps=8, nt_samples=4, occlusion_size=64, occlusion_stride=32,
                sigma=9.6, seed=0)
TOLERANCE, MAX_STEPS = 0.05, 64  # chapter 13's completeness tolerance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=0, help="first N test faces (default all)")
    parser.add_argument("--keep-complete", action="store_true",
                        help="keep the file's rows of faces whose maps are all within TOLERANCE")
    args = parser.parse_args()
    model = load_model(default_weights_path())
    groups = randomization_groups(model)
    rows, kept = [], set()
    if args.keep_complete and OUT.is_file():
        old = pd.read_csv(OUT, keep_default_na=False, dtype=str)
        same = all((old[k] == str(v)).all() for k, v in SETTINGS.items() if k != "seed")
        errors = pd.to_numeric(old["completeness_error"], errors="coerce").abs()
        worst = errors.groupby(old["name"]).max()
        kept = set(worst[worst <= TOLERANCE].index) if same else set()
        for row in old[old["name"].isin(kept)].to_dict("records"):
            steps = {"lam": row["lam_steps"], "ig": row["n_steps"]}.get(row["method"], "")
            rows.append({**row, "steps_used": row.get("steps_used") or steps})
        print(f"kept the rows of {len(kept)} faces whose maps are within {TOLERANCE:.0%}")
    for name, image in faces("test", args.faces or None):
        if name in kept:
            continue
        started = time.process_time()
        window = landmark_window(crop_landmarks(image)[0], "eye")
        batch = face_batch([image])
        result = sanity_check(model, batch["lr"], window, x=batch["lr_up"], groups=groups,
                              lam_rule="midpoint", completeness_tolerance=TOLERANCE,
                              max_steps=MAX_STEPS, **SETTINGS)
        for method in result.maps:
            for k, stage in enumerate(result.stages):
                rows.append({
                    "name": name, "top": window[0], "left": window[1], "size": window[2],
                    "method": method, "stage": k, "stage_label": stage,
                    "spearman": f"{result.spearman[method][k]:.5f}",
                    "ssim": f"{result.ssim[method][k]:.5f}",
                    "completeness_error": (f"{result.completeness[method][k]:.5f}"
                                           if method in result.completeness else ""),
                    "steps_used": str(result.steps[method][k]) if method in result.steps else "",
                    "gradcam_weight_to_gradient": (f"{result.gradcam_weight_to_gradient[k]:.4g}"
                                                   if method == "gradcam" else ""),
                    **{key: value for key, value in SETTINGS.items() if key != "seed"},
                })
        print(f"{name}: window {window}, {time.process_time() - started:.0f} s of CPU", flush=True)
        with open(OUT, "w", newline="") as f:  # after every face: a long run keeps what it did
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(f"{len(rows)} rows -> {OUT}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
