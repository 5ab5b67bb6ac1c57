#!/usr/bin/env python3
"""Write synthetic real-world test sets from the held-out photos: lr/ + hr/ pairs that `evaluate` scores.

    python recipes/validation_photos.py --out data/val_photos     # the held-out photos, if not there yet
    python recipes/real_world_sets.py --photos data/val_photos --out data/real_world

makes eleven sets, OUT/{x4,x2,x1}_{light,medium,heavy}/{lr,hr}/NAME.png and OUT/{x4,x2}_web, and
OUT/manifest.json with every
parameter drawn for every image. Each image's degradation is a function of the fixed seed (SEED, scale,
severity, image index) alone, so the sets are the same on every machine and every rerun.

- x4 and x2: Real-ESRGAN's pipeline (sagan_restore.data.degradations.apply_real), its output exactly
  1/scale of the HR, which is the photo cropped at the top left to a multiple of the scale:
    light   one mild stage, a web image: Gaussian-type blur sigma 0.2-1.0 px at full size, no first resize,
            noise sigma 1-5 (Poisson scale 0.05-0.5), JPEG 75-95; then straight down to the LR size
            (area, bilinear or bicubic), noise sigma 1-3 (Poisson 0.05-0.3), final sinc in 20%, JPEG 70-90
    medium  Real-ESRGAN's published ranges unchanged (degradations.REAL_ESRGAN: the training distribution)
    heavy   those ranges with every strength in its upper part: blur sigma 1.5-3, noise sigma 15-30
            (Poisson 1.5-3), JPEG 30-60 in the first stage; noise sigma 10-25 (Poisson 1-2.5), JPEG 30-60
            in the second
- x4_web and x2_web: the `web` pipeline (degradations.apply_web with its training ranges, WEB): a photo
  blurred a little or not, shrunk with one of Pillow's antialiased filters, mild noise, JPEG 50-95 or none;
  the issue's "blurred a little, downscaled, mild noise, JPEG 75" and its neighbours
- x1: the camera pipeline (degradations.apply_camera), always saved as JPEG:
    light   shot-noise variance 1e-4..1e-3 per unit linear intensity, JPEG 80-95 (a phone in daylight)
    medium  1e-3..4e-3, JPEG 60-85
    heavy   4e-3..1.2e-2 (Brooks et al.'s top: a small sensor at high ISO), JPEG 30-60
  with the read noise drawn from the shot noise as Brooks et al. fitted it (degradations.CAMERA).

Score a set with, for example:

    sagan-restore evaluate --task sr --set data/real_world/x4_medium --model sr4 --out runs/eval_x4_medium
    sagan-restore evaluate --set data/real_world/x1_medium --model denoise --out runs/eval_x1_medium

The photos are the validation photos (recipes/validation_photos.py): held out from the training corpus of
recipes/build_corpus.py, so models trained on that corpus never saw them, but the built-in corpus of
`sagan-restore train` (no data option) does hold five of them. The shared benchmark sets are never used
here: they are for final scores only, not for training or tuning.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from sagan_restore.data.degradations import (CAMERA, REAL_ESRGAN, CameraRanges, RealRanges, apply_camera,
                                             apply_real, apply_web, draw_camera, draw_real, draw_web)
from sagan_restore.io import list_images, read_image, to_channels, write_image

SEED = 1600  # with (scale, severity, image index): the default_rng seed of every image
SEVERITIES = ("light", "medium", "heavy", "web")  # web last: the others' seeds stay as they were
SR_ONLY = ("web",)
SCALES = (4, 2, 1)

_first, _second = REAL_ESRGAN.first, REAL_ESRGAN.second
REAL_SEVERITIES: dict[str, RealRanges] = {
    "light": replace(
        REAL_ESRGAN,
        first=replace(_first, sigma=(0.2, 1.0), resize_probs=(0.0, 0.0, 1.0), noise_sigma=(1.0, 5.0),
                      poisson_scale=(0.05, 0.5), jpeg_quality=(75, 95)),
        second=replace(_second, blur_prob=0.0, resize_probs=(0.0, 0.0, 1.0), noise_sigma=(1.0, 3.0),
                       poisson_scale=(0.05, 0.3), jpeg_quality=(70, 90)),
        final_sinc_prob=0.2),
    "medium": REAL_ESRGAN,
    "heavy": replace(
        REAL_ESRGAN,
        first=replace(_first, sigma=(1.5, 3.0), noise_sigma=(15.0, 30.0), poisson_scale=(1.5, 3.0),
                      jpeg_quality=(30, 60)),
        second=replace(_second, noise_sigma=(10.0, 25.0), poisson_scale=(1.0, 2.5), jpeg_quality=(30, 60))),
}
CAMERA_SEVERITIES: dict[str, CameraRanges] = {
    "light": replace(CAMERA, shot=(1e-4, 1e-3), jpeg_prob=1.0, jpeg_quality=(80, 95)),
    "medium": replace(CAMERA, shot=(1e-3, 4e-3), jpeg_prob=1.0, jpeg_quality=(60, 85)),
    "heavy": replace(CAMERA, shot=(4e-3, 1.2e-2), jpeg_prob=1.0, jpeg_quality=(30, 60)),
}


def degraded_pair(photo: np.ndarray, scale: int, severity: str, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(lr, hr, the parameters drawn) for one photo: a function of its pixels and (scale, severity, index)."""
    rng = np.random.default_rng([SEED, scale, SEVERITIES.index(severity), index])
    h, w = photo.shape[:2]
    hr = photo[: h - h % scale, : w - w % scale]
    if severity == "web":
        draw = draw_web(rng)
        lr = apply_web(hr, draw, scale=scale, rng=rng)
    elif scale == 1:
        draw = draw_camera(rng, CAMERA_SEVERITIES[severity])
        lr = apply_camera(hr, draw, rng)
    else:
        draw = draw_real(rng, REAL_SEVERITIES[severity])
        lr = apply_real(hr, draw, scale=scale, rng=rng)
    assert lr.shape[:2] == (hr.shape[0] // scale, hr.shape[1] // scale)
    return lr, hr, asdict(draw)


def check_not_a_benchmark(folder: Path) -> None:
    """The shared benchmark sets score final models; deriving test or tuning sets from them is refused."""
    if "benchmarks" in folder.resolve().parts:
        sys.exit(f"{folder}: a benchmark folder; use held-out photos (recipes/validation_photos.py) instead")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=Path("data/val_photos"), help="clean held-out photos")
    parser.add_argument("--out", type=Path, default=Path("data/real_world"))
    args = parser.parse_args(argv)
    check_not_a_benchmark(args.photos)
    paths = list_images(args.photos)
    if not paths:
        sys.exit(f"{args.photos}: no images; write them with: python recipes/validation_photos.py --out {args.photos}")
    photos = [to_channels(read_image(p).pixels, 3) for p in paths]
    manifest = {"seed": SEED, "photos": str(args.photos), "sets": {}}
    for scale in SCALES:
        for severity in SEVERITIES:
            if scale == 1 and severity in SR_ONLY:
                continue
            name = f"x{scale}_{severity}"
            folder = args.out / name
            (folder / "lr").mkdir(parents=True, exist_ok=True)
            (folder / "hr").mkdir(parents=True, exist_ok=True)
            records = {}
            for index, (path, photo) in enumerate(zip(paths, photos)):
                lr, hr, drawn = degraded_pair(photo, scale, severity, index)
                write_image(folder / "lr" / f"{path.stem}.png", lr)
                write_image(folder / "hr" / f"{path.stem}.png", hr)
                records[path.stem] = drawn
            manifest["sets"][name] = records
            print(f"{folder}: {len(paths)} pairs")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out / 'manifest.json'}")


if __name__ == "__main__":
    main()
