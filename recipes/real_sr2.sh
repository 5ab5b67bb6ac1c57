#!/usr/bin/env bash
# Recipe for `real-sr2`: x2 super-resolution of real photos and web images (`--degrade real-web`: half
# Real-ESRGAN's second-order pipeline, half one mild web stage; see recipes/real_sr4.sh for why).
# Fine-tuned from the bicubic `sr2` (recipes/sr2_v2.sh; same network, so the cost per megapixel is
# sr2's), which already knows how to upsample; what it has to learn is to take blur, noise and JPEG
# blocks out instead of enlarging them. Pure L1 + a small FFT term (fidelity); optimisation as
# recipes/denoise_v2.sh (betas 0.9/0.9, cosine to 0), with a lower peak rate for a fine-tune. Validated
# on the medium synthetic real-world x2 set made from the held-out photos (recipes/real_world_sets.py).
#
#   bash recipes/real_sr2.sh [RUN_DIR] [CORPUS_DIR] [REAL_WORLD_SETS] [BICUBIC_MODEL] [BLOCKS]
#
# `sagan-restore train --resume RUN_DIR` continues a run exactly.
set -euo pipefail
RUN=${1:-runs/real_sr2}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
BICUBIC=${4:-sr2}
BLOCKS=${5:-8,1,1,1}  # the architecture of the model it starts from (the shipped sr2: blocks per level)
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x2_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$BICUBIC" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x2_medium" \
  --task sr --scale 2 --degrade real-web \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 128 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr 5e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters 4000 --seed 0 \
  --save-every 250 --keep 3 --sample-every 500 --no-progress --out "$RUN"
