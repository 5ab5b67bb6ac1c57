#!/usr/bin/env bash
# Recipe for a third `sr2`: the shipped `sr2` (recipes/sr2_v2.sh; its validation rose 0.10 dB from 10,000
# to 20,000 steps, so more steps or capacity still pay) grown to more residual blocks at the input
# resolution, where a light SR network spends its FLOPs (SPAN, RLFN): `--init-from` carries every trained
# block and starts the new ones as the identity, so the run starts from sr2's own output and only has to
# learn what the extra capacity adds. Same data, degradations and optimisation as recipes/sr2_v2.sh; LR
# defaults to half its peak rate, for a fine-tune (1e-3, its full rate, is a warm restart: the new blocks
# get as long as sr4's did from sr2).
#
#   bash recipes/sr2_v4.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [BLOCKS] [ITERS] [LR]
#
# `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr2_v4}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
BLOCKS=${4:-6,1,1,1}
ITERS=${5:-4000}
LR=${6:-5e-4}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from sr2 \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 2 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 96 --batch 16 \
  --adv-weight 0 --lr "$LR" --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
