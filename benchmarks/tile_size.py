"""What the tile size costs and buys: each model run by `Enhancer` on two photos at several tile sizes and
on the whole photo at once, speed and output quality side by side, in one run.

    python recipes/validation_photos.py --out data/val_photos
    python benchmarks/tile_size.py [--models denoise,real-restore,sr2] [--tiles 256,384,512,768] [--threads 1]

Inputs: the held-out photos of recipes/validation_photos.py (never the test sets), each centre-cropped to
296 x 296 and laid out 3 x 2 into one 888 x 592 photo, so that every tile size really tiles it (detail at
every pixel); and scikit-image's astronaut enlarged to 1152 x 864 (smooth at the pixel scale, as a
camera's large photos are). Sigma-25 protocol noise (seed 0) for the scale-1 models, the clean photo
itself as the SR models' input. Columns:
seconds per input megapixel (the sizes interleaved, median of --reps), PSNR of the tiled output against the
whole-image output (what tiling changes; rounded to 8 bits), and for scale-1 models PSNR against the clean
photo (RGB). Writes the `tile_size` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchdoc import git_commit, replace_section, script_command
from PIL import Image
from skimage import data

from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.protocol import protocol_noisy
from sagan_restore.evaluation.report import markdown_table
from sagan_restore.infer.enhance import Enhancer
from sagan_restore.infer.tiling import AUTO_TILES
from sagan_restore.io import quantize
from sagan_restore.metrics import psnr

SIGMA = 25.0
PANEL = 296  # the smallest held-out photo (chelsea) is 300 pixels high
DEFAULT_MODELS = "denoise,real-restore,sr2"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    p.add_argument("--tiles", default="256,384,512,768", help="tile sizes in input pixels (default 256,384,512,768)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per tile size (default 3)")
    p.add_argument("--val", type=Path, default=Path("data/val_photos"), help="the held-out photos")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    return p.parse_args(argv)


def mosaic(folder: Path) -> np.ndarray:
    """The first six held-out photos, centre-cropped to PANEL x PANEL, in 2 rows of 3 (uint8 RGB)."""
    paths = sorted(folder.glob("*.png"))[:6]
    if len(paths) < 6:
        sys.exit(f"tile_size.py: needs 6 held-out photos in {folder}; run recipes/validation_photos.py --out {folder}")
    panels = []
    for path in paths:
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        if min(h, w) < PANEL:
            sys.exit(f"tile_size.py: {path} is smaller than {PANEL} pixels")
        top, left = (h - PANEL) // 2, (w - PANEL) // 2
        panels.append(img[top: top + PANEL, left: left + PANEL])
    return np.concatenate([np.concatenate(panels[:3], axis=1), np.concatenate(panels[3:], axis=1)], axis=0)


def smooth_photo() -> np.ndarray:
    return np.asarray(Image.fromarray(data.astronaut()).resize((1152, 864), Image.Resampling.BICUBIC))


def measure(name: str, tiles: list[int], photo: str, clean: np.ndarray, reps: int) -> list[dict]:
    """One row per tile size (0 = whole image): median seconds per input MP and the two PSNRs."""
    enhancers = {tile: Enhancer.load(name, tile=tile) for tile in [0, *tiles]}
    scale = enhancers[0].scale
    x = (protocol_noisy(clean, SIGMA, 0) / 255).astype(np.float32) if scale == 1 else clean.astype(np.float32) / 255
    for enhancer in enhancers.values():  # oneDNN builds its kernels on a first call: keep it out of the timing
        enhancer.enhance_pixels(x[:128, :128])
    seconds: dict[int, list[float]] = {tile: [] for tile in enhancers}
    outputs: dict[int, np.ndarray] = {}
    for _ in range(reps):
        for tile, enhancer in enhancers.items():
            began = time.perf_counter()
            outputs[tile] = quantize(enhancer.enhance_pixels(x), 8)
            seconds[tile].append(time.perf_counter() - began)
    megapixels = x.shape[0] * x.shape[1] / 1e6
    rows = []
    for tile in [*tiles, 0]:
        rows.append({"model": name, "photo": photo, "scale": scale, "tile": tile,
                     "s_per_mp": statistics.median(seconds[tile]) / megapixels,
                     "vs_whole": psnr(outputs[tile], outputs[0], data_range=255) if tile else None,
                     "vs_truth": psnr(outputs[tile], clean, data_range=255) if scale == 1 else None})
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = {"held-out mosaic": mosaic(args.val), "astronaut 1152x864": smooth_photo()}
    tiles = [int(t) for t in args.tiles.split(",")]
    rows = []
    for name in args.models.split(","):
        for photo, clean in photos.items():
            for r in measure(name, tiles, photo, clean, args.reps):
                rows.append(r)
                print(r, flush=True)
    fmt = lambda v: "-" if v is None else ("inf" if np.isinf(v) else f"{v:.2f}")  # noqa: E731
    table = [[f"`{r['model']}`", r["photo"], str(r["tile"]) if r["tile"] else "whole image", f"{r['s_per_mp']:.2f}",
              fmt(r["vs_whole"]), fmt(r["vs_truth"])] for r in rows]
    section = "\n".join([
        "## Tile size: speed and quality",
        "",
        f"Generated by `benchmarks/tile_size.py` on commit {git_commit()}: `{script_command()}`",
        "",
        "Each model through `Enhancer` on two photos: the held-out photos of `recipes/validation_photos.py` "
        "cropped to 296 px and laid out 3 x 2 (888x592, detail at every pixel), and scikit-image's astronaut "
        f"enlarged to 1152x864 (smooth at the pixel scale, as large camera photos are); float32, {torch.get_num_threads()} thread(s) on {cpu_name()}, tile "
        f"overlap 32; scale-1 models get sigma-{SIGMA:g} protocol noise, SR models the clean photo as input. "
        f"Seconds per input megapixel: median of {args.reps}, the sizes interleaved in one run (compare them within "
        f"the run: other jobs may share the machine). `enhance` picks "
        f"the largest of {', '.join(map(str, AUTO_TILES))} that fits a quarter of the free memory.",
        "",
        markdown_table(["model", "photo", "tile", "s/MP", "PSNR vs whole-image output, dB", "PSNR vs clean, dB"], table),
    ])
    print(section)
    if not args.no_doc:
        replace_section("tile_size", section)


if __name__ == "__main__":
    main()
