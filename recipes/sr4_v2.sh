#!/usr/bin/env bash
# Recipe for the second `sr4`: the body of recipes/sr2_v2.sh at x4, started from the trained x2 weights
# (EDSR's warm start: `--init-from` carries the body and the first x2 upsampling step over; only the second
# step starts fresh), then the same optimisation. Same data and degradations as recipes/sr4.sh: clean
# images downscaled x4 with Pillow's antialiased bicubic, every LR input rounded to 8 bits; 160-pixel HR
# crops (40 at the input).
#
#   bash recipes/sr4_v2.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [X2_MODEL] [ITERS] [UPSAMPLER] [BLOCKS]
#
# UPSAMPLER: steps (EDSR's tail, the shipped `sr4`) or once (ESPCN's; see docs/MODELS.md, `sr4`).
# BLOCKS: residual blocks per level, input resolution first (4,1,1,1); blocks the x2 model lacks start fresh.
#
# X2_MODEL defaults to the shipped `sr2` (the float16 weights of runs/sr2_v2, where the first run of this
# recipe started from float32 ones).
#
# It runs longer than one sitting: `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr4_v2}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
X2=${4:-sr2}
ITERS=${5:-10000}
UPSAMPLER=${6:-steps}
BLOCKS=${7:-4,1,1,1}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$X2" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 4 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --upsampler "$UPSAMPLER" --crop 160 --batch 16 \
  --adv-weight 0 --lr 1e-3 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 0 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
