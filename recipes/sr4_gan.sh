#!/usr/bin/env bash
# Recipe for the `sr4` realism variant: the fidelity sr4 model (recipes/sr4_v2.sh; before it is packaged,
# pass its run folder) fine-tuned with the conditional PatchGAN (BCE) plus L1, as recipes/denoise_gan.sh
# does for the denoiser. `enhance --realism R` interpolates the weights of the two models, so the flags
# must give the fidelity model's architecture (the first `sr4_gan`, of the first `sr4`, had `--blocks 1`).
#
#   bash recipes/sr4_gan.sh [RUN_DIR] [CORPUS_DIR] [FIDELITY_MODEL] [L1_WEIGHT] [BLOCKS] [UPSAMPLER]
#
# BLOCKS and UPSAMPLER: the fidelity model's (default the shipped sr4's, 8,1,1,1 and once; the second sr4,
# runs/sr4_v3, was 4,1,1,1 and steps).
set -euo pipefail
RUN=${1:-runs/sr4_gan}
CORPUS=${2:-data/corpus}
FIDELITY=${3:-sr4}
L1=${4:-100}
BLOCKS=${5:-8,1,1,1}
UPSAMPLER=${6:-once}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
sagan-restore train --init-from "$FIDELITY" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 \
  --task sr --scale 4 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --upsampler "$UPSAMPLER" --crop 128 --batch 8 --precision bf16 \
  --adv-weight 1 --l1-weight "$L1" --d-width 32 --d-norm batch --lr 2e-4 --beta1 0.5 --lr-decay-from 0.5 --iters 1000 --seed 1 \
  --save-every 100 --keep 20 --sample-every 100 --out "$RUN"
