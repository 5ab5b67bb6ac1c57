#!/usr/bin/env bash
# Recipe for `real-restore`'s realism (GAN) variant: the shipped fidelity model fine-tuned on the same
# camera noise + JPEG inputs with a discriminator plus L1, so `enhance --realism R` can trade the fidelity
# end's smoothness for photo-like grain and texture. No pretrained network (VGG, LPIPS) is used: none can be
# had here. `enhance --realism` interpolates the weights of the two models, which works because this one
# starts from the other.
#
# The discriminator is the one that learned to tell real-restore's output from its targets (docs/MODELS.md,
# the real-world models' card, where eight others stayed at chance): a PatchGAN with instance norm that
# judges the output alone (Real-ESRGAN's unconditional D) and only its fine detail (`--d-highpass 1`, the
# image minus its 1-pixel Gaussian blur: Fritsche et al. 2019's frequency separation). It first learns alone
# for D_WARMUP steps with G frozen, then both train; D at twice G's learning rate.
#
#   bash recipes/real_restore_gan.sh [RUN_DIR] [CORPUS_DIR] [SETS_DIR] [ITERS] [D_WARMUP] [L1_WEIGHT] [FLAGS...]
#
# FLAGS go last to `sagan-restore train`, so they override the above (benchmarks/gan_ends.py uses them to
# compare discriminators, e.g. `--d-highpass 0` or `--d-arch unet`).
set -euo pipefail
RUN=${1:-runs/real_restore_gan}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
ITERS=${4:-1400}
D_WARMUP=${5:-400}
L1=${6:-20}
EXTRA=("${@:7}")
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x1_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
sagan-restore train --init-from real-restore \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x1_medium" \
  --task denoise --degrade camera --grey-share 0.1 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 1 --l1-weight "$L1" --d-width 32 --d-arch patch --d-norm instance --d-unconditional \
  --d-highpass 1 --d-warmup "$D_WARMUP" --d-lr-mult 2 \
  --lr 1e-4 --beta1 0.5 --beta2 0.999 --lr-decay-from 0.5 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 100 --keep 20 --sample-every 200 --no-progress --out "$RUN" "${EXTRA[@]}"
