#!/usr/bin/env bash
# Recipe for the second `denoise`: the winner of benchmarks/budget.py at equal CPU time (docs/BENCHMARKS.md,
# "Equal CPU budgets: denoise"): today's residual U-Net body trained with NAFNet's optimisation (lr 1e-3,
# betas (0.9, 0.9), cosine decay to 0 over the run), plus the two changes that gained on NAFNet blocks
# there: FFDNet's noise-level map from the built-in estimator (still blind) and a frequency (FFT) loss
# term. Same data and degradations as recipes/denoise.sh: blind Gaussian sigma 0..55, colour and grey
# (15% of crops made grey), half the inputs 8-bit (clipped and rounded, as files users bring are).
# The EMA of the weights (0.999) is what validation and the packaged model use.
#
#   bash recipes/denoise_v2.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR]
#
# It runs longer than one sitting: `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/denoise_v2}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.15 --val "$VAL" \
  --task denoise --sigma 0-55 --quantize-share 0.5 --grey-share 0.15 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 1e-3 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters 30000 --seed 0 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
