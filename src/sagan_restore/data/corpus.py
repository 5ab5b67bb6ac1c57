"""The built-in corpus: photos shipped inside scikit-image plus procedurally generated dead-leaves images.

It lets `sagan-restore train` run with no data at all. One photo (chelsea, a colour cat photo) is held out
for validation and never trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sagan_restore.data.degradations import gaussian_blur

# Photographs in skimage/data; the rest of that folder is drawings, charts and synthetic test patterns.
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "coffee.png", "coins.png", "grass.png", "gravel.png",
    "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg",
)
VALIDATION_PHOTO = "chelsea.png"


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def builtin_photo_paths() -> list[Path]:
    folder = skimage_data_dir()
    return [folder / name for name in SKIMAGE_PHOTOS if (folder / name).exists()]


def validation_photo_path() -> Path:
    return skimage_data_dir() / VALIDATION_PHOTO


def dead_leaves(size: int, rng: np.random.Generator, *, r_min: float = 2.0, r_max: float = 100.0,
                channels: int = 3) -> np.ndarray:
    """A dead-leaves image: discs with power-law radii (density ~ r^-3) occluding each other.

    That radius law makes the image scale invariant, like natural images (Lee, Mumford and Huang 2001),
    and the occlusions give sharp edges of every orientation and contrast: the structure denoisers and
    upscalers must learn to keep. Discs are painted front to back into uncovered pixels until the image
    is covered. Each disc gets a random colour (a luminance plus a little chroma), a soft shading gradient, and a few discs are blurred
    (out-of-focus), so flat areas are not perfectly flat.
    """
    img = np.zeros((size, size, channels), dtype=np.float32)
    covered = np.zeros((size, size), dtype=bool)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max].
    a, b = r_min**-2, r_max**-2
    for _ in range(20_000):
        radius = (a - rng.random() * (a - b)) ** -0.5
        cy, cx = rng.uniform(-radius, size + radius, 2)
        y0, y1 = int(max(cy - radius, 0)), int(min(cy + radius + 1, size))
        x0, x1 = int(max(cx - radius, 0)), int(min(cx + radius + 1, size))
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        disc = (dy * dy + dx * dx <= radius * radius) & ~covered[y0:y1, x0:x1]
        if not disc.any():
            continue
        # Natural colours are mostly luminance with moderate chroma, not uniform over the RGB cube.
        colour = (rng.random() + rng.normal(0, 0.12, channels)).astype(np.float32)
        slope = rng.normal(0, 0.15, 2).astype(np.float32) / max(radius, 1.0)
        shade = (dy * slope[0] + dx * slope[1])[..., None]
        img[y0:y1, x0:x1][disc] = np.clip(colour + shade, 0, 1)[disc]
        covered[y0:y1, x0:x1] |= disc
        if covered.all():
            break
    if rng.random() < 0.3:
        img = gaussian_blur(img, rng.uniform(0.5, 1.5))
    return img
