#!/usr/bin/env bash
# Recipe for a `real-sr4` realism (GAN) variant, not shipped (docs/MODELS.md, the real-world models' card):
# the shipped real-sr4 fine-tuned on the same real-web inputs (recipes/real_sr4.sh) with the discriminator
# of recipes/real_restore_gan.sh, the one that learned to tell a fidelity output from a photo: a PatchGAN
# with instance norm judging only the fine detail (`--d-highpass 1`), first alone for D_WARMUP steps with
# G frozen, then beside G at twice its learning rate. Unlike real-restore's it is conditional (it sees the
# bicubic-upscaled input beside the output): judging the output alone with L1 weight 50, G answered with
# colour speckle. With these defaults (conditional, L1 weight 100) the realism end reaches the ground
# truth's sharpness but invents a repeating texture, so it is not shipped either. Nor were two runs with
# sr4_gan's discriminator instead (FLAGS: --crop 128 --d-norm batch --d-highpass 0 --d-lr-mult 1 --lr 2e-4,
# D_WARMUP 0), from real-sr4 and from real-sr4 + (sr4_gan - sr4) (recipes/transfer_difference.py): the same
# per-pixel grid and colour speckle.
#
#   bash recipes/real_sr4_gan.sh [RUN_DIR] [CORPUS_DIR] [SETS_DIR] [ITERS] [D_WARMUP] [L1_WEIGHT] [INIT] [FLAGS...]
#
# INIT: the fidelity model it starts from (default the shipped real-sr4, whose architecture the flags give;
# for the previous one, runs/real_sr4_v3, add --blocks 4,1,1,1 --upsampler steps). FLAGS are added last and win.
set -euo pipefail
RUN=${1:-runs/real_sr4_gan}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
ITERS=${4:-1400}
D_WARMUP=${5:-400}
L1=${6:-100}
INIT=${7:-real-sr4}
EXTRA=("${@:8}")
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x4_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x4_medium" \
  --task sr --scale 4 --degrade real-web \
  --block res --width 32 --depth 3 --blocks 8,1,1,1 --upsampler once --crop 192 --batch 8 \
  --adv-weight 1 --l1-weight "$L1" --d-width 32 --d-arch patch --d-norm instance \
  --d-highpass 1 --d-warmup "$D_WARMUP" --d-lr-mult 2 \
  --lr 1e-4 --beta1 0.5 --beta2 0.999 --lr-decay-from 0.5 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 100 --keep 20 --sample-every 200 --no-progress --out "$RUN" "${EXTRA[@]}"
