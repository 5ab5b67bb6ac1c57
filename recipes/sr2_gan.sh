#!/usr/bin/env bash
# Recipe for the `sr2` realism variant: the shipped fidelity sr2 model (recipes/sr2_v2.sh; before it is
# packaged, pass its run folder) fine-tuned with the conditional PatchGAN (BCE) plus L1, as
# recipes/denoise_gan.sh does for the denoiser. `enhance --realism R` interpolates the weights of the two
# models, so the flags must give the fidelity model's architecture.
#
#   bash recipes/sr2_gan.sh [RUN_DIR] [CORPUS_DIR] [FIDELITY_MODEL] [BLOCKS]
set -euo pipefail
RUN=${1:-runs/sr2_gan}
CORPUS=${2:-data/corpus}
FIDELITY=${3:-sr2}
BLOCKS=${4:-8,1,1,1}  # the architecture of the model it starts from (the shipped sr2: blocks per level)
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
sagan-restore train --init-from "$FIDELITY" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.1 \
  --task sr --scale 2 --quantize-share 1 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --crop 96 --batch 8 --precision bf16 \
  --adv-weight 1 --l1-weight 20 --d-width 32 --d-norm batch --lr 2e-4 --beta1 0.5 --lr-decay-from 0.5 --iters 1000 --seed 1 \
  --save-every 100 --keep 20 --sample-every 100 --out "$RUN"
