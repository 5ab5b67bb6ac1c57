#!/usr/bin/env bash
# Recipe for the second `sr2`: the winner of `benchmarks/budget.py --task sr --scale 2` at equal CPU time
# (docs/BENCHMARKS.md, "Equal CPU budgets: sr2"): the U-Net with 4 residual blocks at the input
# resolution in the encoder and 4 in the decoder (one at each coarser level, SAGAN self-attention at the
# bottleneck), trained with NAFNet's optimisation (lr 1e-3, betas (0.9, 0.9), cosine decay to 0 over the
# run). Same data and degradations as recipes/sr2.sh: clean images downscaled with Pillow's antialiased
# bicubic, every LR input rounded to 8 bits. The EMA of the weights (0.999) is what validation and the
# packaged model use. x4 starts from these weights (recipes/sr4_v2.sh, `--init-from`).
#
#   bash recipes/sr2_v2.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [BLOCKS] [ITERS]
#
# BLOCKS: residual blocks per level, input resolution first (4,1,1,1 for the second `sr2`).
# LAUNCH (environment): what runs `train`; `LAUNCH="torchrun --standalone --nproc-per-node 2 -m
# sagan_restore" bash recipes/sr2_v2.sh ...` splits each batch of 16 over two CPU processes (gloo); the
# global batch stays 16 (measured here: 1.3x one process's steps per second on the 2 cores).
#
# It runs longer than one sitting: `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr2_v2}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
BLOCKS=${4:-4,1,1,1}
ITERS=${5:-20000}
LAUNCH=${LAUNCH:-sagan-restore}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
$LAUNCH train \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 2 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 96 --batch 16 \
  --adv-weight 0 --lr 1e-3 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 0 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
