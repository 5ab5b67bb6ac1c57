#!/usr/bin/env bash
# Recipe for the third `denoise`: a second cosine cycle (SGDR's warm restart) from the weights of
# recipes/denoise_v2.sh, whose validation curve was still rising when its schedule ended (31.56 dB at step
# 15,000, 31.75 at 30,000 on the held-out photos, sigma 25). Same body, data, degradations and losses; the
# peak learning rate is half the first cycle's (5e-4, cosine to 0) and the data order is new (seed 1).
#
#   bash recipes/denoise_v3.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [START_MODEL] [ITERS] [FLAGS...]
#
# FLAGS are added last and win: the later cycles in docs/MODELS.md that changed only the data mix ran this
# recipe with `--quantize-share 0.3 --grey-share 0.3 --seed 3` (runs/denoise_v5) and `--grey-share 0.3 --seed
# 3` (runs/denoise_v6, 2,500 steps).
#
# It runs longer than one sitting: `sagan-restore train --resume RUN_DIR` continues it exactly.
# --channels-last (NHWC) changes the speed only. On an AMD EPYC with native bf16 it gave 1.20x the images per
# second of the default layout (1.10-1.27 over rounds; `python benchmarks/train_speed.py`, docs/BENCHMARKS.md
# "Training speed (cpu)", default settings), and 1.16-1.41x on these flags (ad hoc: two alternated 60-step
# runs each). The cycles before runs/denoise_v10, which switched to it at step 3,514, ran without it.
set -euo pipefail
RUN=${1:-runs/denoise_v3}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
START=${4:-denoise}
ITERS=${5:-8000}
EXTRA=("${@:6}")
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$START" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.15 --val "$VAL" \
  --task denoise --sigma 0-55 --quantize-share 0.5 --grey-share 0.15 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 5e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --channels-last --iters "$ITERS" --seed 1 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN" "${EXTRA[@]}"
