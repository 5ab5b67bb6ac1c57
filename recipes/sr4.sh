#!/usr/bin/env bash
# Recipe for the shipped `sr4` model: x4 super-resolution of clean images downscaled with bicubic
# (Pillow's antialiased bicubic, like MATLAB's imresize that made Set5's LR images). Every LR input is
# rounded to 8 bits, as LR files are. Pure L1 (fidelity); the realism variant is fine-tuned from it by
# recipes/sr4_gan.sh. The generator runs at the low resolution and upsamples at its end, so a step costs
# about 1/16 of a denoising step at the same output size; bf16 autocast doubles CPU speed.
#
#   bash recipes/sr4.sh [RUN_DIR] [CORPUS_DIR]
#
# Same seed, same samples in the same order; `sagan-restore train --resume RUN_DIR` continues a run.
set -euo pipefail
RUN=${1:-runs/sr4}
CORPUS=${2:-data/corpus}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
sagan-restore train \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 \
  --task sr --scale 4 --quantize-share 1 \
  --width 32 --depth 3 --blocks 1 --crop 160 --batch 16 --precision bf16 --ema 0.999 \
  --adv-weight 0 --lr 4e-4 --beta1 0.9 --lr-decay-from 0.5 --iters 5000 --seed 0 \
  --save-every 250 --sample-every 500 --out "$RUN"
