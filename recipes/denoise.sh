#!/usr/bin/env bash
# Recipe for the shipped `denoise` model: a blind colour denoiser for Gaussian noise sigma 0..55 that also
# handles grey images (15% of crops are made grey) and 8-bit files (half of the inputs are clipped and
# rounded, as files users bring are). Pure L1 (fidelity): the GAN variant is fine-tuned from it.
#
#   bash recipes/denoise.sh [RUN_DIR] [CORPUS_DIR]
#
# Re-running it with the same seed gives the same samples in the same order (see data/datasets.py);
# `sagan-restore train --resume RUN_DIR` continues an interrupted run.
set -euo pipefail
RUN=${1:-runs/denoise}
CORPUS=${2:-data/corpus}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
sagan-restore train \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.15 \
  --task denoise --sigma 0-55 --quantize-share 0.5 --grey-share 0.15 \
  --width 32 --depth 3 --blocks 1 --crop 96 --batch 8 \
  --adv-weight 0 --lr 3e-4 --beta1 0.9 --lr-decay-from 0.5 --iters 9000 --seed 0 \
  --save-every 250 --sample-every 500 --out "$RUN"
