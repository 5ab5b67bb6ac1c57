#!/usr/bin/env bash
# Recipe for `real-restore`: camera noise and JPEG artefacts removed at the same size (`--degrade camera`:
# Poisson-Gaussian sensor noise in linear light, back to sRGB, 8 bits, JPEG 30-95 in most samples; the
# ranges are in data/degradations.py). Fine-tuned from the shipped `denoise` (same network: the same cost
# per megapixel), whose noise-level input is what `enhance --strength` scales. Pure L1 + a small FFT term;
# the optimisation of recipes/denoise_v2.sh with a lower peak rate for a fine-tune. Validated on the
# medium synthetic camera set made from the held-out photos (recipes/real_world_sets.py).
#
#   bash recipes/real_restore.sh [RUN_DIR] [CORPUS_DIR] [REAL_WORLD_SETS]
#
# `sagan-restore train --resume RUN_DIR` continues a run exactly.
set -euo pipefail
RUN=${1:-runs/real_restore}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x1_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from denoise \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x1_medium" \
  --task denoise --degrade camera --grey-share 0.1 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 5e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters 3000 --seed 0 \
  --save-every 250 --keep 3 --sample-every 500 --no-progress --out "$RUN"
