#!/usr/bin/env bash
# Recipe for the second stage of the shipped `real-sr4` and `real-sr2`: the first (recipes/real_sr4.sh,
# recipes/real_sr2.sh, 4,000 steps each) fine-tuned 1,000 steps more on the same real-web inputs with
# `--block-weight 1`: the output's steps across the input's JPEG block boundaries (every 8 x SCALE output
# pixels) are held to the photo's own (models/losses.py, block_boundary_loss). The first stage left the
# 8x8 JPEG grid in its output (blockiness 1.22 / 1.16 / 1.26 on the x4 web / light / medium synthetic sets
# against the ground truth's 1.02), since L1 sees a block left too bright or dark as an error spread over
# its area and cannot tell it from the image's shading. Otherwise the first stage's loss, crops and
# optimiser, at a fine-tune's lower peak rate; docs/MODELS.md has the comparison with the same 1,000 steps
# without the term, and with a one-sided form of it, which only charged steps larger than the photo's and
# so taught the network to flatten the grid lines (blockiness 0.24-0.43).
#
#   bash recipes/real_sr_deblock.sh SCALE [RUN_DIR] [CORPUS_DIR] [REAL_WORLD_SETS] [INIT] [BLOCK_WEIGHT] [ITERS]
#
# SCALE: 4 or 2. INIT: the first stage, as its recipe's run folder left it or as shipped before the second
# replaced it: `git show 9e8369e:src/sagan_restore/weights/real-sr4.safetensors > DIR/real-sr4-v1.safetensors`
# and that commit's sr4.safetensors into DIR (it is stored as a difference of that file; real-sr2 and
# sr2.safetensors likewise). The shipped runs started from the names `real-sr4` and `real-sr2` while those
# were the first stage.
# `sagan-restore train --resume RUN_DIR` continues a run exactly.
set -euo pipefail
SCALE=${1:?SCALE: 4 or 2}
RUN=${2:-runs/real_sr${SCALE}_deblock}
CORPUS=${3:-data/corpus}
SETS=${4:-data/real_world}
INIT=${5:-runs/real_sr${SCALE}}
BLOCK_WEIGHT=${6:-1}
ITERS=${7:-1000}
case "$SCALE" in
  4) SHAPE=(--crop 192 --upsampler once) ;;  # as recipes/real_sr4.sh trained the first stage
  2) SHAPE=(--crop 128 --upsampler steps) ;;  # as recipes/real_sr2.sh
  *) echo "real_sr_deblock.sh: SCALE must be 4 or 2, not $SCALE" >&2; exit 2 ;;
esac
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x${SCALE}_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x${SCALE}_medium" \
  --task sr --scale "$SCALE" --degrade real-web \
  --block res --width 32 --depth 3 --blocks 8,1,1,1 "${SHAPE[@]}" --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --block-weight "$BLOCK_WEIGHT" \
  --lr 2e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 250 --keep 2 --sample-every 1000 --no-progress --out "$RUN"
