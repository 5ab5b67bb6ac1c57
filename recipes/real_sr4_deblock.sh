#!/usr/bin/env bash
# Recipe for the shipped `real-sr4`, its second stage: the first `real-sr4` (recipes/real_sr4.sh, 4,000
# steps) fine-tuned 1,000 steps more on the same real-web inputs with `--block-weight 1`: the output's steps across the input's JPEG block
# boundaries (every 32 output pixels at x4) are held to the photo's own (models/losses.py,
# block_boundary_loss). The first left the 8x8 JPEG grid in its output (blockiness 1.22 / 1.16 / 1.26 on
# the web / light / medium synthetic sets against the ground truth's 1.02), since L1 sees a block left too
# bright or dark as an error spread over its area and cannot tell it from the image's shading. Otherwise the
# first recipe's loss and optimiser, at a fine-tune's lower peak rate; docs/MODELS.md has the comparison
# with the same 1,000 steps without the term, and with a one-sided form of it, which only charged steps
# larger than the photo's and so taught the network to flatten the grid lines (blockiness 0.24-0.43).
#
#   bash recipes/real_sr4_deblock.sh [RUN_DIR] [CORPUS_DIR] [REAL_WORLD_SETS] [INIT] [BLOCK_WEIGHT] [ITERS]
#
# INIT: the first real-sr4, as its recipe's run folder left it or as shipped before this one replaced it:
# `git show 9e8369e:src/sagan_restore/weights/real-sr4.safetensors > DIR/real-sr4-v1.safetensors` and the
# same commit's sr4.safetensors into DIR (it is stored as a difference of that file). The shipped run
# started from the name `real-sr4` while that was the first one.
# `sagan-restore train --resume RUN_DIR` continues a run exactly.
set -euo pipefail
RUN=${1:-runs/real_sr4_deblock}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
INIT=${4:-runs/real_sr4}
BLOCK_WEIGHT=${5:-1}
ITERS=${6:-1000}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x4_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x4_medium" \
  --task sr --scale 4 --degrade real-web \
  --block res --width 32 --depth 3 --blocks 8,1,1,1 --upsampler once --crop 192 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --block-weight "$BLOCK_WEIGHT" \
  --lr 2e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 250 --keep 2 --sample-every 1000 --no-progress --out "$RUN"
