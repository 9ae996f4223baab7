#!/usr/bin/env bash
# Chapter 14's ablation models: the `reduced` preset with one module switched off, plus the full
# model, each trained with SEEDS seeds on a short version of the release recipe
# (scripts/train_release.sh): strong augmentation, 64x64 patches then whole faces, cosine decay,
# EMA, bf16 where fast. Seeds run in the outer loop, so a cut-short run still has whole seeds.
#
#   scripts/train_ablations.sh        # runs/ablations/VARIANT_sSEED/{last,ema}.pt and log.csv
#
# Rerunning skips finished runs and resumes an interrupted one. On two cores, run two shells:
#   VARIANTS="full no_fsau" scripts/train_ablations.sh & VARIANTS="no_transformer no_mffu" scripts/train_ablations.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-runs/ablations}
SEEDS=${SEEDS:-"1 2 3"}
VARIANTS=${VARIANTS:-"full no_fsau no_transformer no_mffu"}  # split over two shells to use two cores
STEPS=${STEPS:-200}
FULL_FROM=${FULL_FROM:-175}
CTCNET=${CTCNET:-"python -m ctcnet"}

$CTCNET data offline-faces ${CTCNET_DATA:+--root "$CTCNET_DATA"}

for seed in $SEEDS; do
  for variant in $VARIANTS; do
    case $variant in
      full) SET=() ;;
      no_fsau) SET=(--set use_fsau=false) ;;
      no_transformer) SET=(--set use_transformer=false) ;;
      no_mffu) SET=(--set use_mffu=false) ;;
    esac
    run="$OUT/${variant}_s$seed"
    if [[ -f "$run/ema.pt" ]]; then continue; fi
    RESUME=()
    if [[ -f "$run/last.pt" ]]; then RESUME=(--resume); fi
    $CTCNET train --preset reduced "${SET[@]}" --data offline-faces --val carve:8 \
        --steps "$STEPS" --batch-size 8 --patch-size 64 --full-size-from-step "$FULL_FROM" \
        --lr 5e-4 --schedule cosine --warmup-steps 20 --ema-decay 0.98 --augment strong \
        --precision auto --eval-every "$STEPS" --save-every 50 --seed "$seed" --no-progress \
        --out "$run" "${RESUME[@]}"
  done
done
