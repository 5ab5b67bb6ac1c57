#!/usr/bin/env python3
"""A model plus the difference between two others of its architecture, weight by weight (task arithmetic):

    python recipes/transfer_difference.py real-sr4 --minus sr4 --plus sr4 --plus-realism 1 \
        --out runs/stage_rsr4_arith/rsr4_gan.safetensors

writes real-sr4 + (sr4_gan - sr4): what the GAN fine-tune of `sr4` changed, laid on `real-sr4`, which was
fine-tuned from the same `sr4`. Used to try a realism end for `real-sr4` without GAN training, and as the
start of one (docs/MODELS.md, the real-world models' card). Models are names or paths, as `--model`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sagan_restore.checkpoint import save_generator
from sagan_restore.infer.loading import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base", help="the model the difference is added to")
    p.add_argument("--minus", required=True, help="the model the difference starts from")
    p.add_argument("--plus", required=True, help="the model the difference goes to")
    p.add_argument("--plus-realism", type=float, default=0.0,
                   help="realism of --plus (1: its GAN variant, as `enhance --realism 1` loads it)")
    p.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    args = p.parse_args()
    base, info = load_model(args.base, realism=0)
    minus, _ = load_model(args.minus, realism=0)
    plus, _ = load_model(args.plus, realism=args.plus_realism)
    if not base.cfg == minus.cfg == plus.cfg:
        raise SystemExit(f"transfer_difference.py: the three architectures differ: {base.cfg}, {minus.cfg}, "
                         f"{plus.cfg}")
    b, m, q = base.state_dict(), minus.state_dict(), plus.state_dict()
    with torch.no_grad():
        base.load_state_dict({name: b[name] + (q[name] - m[name]) for name in b})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_generator(args.out, base, info={"task": info.get("task"), "recipe": "recipes/transfer_difference.py",
                                         "made_of": f"{args.base} + ({args.plus} r{args.plus_realism:g} - "
                                                    f"{args.minus})"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
