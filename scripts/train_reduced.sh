#!/usr/bin/env bash
# Train the shipped `reduced` CTCNet on the offline face set and release it as
# ctcnet/weights/ctcnet_reduced_offline.pt (config + weights, no optimizer state).
# This is the recipe of the shipped file (ctcnet/weights/README.md gives the run's details),
# with the two settings that were defaults then spelled out: validation on the test split (only
# watched, never used to choose) and fp32.
#
#   scripts/train_reduced.sh                      # data in $CTCNET_DATA or ~/.cache/ctcnet/offline_faces
#
# Interrupted (Ctrl-C, crash, kill)? Run it again: training resumes from $OUT/last.pt and gives
# the same result as an uninterrupted run. The release is the LAST checkpoint (best.pt would be
# chosen on the test split here, i.e. selecting on the test set).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/reduced_offline}
STEPS=${STEPS:-1500}
CTCNET=${CTCNET:-"python -m ctcnet"}
WEIGHTS=${WEIGHTS:-ctcnet/weights/ctcnet_reduced_offline.pt}

$CTCNET data offline-faces ${CTCNET_DATA:+--root "$CTCNET_DATA"}
TEST_DIR="${CTCNET_DATA:-$HOME/.cache/ctcnet/offline_faces}/test"

RESUME=()
if [[ -f "$OUT/last.pt" ]]; then RESUME=(--resume); fi
$CTCNET train --preset reduced --data offline-faces \
    --steps "$STEPS" --batch-size 8 --patch-size 64 --lr 5e-4 --schedule cosine \
    --eval-every 250 --save-every 100 --seed 123 --no-progress \
    --val "$TEST_DIR" --precision fp32 --out "$OUT" "${RESUME[@]}"

$CTCNET export "$OUT/last.pt" "$WEIGHTS"
cp "$OUT/log.csv" "${WEIGHTS%.pt}_log.csv"
for protocol in ctcnet dic basicsr; do
  $CTCNET eval --checkpoint "$WEIGHTS" --protocol "$protocol" \
      --data "$TEST_DIR"
done
