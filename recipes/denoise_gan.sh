#!/usr/bin/env bash
# Recipe for the `denoise` realism variant: the shipped fidelity denoiser fine-tuned with the conditional
# PatchGAN (BCE) plus L1, the pix2pix objective with L1 weighted down so the adversarial term can move
# the output off the blurry conditional mean. `enhance --realism R` interpolates the weights of the two
# models (see infer/loading.py interpolate_weights), which works because this one starts from the other.
# L1 weight 5 was chosen on the held-out photos (sigma 25, realism 1): weight 20 gave sharpness 0.485 for
# -0.16 dB, 5 gave 0.518 for -0.17 dB, 2 gave 0.471 for -0.06 dB (the fidelity end: 0.447).
#
#   bash recipes/denoise_gan.sh [RUN_DIR] [CORPUS_DIR] [FIDELITY_MODEL]
set -euo pipefail
RUN=${1:-runs/denoise_gan}
CORPUS=${2:-data/corpus}
FIDELITY=${3:-denoise}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
sagan-restore train --init-from "$FIDELITY" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.15 \
  --task denoise --sigma 0-55 --quantize-share 0.5 --grey-share 0.15 \
  --block res --width 32 --depth 3 --blocks 1 --noise-map --crop 64 --batch 8 --precision bf16 \
  --adv-weight 1 --l1-weight 5 --d-width 32 --d-norm batch --lr 2e-4 --beta1 0.5 --lr-decay-from 0.5 --iters 1000 --seed 1 \
  --save-every 100 --keep 20 --sample-every 100 --out "$RUN"
