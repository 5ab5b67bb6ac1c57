"""What bf16 costs and buys: each shipped model run by `Enhancer` in float32 and in bf16 autocast (what
`enhance --precision auto` picks on a CPU with native bf16) on the same inputs, in one run.

    python recipes/validation_photos.py --out data/val_photos
    python benchmarks/precision.py [--models denoise,sr2,sr4] [--threads 1] [--val data/val_photos]

Inputs: the held-out photos of recipes/validation_photos.py (never the test sets), degraded for each model's
task: Gaussian noise sigma 25 with the protocol's seeds for the scale-1 models, the SR protocol's bicubic
downscale (8 bits) for the SR models. PSNR (dB): RGB for scale 1, BT.601 Y with `scale` pixels shaved for
SR, outputs rounded to 8 bits, mean over the photos. Seconds: the network over each whole photo
(`enhance_pixels`, tiles as `enhance` picks them), the two precisions interleaved photo by photo, summed
over the photos and divided by their input megapixels; the ratio compares the two sums of the same run.
Writes the `precision` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchdoc import git_commit, replace_section, script_command
from PIL import Image

from sagan_restore.devices import cpu_has_native_bf16
from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.protocol import Condition, bicubic_input, protocol_noisy, score
from sagan_restore.evaluation.report import markdown_table
from sagan_restore.infer.enhance import Enhancer

SIGMA = 25.0
DEFAULT_MODELS = "denoise,real-restore,sr2,real-sr2,sr4,real-sr4"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated (default {DEFAULT_MODELS})")
    p.add_argument("--val", type=Path, default=Path("data/val_photos"), help="the held-out photos")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    return p.parse_args(argv)


def load_photos(folder: Path) -> list[np.ndarray]:
    paths = sorted(folder.glob("*.png"))
    if not paths:
        sys.exit(f"precision.py: no held-out photos in {folder}; run recipes/validation_photos.py --out {folder}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def degraded(clean: np.ndarray, index: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(input in [0, 1], the ground truth it is scored against) for a model of this scale."""
    if scale > 1:
        h, w = clean.shape[:2]
        clean = clean[: h // scale * scale, : w // scale * scale]
        return bicubic_input(clean, scale), clean
    return (protocol_noisy(clean, SIGMA, index) / 255).astype(np.float32), clean


def measure(name: str, enhancers: dict[bool, Enhancer], photos: list[np.ndarray]) -> dict:
    """`enhancers`: half (False: float32, True: bf16) -> the model loaded in that precision."""
    scale = enhancers[False].scale
    condition = Condition("sr", scale=scale) if scale > 1 else Condition("denoise", sigma=SIGMA)
    seconds = {False: 0.0, True: 0.0}
    psnrs: dict[bool, list[float]] = {False: [], True: []}
    megapixels = 0.0
    for i, clean in enumerate(photos):
        x, truth = degraded(clean, i, scale)
        megapixels += x.shape[0] * x.shape[1] / 1e6
        for half, enhancer in enhancers.items():
            began = time.perf_counter()
            out = enhancer.enhance_pixels(x)
            seconds[half] += time.perf_counter() - began
            psnrs[half].append(score(out, truth, condition)[0])
    return {"model": name, "scale": scale, "precision": enhancers[True].precision,
            "psnr": {half: float(np.mean(v)) for half, v in psnrs.items()},
            "s_per_mp": {half: s / megapixels for half, s in seconds.items()}}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    photos = load_photos(args.val)
    # One warm-up forward each, so that neither precision pays oneDNN's first-call kernel builds.
    warm = [photos[0][:64, :64]]
    results = []
    for name in args.models.split(","):
        enhancers = {half: Enhancer.load(name, half=half) for half in (False, True)}
        measure(name, enhancers, warm)
        results.append(measure(name, enhancers, photos))
        r = results[-1]
        print(f"{name}: {r['psnr'][False]:.3f} / {r['psnr'][True]:.3f} dB, "
              f"{r['s_per_mp'][False]:.2f} / {r['s_per_mp'][True]:.2f} s/MP", flush=True)
    rows = [[f"`{r['model']}`", "Y, x%d" % r["scale"] if r["scale"] > 1 else f"RGB, sigma {SIGMA:g}",
             f"{r['psnr'][False]:.3f}", f"{r['psnr'][True]:.3f}", f"{r['psnr'][True] - r['psnr'][False]:+.3f}",
             f"{r['s_per_mp'][False]:.2f}", f"{r['s_per_mp'][True]:.2f}",
             f"{r['s_per_mp'][True] / r['s_per_mp'][False]:.2f}x"] for r in results]
    half_name = results[0]["precision"] if results else "bfloat16"
    native = "native bf16 (AVX512-BF16 or AMX)" if cpu_has_native_bf16() else "no native bf16: half stays float32"
    section = "\n".join([
        "## Precision: float32 against bf16 autocast",
        "",
        f"Generated by `benchmarks/precision.py` on commit {git_commit()}: `{script_command()}`",
        "",
        f"Each shipped model through `Enhancer` in float32 and in {half_name} autocast (`enhance --precision "
        f"half`; the default `auto` picks it on this CPU), on {cpu_name()} ({native}), "
        f"{torch.get_num_threads()} thread(s), the {len(photos)} held-out photos of `recipes/validation_photos.py`: "
        f"sigma-{SIGMA:g} protocol noise for the scale-1 models, the SR protocol's bicubic downscale for the SR "
        "models, outputs rounded to 8 bits. Seconds per input megapixel: the network over whole photos, the "
        "two precisions interleaved, in one run.",
        "",
        markdown_table(["model", "PSNR", "float32 dB", "bf16 dB", "difference", "float32 s/MP", "bf16 s/MP",
                        "bf16 / float32 time"], rows),
    ])
    print(section)
    if not args.no_doc:
        replace_section("precision", section)


if __name__ == "__main__":
    main()
