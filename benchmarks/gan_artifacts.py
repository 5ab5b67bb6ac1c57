"""The two artefacts of GAN fine-tunes on degraded inputs, measured: invented colour detail and error locked to
the input-pixel grid, for SR models on a paired set (an `lr/` and an `hr/` folder, as recipes/real_world_sets.py
writes them).

    python benchmarks/gan_artifacts.py --set data/real_world/x4_medium MODEL [MODEL ...]

MODEL: a shipped name (its realism end with `name@1`) or a .safetensors file. Per model, means over the set:
- colour detail ratio: energy of the output's fine colour detail (chroma, RGB less its BT.601 luma, minus
  its 1-pixel Gaussian blur) over the ground truth's; 1.0 = as much as the photo, far above = colour speckle;
- grid error: models/losses.py's phase_locked_loss of the output against the ground truth, in 8-bit levels:
  the part of the error that is the same at each position of the input pixels' scale x scale blocks over
  16 x 16 input pixels (the mark a pixel-shuffle tail can repeat in every block);
- PSNR (RGB, 8-bit output, scale pixels shaved), for the price.
Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sagan_restore.infer.loading import load_model
from sagan_restore.metrics import psnr
from sagan_restore.models.filters import chroma, high_frequencies
from sagan_restore.models.losses import phase_locked_loss


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="shipped names (name@REALISM for a realism end) or .safetensors files")
    p.add_argument("--set", type=Path, required=True, help="a paired set: lr/ and hr/ with the same file names")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def read(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]


def loaded(spec: str):
    name, _, realism = spec.partition("@")
    model, _ = load_model(name, realism=float(realism) if realism else 0.0)
    return model.eval()


def measure(model, pairs: list[tuple[Path, Path]]) -> dict[str, float]:
    scale = model.cfg.scale
    colour, grid, scores = [], [], []
    for lr_path, hr_path in pairs:
        with torch.no_grad():
            out = model(read(lr_path)).clamp(0, 1)
        hr = read(hr_path)[..., : out.shape[-2], : out.shape[-1]]
        out = torch.round(out * 255) / 255
        colour.append(float(high_frequencies(chroma(out), 1.0).pow(2).mean()
                            / high_frequencies(chroma(hr), 1.0).pow(2).mean()))
        grid.append(255 * float(phase_locked_loss(out, hr, scale)))
        shave = (slice(None), slice(None), slice(scale, -scale), slice(scale, -scale))
        scores.append(psnr(out[shave][0].permute(1, 2, 0).numpy(), hr[shave][0].permute(1, 2, 0).numpy()))
    return {"colour": float(np.mean(colour)), "grid": float(np.mean(grid)), "psnr": float(np.mean(scores))}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    pairs = [(p, args.set / "hr" / p.name) for p in sorted((args.set / "lr").glob("*.png"))]
    if not pairs:
        sys.exit(f"gan_artifacts.py: no lr/*.png in {args.set}; make the sets with recipes/real_world_sets.py")
    print(f"{args.set} ({len(pairs)} images)\n")
    print("| model | colour detail ratio | grid error (8-bit levels) | RGB PSNR |\n|---|---|---|---|")
    for spec in args.models:
        r = measure(loaded(spec), pairs)
        print(f"| {spec} | {r['colour']:.2f} | {r['grid']:.2f} | {r['psnr']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
