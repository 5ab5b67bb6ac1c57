#!/usr/bin/env bash
# Recipe for `real-sr4`: x4 super-resolution of real photos and web images. `--degrade real-web`: half the
# samples from Real-ESRGAN's second-order pipeline (blur, resize, noise and JPEG, twice), half from one mild
# web stage (a little blur, an antialiased downscale, mild noise, JPEG); every range in data/degradations.py.
# Real-ESRGAN's pipeline alone (4,000 steps of this recipe with `--degrade real`) taught the network to
# smooth hard: +0.65 / +1.15 dB over bicubic on the medium / heavy sets but -1.0 dB on the light one, and
# -0.8 dB on a photo blurred a little, shrunk 4x with Pillow, mild noise, JPEG 75.
# Fine-tuned from the bicubic `sr4` (recipes/sr4_v2.sh; the first `real-sr4` started from the first
# `sr4`, with `--blocks 1`; same network, so the cost per megapixel is sr4's), which already knows how to
# upsample; what it has to learn is to take blur, noise and JPEG blocks out instead of enlarging them.
# Pure L1 + a small FFT term (fidelity); optimisation as recipes/denoise_v2.sh (betas 0.9/0.9, cosine to
# 0), with a lower peak rate for a fine-tune. Validated on the medium synthetic real-world x4 set made
# from the held-out photos (recipes/real_world_sets.py).
#
#   bash recipes/real_sr4.sh [RUN_DIR] [CORPUS_DIR] [REAL_WORLD_SETS] [BICUBIC_MODEL] [BLOCKS] [UPSAMPLER] [ITERS]
#
# `sagan-restore train --resume RUN_DIR` continues a run exactly.
set -euo pipefail
RUN=${1:-runs/real_sr4}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
BICUBIC=${4:-sr4}
BLOCKS=${5:-8,1,1,1}  # the architecture of BICUBIC (the shipped sr4's): blocks per level and upsampler
UPSAMPLER=${6:-once}
ITERS=${7:-4000}  # on the v2 body validation peaked at step 2,000 of 4,000 (docs/MODELS.md)
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x4_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$BICUBIC" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x4_medium" \
  --task sr --scale 4 --degrade real-web \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --upsampler "$UPSAMPLER" --crop 192 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 5e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 0 \
  --save-every 250 --keep 3 --sample-every 500 --no-progress --out "$RUN"
