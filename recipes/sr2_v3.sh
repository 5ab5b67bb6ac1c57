#!/usr/bin/env bash
# Experiment: `sr2` v2 (recipes/sr2_v2.sh) fine-tuned on larger crops. v2 trains on 96-pixel HR crops (48
# at the input), so its bottleneck, where the self-attention works, sees 6 x 6 tokens, most of them at the
# crop's border, while a Set5 image gives it 30 x 30 or more. Here the crops are 192 pixels (96 at the
# input; 12 x 12 tokens) at the same pixels per step (batch 4 instead of 16), as SwinIR and HAT end their
# training on larger patches; a short second cosine cycle at a fifth of v2's peak rate.
#
#   bash recipes/sr2_v3.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [X2_MODEL]
#
# `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr2_v3}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
X2=${4:-sr2}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$X2" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 2 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks 4,1,1,1 --crop 192 --batch 4 \
  --adv-weight 0 --lr 2e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters 4000 --seed 1 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
