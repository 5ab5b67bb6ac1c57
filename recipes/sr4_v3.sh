#!/usr/bin/env bash
# Experiment: `sr4` (recipes/sr4_v2.sh) with ESPCN's and SPAN's tail (`--upsampler once`: one 3x3 conv to
# 3 x 16 channels at the input resolution, one x4 pixel shuffle) in place of EDSR's two conv + shuffle
# steps and the conv at the output size, which cost 396 of its 914 GFLOPs per input megapixel and keep it
# at 2.7x SPAN's time per megapixel in float32. The body carries over from the second `sr4`
# (`--init-from`); only the new tail starts fresh, so a short cosine cycle at half v2's peak rate, with the
# same data, degradations and crops.
#
#   bash recipes/sr4_v3.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [START_MODEL] [ITERS]
#
# `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/sr4_v3_once}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
START=${4:-runs/sr4_v3}  # the second sr4 (4,1,1,1, steps); its float16 weights: sr4.safetensors at 5d8202c
ITERS=${5:-3000}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$START" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 --val "$VAL" \
  --task sr --scale 4 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks 4,1,1,1 --upsampler once --crop 160 --batch 16 \
  --adv-weight 0 --lr 5e-4 --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 0 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
