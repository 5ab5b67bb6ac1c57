"""Image quality scores. PSNR is computed here; SSIM is scikit-image's (its `structural_similarity`).

The conventions of the two literatures we compare against:
- denoising scores all channels of 8-bit images with `ssim` as the protocol states it (scikit-image's
  defaults: 7x7 uniform window, sample covariance);
- super-resolution scores the BT.601 luma `rgb_to_y` after `shave`-ing `scale` pixels from every border,
  with the SSIM of Wang et al. (11x11 Gaussian window, sigma 1.5, population covariance) that MATLAB and
  BasicSR compute and SR papers report.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import laplace
from skimage.metrics import structural_similarity

from sagan_restore.io import JPEG_BLOCK

# ITU-R BT.601 luma for RGB in [0, 1], on the 0..255 scale: Y = 16 + 65.481 R + 128.553 G + 24.966 B.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0


def psnr(output: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    mse = float(np.mean((output.astype(np.float64) - target.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)


def ssim(output: np.ndarray, target: np.ndarray, *, data_range: float = 255.0, gaussian: bool = False) -> float:
    """SSIM of (H, W) or (H, W, C) images; C = 1 counts as grey, C = 3 is averaged over channels.

    gaussian=False is scikit-image's default SSIM (the denoising protocol); gaussian=True is Wang et al.'s
    original, which the SR literature reports.
    """
    output, target = _grey_as_2d(output).astype(np.float64), _grey_as_2d(target).astype(np.float64)
    options = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False} if gaussian else {}
    channel_axis = -1 if output.ndim == 3 else None
    return float(structural_similarity(output, target, data_range=data_range, channel_axis=channel_axis,
                                       **options))


def _grey_as_2d(img: np.ndarray) -> np.ndarray:
    return img[..., 0] if img.ndim == 3 and img.shape[2] == 1 else img


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0..255 scale, unrounded (as BasicSR), of (H, W, 3) pixels on the 0..255 scale.

    Grey images (H, W, 1) are returned as they are, (H, W): they have no chroma to remove.
    """
    img = img.astype(np.float64)
    if img.shape[2] == 1:
        return img[..., 0]
    return _Y_OFFSET + (img / 255.0) @ _Y_WEIGHTS


def shave(img: np.ndarray, border: int) -> np.ndarray:
    """Drop `border` pixels at every edge: SR scores ignore the border the input cannot determine."""
    return img[border:-border, border:-border] if border > 0 else img


def sharpness_ratio(output: np.ndarray, target: np.ndarray) -> float:
    """High-frequency energy of `output` over that of `target` (1.0 ideal): the mean squared Laplacian of
    each image, (H, W) or (H, W, C) on one scale, averaged over channels.

    Below 1 the output is smoother than the truth (what L1-trained models do where detail is unknowable);
    above 1 it carries more fine structure than the truth: left-over noise, ringing, or invented texture.
    PSNR cannot tell those apart, which is why GAN variants report this beside it.
    """
    return _laplacian_energy(output) / max(_laplacian_energy(target), 1e-12)


def _laplacian_energy(img: np.ndarray) -> float:
    img = _grey_as_2d(img).astype(np.float64)
    planes = img[..., None] if img.ndim == 2 else img
    return float(np.mean([np.mean(laplace(planes[..., c], mode="reflect") ** 2) for c in range(planes.shape[2])]))




def blockiness(img: np.ndarray, *, scale: int = 1) -> float:
    """JPEG blocking: the mean squared difference of neighbouring pixels across block boundaries (between
    columns, and rows, 8k - 1 and 8k from the top-left corner) over that of neighbours inside blocks. 1.0
    means no blocks (a natural image's edges fall anywhere); a heavy JPEG's flat 8x8 tiles push it above 1.

    (H, W) or (H, W, C) on any one scale; colour is measured on the BT.601 luma, where JPEG spends its bits.
    `scale`: the image is an upscaler's output of a JPEG at 1/scale of its size, so the blocks to look for
    are 8 x scale pixels, and only neighbours at the boundaries' phase of the scale-pixel period count as
    inside: any interpolation leaves a structure of that period, which is not blocking.
    """
    img = _grey_as_2d(img).astype(np.float64)
    if img.ndim == 3:
        img = rgb_to_y(img) if img.shape[2] == 3 else img.mean(axis=2)  # rgb_to_y's offset cancels in differences
    block = JPEG_BLOCK * scale
    across = np.zeros(2)  # (sum of squares, count) across block boundaries
    inside = np.zeros(2)
    for diffs in (np.diff(img, axis=1), np.diff(img, axis=0).T):  # diffs[:, j] = pixel j + 1 minus pixel j
        after = np.arange(diffs.shape[1]) + 1
        boundary = after % block == 0
        same_phase = (after % scale == 0) & ~boundary
        squares = diffs**2
        across += squares[:, boundary].sum(), squares[:, boundary].size
        inside += squares[:, same_phase].sum(), squares[:, same_phase].size
    if across[1] == 0 or inside[1] == 0 or across[0] == inside[0] == 0:
        return 1.0  # too small to hold a whole block, or flat: no blocks
    if inside[0] == 0:
        return float("inf")  # flat tiles with steps between them: nothing but blocks
    return float((across[0] / across[1]) / (inside[0] / inside[1]))
