#!/usr/bin/env bash
# Recipe for `real-restore_light`, the light end of `enhance --strength` for real-restore: the shipped
# real-restore fine-tuned on the same camera inputs (Poisson-Gaussian sensor noise, 8 bits, JPEG 30-95 in
# 80%) with the sensor's noisy photo as the target (`--keep-noise`), so it removes the file's JPEG and
# 8-bit artefacts and keeps the grain. `--strength S` blends the weights, S * real-restore + (1 - S) *
# light (network interpolation, as Real-ESRGAN's --denoise_strength), which works because this one starts
# from real-restore. Validation: the held-out photos with the same degradation and the noisy target.
#
#   bash recipes/real_restore_light.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [ITERS]
set -euo pipefail
RUN=${1:-runs/real_restore_light}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
ITERS=${4:-1500}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from real-restore \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$VAL" \
  --task denoise --degrade camera --keep-noise --grey-share 0.1 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 2e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.998 --precision auto --iters "$ITERS" --seed 2 \
  --save-every 250 --keep 3 --sample-every 500 --no-progress --out "$RUN"
