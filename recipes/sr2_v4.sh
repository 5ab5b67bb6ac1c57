#!/usr/bin/env bash
# Recipe for the shipped `sr2` (its defaults): the previous `sr2` (recipes/sr2_v2.sh, 20,000 steps; its
# validation rose 0.10 dB over its last doubling, so more steps or capacity still paid) grown to 8 residual
# blocks at the input resolution, where a light SR network spends its FLOPs (SPAN, RLFN): `--init-from`
# carries every trained block and starts the new ones as the identity, so the run starts from sr2's own
# output and only has to learn what the extra capacity adds. Same data, degradations and optimisation as
# recipes/sr2_v2.sh, again at its full rate (1e-3: a warm restart, the new blocks get as long as sr4's did
# from sr2) with cosine decay over 10,000 steps. Now that the shipped sr2 is this model, start from the
# previous one, which git keeps: `git show a008135:src/sagan_restore/weights/sr2.safetensors > sr2_v2.safetensors`,
# then INIT=sr2_v2.safetensors.
#
#   [INIT=MODEL] bash recipes/sr2_v4.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [BLOCKS] [ITERS] [LR]
#
# `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr2_v5}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
BLOCKS=${4:-8,1,1,1}
ITERS=${5:-10000}
LR=${6:-1e-3}
INIT=${INIT:-sr2}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 2 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 96 --batch 16 \
  --adv-weight 0 --lr "$LR" --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
