#!/usr/bin/env bash
# Recipe for `real-sr2_gan`, the realism end of `real-sr2`: recipes/real_sr4_gan.sh at x2 (the shipped real-sr2
# fine-tuned on its real-web inputs against sr2_gan's discriminator, with --chroma-weight 1 against colour
# speckle and LDL's --artifact-weight 1 against false texture; the EMA is what is saved).
#
#   bash recipes/real_sr2_gan.sh [RUN_DIR] [CORPUS_DIR] [SETS_DIR] [ITERS] [L1_WEIGHT] [INIT] [BLOCKS] [FLAGS...]
#
# INIT: the fidelity model it starts from (default the shipped real-sr2); BLOCKS its blocks per level.
# FLAGS are added last and win.
set -euo pipefail
RUN=${1:-runs/real_sr2_gan}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
ITERS=${4:-1000}
L1=${5:-200}
INIT=${6:-real-sr2}
BLOCKS=${7:-8,1,1,1}  # the architecture of INIT (the shipped real-sr2: blocks per level)
EXTRA=("${@:8}")
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x2_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x2_medium" \
  --task sr --scale 2 --degrade real-web \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 128 --batch 8 \
  --adv-weight 1 --l1-weight "$L1" --d-width 32 --d-arch patch --d-norm batch --d-lr-mult 1 \
  --chroma-weight 1 --artifact-weight 1 --ema 0.999 \
  --lr 2e-4 --beta1 0.5 --beta2 0.999 --lr-decay-from 0.5 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 100 --keep 20 --sample-every 200 --no-progress --out "$RUN" "${EXTRA[@]}"
