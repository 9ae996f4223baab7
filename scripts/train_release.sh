#!/usr/bin/env bash
# Train the shipped `reduced` CTCNet (ctcnet/weights/ctcnet_reduced_offline.pt) with the
# issue-9 recipe: strong augmentation, 64x64 patches then whole 128x128 faces, cosine decay,
# EMA weights, bf16 where the CPU is fast at it. Validation is on eight faces carved from the
# training identities (`--val carve:8`, identity-disjoint from train and test); the test split is
# touched only by the final `ctcnet eval`.
#
#   scripts/train_release.sh          # data in $CTCNET_DATA or ~/.cache/ctcnet/offline_faces
#
# Interrupted? Run it again: it resumes from $OUT/last.pt. The released weights are those of the
# LAST step, EMA or raw, whichever scores higher on the carved validation faces
# (scripts/release_choice.py; no step is chosen by a score, and the test faces play no part).
# That script also reports, on the test faces with paired CIs, EMA - raw and what the whole-face
# phase added (the last step against $OUT/step_3500.pt, kept at the end of the patch phase).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/reduced_release}
STEPS=${STEPS:-4000}
FULL_FROM=${FULL_FROM:-3550}
PYTHON=${PYTHON:-python}
CTCNET=${CTCNET:-"$PYTHON -m ctcnet"}
WEIGHTS=${WEIGHTS:-ctcnet/weights/ctcnet_reduced_offline.pt}

$CTCNET data offline-faces ${CTCNET_DATA:+--root "$CTCNET_DATA"}
TEST_DIR="${CTCNET_DATA:-$HOME/.cache/ctcnet/offline_faces}/test"

RESUME=()
if [[ -f "$OUT/last.pt" ]]; then RESUME=(--resume); fi
$CTCNET train --preset reduced --data offline-faces --val carve:8 \
    --steps "$STEPS" --batch-size 8 --patch-size 64 --full-size-from-step "$FULL_FROM" \
    --lr 5e-4 --schedule cosine --warmup-steps 100 --ema-decay 0.999 --augment strong \
    --precision auto --eval-every 200 --save-every 100 --keep-every 3500 --seed 2026 --no-progress \
    --out "$OUT" "${RESUME[@]}"

$PYTHON scripts/release_choice.py "$OUT" "$OUT/step_3500.pt"   # writes $OUT/release.pt
$CTCNET export "$OUT/release.pt" "$WEIGHTS"
cp "$OUT/log.csv" "${WEIGHTS%.pt}_log.csv"
$CTCNET eval --checkpoint "$WEIGHTS" --protocol ctcnet --data "$TEST_DIR"
