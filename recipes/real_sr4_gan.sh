#!/usr/bin/env bash
# Recipe for `real-sr4`'s realism (GAN) variant: the shipped real-sr4 fine-tuned on the same real-web
# inputs (recipes/real_sr4.sh) with the discriminator of recipes/real_restore_gan.sh, the one that learned
# to tell a fidelity output from a photo: a PatchGAN with instance norm judging the output alone and only
# its fine detail (`--d-highpass 1`), first alone for D_WARMUP steps with G frozen, then beside G at twice
# its learning rate. L1 weight 50, as sr4_gan's (20 overshot there). `enhance --realism R` interpolates the
# weights of the two models, which works because this one starts from the other.
# Not shipped: with these settings the realism end is colour speckle (docs/MODELS.md, the real-world card).
#
#   bash recipes/real_sr4_gan.sh [RUN_DIR] [CORPUS_DIR] [SETS_DIR] [ITERS] [D_WARMUP] [L1_WEIGHT] [FLAGS...]
set -euo pipefail
RUN=${1:-runs/real_sr4_gan}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
ITERS=${4:-1400}
D_WARMUP=${5:-400}
L1=${6:-50}
EXTRA=("${@:7}")
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x4_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from real-sr4 \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x4_medium" \
  --task sr --scale 4 --degrade real-web \
  --block res --width 32 --depth 3 --blocks 1 --crop 192 --batch 8 \
  --adv-weight 1 --l1-weight "$L1" --d-width 32 --d-arch patch --d-norm instance --d-unconditional \
  --d-highpass 1 --d-warmup "$D_WARMUP" --d-lr-mult 2 \
  --lr 1e-4 --beta1 0.5 --beta2 0.999 --lr-decay-from 0.5 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 100 --keep 20 --sample-every 200 --no-progress --out "$RUN" "${EXTRA[@]}"
