#!/usr/bin/env bash
# Recipe for a grown `denoise`, tried and not shipped (docs/MODELS.md, the `denoise` card): validation 31.77 dB
# against the second cycle's 31.78 on the same held-out crops; McMaster +0.04 / +0.05 / 0.00 dB and Set12
# -0.06 / -0.08 / -0.01 against the shipped model, at 1.45x its time. The shipped denoiser
# (recipes/denoise_v2.sh, 30,000 steps; a second cosine cycle on the same body, recipes/denoise_v3.sh, gained
# only 0.01-0.03 dB, which pointed at its 2.4 M-parameter body) grown to more residual blocks at full
# resolution, as `sr2` was (recipes/sr2_v4.sh, +0.09 dB on Set5 from 4 to 8 blocks there). `--init-from`
# carries every trained block and starts the new ones as the identity, so the run starts from denoise's own
# output. Same data, degradations and losses as recipes/denoise_v2.sh; a warm restart at the full rate (1e-3)
# with cosine decay to 0, new data order (seed 2). Each block at full resolution costs 74 GFLOPs per megapixel (the body: 298).
#
#   [INIT=MODEL] bash recipes/denoise_v4.sh [RUN_DIR] [CORPUS_DIR] [VAL_DIR] [BLOCKS] [ITERS] [LR]
#
# It runs longer than one sitting: `sagan-restore train --resume RUN_DIR` continues it exactly.
set -euo pipefail
RUN=${1:-runs/denoise_v4}
CORPUS=${2:-data/corpus}
VAL=${3:-data/val_photos}
BLOCKS=${4:-3,1,1,1}
ITERS=${5:-8000}
LR=${6:-1e-3}
INIT=${INIT:-denoise}
[ -d "$CORPUS/photos" ] || python recipes/build_corpus.py --out "$CORPUS"
[ -d "$VAL" ] || python recipes/validation_photos.py --out "$VAL"
sagan-restore train --init-from "$INIT" \
  --clean "$CORPUS/photos" --clean "$CORPUS/textures:0.3" --dead-leaves 0.15 --val "$VAL" \
  --task denoise --sigma 0-55 --quantize-share 0.5 --grey-share 0.15 \
  --block res --width 32 --depth 3 --blocks "$BLOCKS" --noise-map --crop 96 --batch 8 \
  --adv-weight 0 --fft-weight 0.05 --lr "$LR" --beta1 0.9 --beta2 0.9 --lr-schedule cosine --lr-decay-from 0 \
  --ema 0.999 --precision auto --iters "$ITERS" --seed 2 \
  --save-every 500 --keep 3 --sample-every 1000 --no-progress --out "$RUN"
