"""Degradations that turn a clean image into a training input. One function per degradation.

All take and return float32 (H, W, C) arrays in [0, 1] (noise may leave that range: the published
denoising protocol feeds unclipped noisy images) and draw randomness only from the `rng` they are given.
"""

from __future__ import annotations

import io as _bytes_io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from sagan_restore.config import DegradationConfig
from sagan_restore.io import quantize


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise; `sigma` is on the 0..255 scale, as in the literature."""
    return img + rng.normal(0.0, sigma / 255.0, img.shape).astype(np.float32)


def poisson_noise(img: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise of a sensor that counts `peak` photons at white: variance proportional to intensity."""
    return (rng.poisson(np.clip(img, 0, 1) * peak) / peak).astype(np.float32)


def salt_and_pepper(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction `amount` of pixels (all channels) to black or white, half each."""
    out = img.copy()
    hit = rng.random(img.shape[:2]) < amount
    white = rng.random(img.shape[:2]) < 0.5
    out[hit & white] = 1.0
    out[hit & ~white] = 0.0
    return out


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def resize(img: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """Resize (H, W, C) float pixels to size = (width, height), channel by channel in float precision.

    Pillow's bicubic (a = -0.5) widens its kernel when downscaling, like MATLAB's antialiased imresize
    that made the standard SR test sets.
    """
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(size, resample), dtype=np.float32)
        for c in range(img.shape[2])
    ]
    return np.stack(channels, axis=2)


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic downscale by an integer factor; H and W must be multiples of `scale`."""
    h, w = img.shape[:2]
    assert h % scale == 0 and w % scale == 0, "crop to a multiple of the scale first"
    return resize(img, (w // scale, h // scale))


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through an 8-bit JPEG of the given quality."""
    data = quantize(img, 8)
    buffer = _bytes_io.BytesIO()
    Image.fromarray(data.squeeze(2) if data.shape[2] == 1 else data).save(buffer, format="JPEG", quality=quality)
    decoded = np.asarray(Image.open(buffer), dtype=np.float32) / 255.0
    return decoded[..., None] if decoded.ndim == 2 else decoded


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """What saving to an 8-bit file does: clip to [0, 1] and round to 1/255 steps."""
    return quantize(img, 8) / np.float32(255)


def degrade(clean: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """The training input for a clean target crop: blur, downscale, noise, JPEG, then maybe 8-bit rounding."""
    img = clean
    if cfg.blur[1] > 0:
        img = gaussian_blur(img, rng.uniform(*cfg.blur))
    if cfg.task == "sr":
        img = downscale(img, cfg.scale)
    if cfg.poisson_peak > 0:
        img = poisson_noise(img, cfg.poisson_peak, rng)
    if cfg.sigma[1] > 0:
        img = gaussian_noise(img, rng.uniform(*cfg.sigma), rng)
    if cfg.salt_pepper > 0:
        img = salt_and_pepper(img, cfg.salt_pepper, rng)
    if cfg.jpeg is not None:
        img = jpeg(img, int(rng.integers(cfg.jpeg[0], cfg.jpeg[1] + 1)))
    if rng.random() < cfg.quantize_share:
        img = quantize_8bit(img)
    return img.astype(np.float32)
