#!/usr/bin/env python3
"""Write the held-out validation photos: six of scikit-image's photos, none of which is in the training
corpus of recipes/build_corpus.py (nor in ../shared/benchmarks). Used to choose what the test sets must not
choose (GAN loss weights, default realism points) and as a second score in benchmarks/ablation.py.

    python recipes/validation_photos.py --out data/val_photos
    python recipes/validation_photos.py --out data/val_grey --grey    # the same photos in grey (ITU-R 601 luma)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image
from skimage import data

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/val_photos"))
    parser.add_argument("--grey", action="store_true", help="save them as grey images, for grey denoising")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        photo = Image.fromarray(getattr(data, name)())
        (photo.convert("L") if args.grey else photo).save(args.out / f"{name}.png")
    print(f"wrote {len(PHOTOS)} {'grey ' if args.grey else ''}photos to {args.out}")


if __name__ == "__main__":
    main()
