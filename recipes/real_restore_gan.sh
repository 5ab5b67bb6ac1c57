#!/usr/bin/env bash
# Recipe for `real-restore`'s realism (GAN) variant: the shipped fidelity model fine-tuned on the same
# camera noise + JPEG inputs with a conditional discriminator plus L1, so `enhance --realism R` can trade
# the fidelity end's smoothness for photo-like grain and texture. benchmarks/gan_ends.py compares the
# discriminators; none has learned yet (docs/MODELS.md, the real-world models' card). D_ARCH patch is
# pix2pix's PatchGAN (batch norm), unet Real-ESRGAN's U-Net discriminator with spectral norm; FM > 0 adds feature
# matching on D's features (pix2pixHD). No pretrained network (VGG, LPIPS) is used: none can be had here.
# `enhance --realism` interpolates the weights of the two models, which works because this one starts
# from the other.
#
#   bash recipes/real_restore_gan.sh [RUN_DIR] [CORPUS_DIR] [SETS_DIR] [D_ARCH] [FM] [ITERS]
set -euo pipefail
RUN=${1:-runs/real_restore_gan}
CORPUS=${2:-data/corpus}
SETS=${3:-data/real_world}
D_ARCH=${4:-unet}
FM=${5:-10}
ITERS=${6:-800}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$SETS/x1_medium" ] || python recipes/real_world_sets.py --photos data/val_photos --out "$SETS"
D_FLAGS=(--d-arch "$D_ARCH")
[ "$D_ARCH" = patch ] && D_FLAGS+=(--d-norm batch)
sagan-restore train --init-from real-restore \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --val "$SETS/x1_medium" \
  --task denoise --degrade camera --grey-share 0.1 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 96 --batch 8 \
  --adv-weight 1 --l1-weight 20 --fm-weight "$FM" --d-width 32 "${D_FLAGS[@]}" \
  --lr 1e-4 --beta1 0.5 --beta2 0.999 --lr-decay-from 0.5 --precision auto --iters "$ITERS" --seed 1 \
  --save-every 100 --keep 10 --sample-every 200 --no-progress --out "$RUN"
