"""The scoring protocol of the published tables: what each method receives and how its output is scored.

The protocol (../shared/benchmarks/README.md), followed exactly so numbers compare with papers:
- Denoising: the i-th clean image of the set (files sorted by name, i = 0, 1, ...) gets white Gaussian
  noise from `numpy.random.default_rng(i).normal(0, sigma, shape)` on the 0..255 scale, NOT clipped. Every
  method receives that same float input (with `quantized_input`: clipped and rounded to 8 bits, as a saved
  file would be). PSNR over all channels and SSIM with scikit-image's defaults, data range 255.
- Super-resolution: a `HR/` + `LR_bicubic/X{s}/` set (Set5's layout) uses the provided low-resolution
  files; a set with high-resolution images only is downscaled here with Pillow's antialiased bicubic
  (float precision, then rounded to 8 bits as a file would be). PSNR and SSIM (Wang et al.'s Gaussian
  window) on the BT.601 luma, `scale` pixels shaved from every border.
- Paired sets (`lr/` + `hr/`): inputs as they are; the size ratio decides between the two scorings.
- Every output is clipped to [0, 1] and rounded to 8 bits before it is scored.
- JPEG blockiness (metrics.blockiness) of every output and of its ground truth, on the input's block grid
  (8 x scale output pixels, from the top-left corner): how much of an input's JPEG tiling survives.
Speed is seconds per megapixel of output, the median over images, of the method call alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sagan_restore.data.degradations import downscale, quantize_8bit
from sagan_restore.io import quantize
from sagan_restore.metrics import psnr, rgb_to_y, sharpness_ratio, shave, ssim

PROTOCOL_INPUT = "unclipped"  # the noisy float image as the protocol defines it
QUANTIZED_INPUT = "8bit"  # clipped and rounded to 8 bits, like a file a user brings


@dataclass(frozen=True)
class Condition:
    """One column of a results table: a noise level, an upscaling factor or a set's own pairs."""

    task: str  # "denoise" or "sr"
    sigma: float | None = None  # protocol noise level; None for paired sets
    scale: int = 1

    @property
    def label(self) -> str:
        if self.task == "sr":
            return f"x{self.scale}"
        return "paired" if self.sigma is None else f"sigma {self.sigma:g}"


@dataclass
class Case:
    name: str
    input: np.ndarray  # (h, w, C) float32 on the [0, 1] scale: what every method receives
    target: np.ndarray  # (H, W, C) uint8 ground truth


def protocol_noisy(clean: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """The noisy version of the set's `index`-th clean uint8 image: float64 on the 0..255 scale, unclipped.

    Depends only on (image, sigma, index), never on the method or the order methods run in.
    """
    noise = np.random.default_rng(index).normal(0.0, sigma, clean.shape)
    return clean.astype(np.float64) + noise


def score(output: np.ndarray, target: np.ndarray, condition: Condition) -> tuple[float, float, float]:
    """(PSNR, SSIM, sharpness ratio) of a method's float output against the uint8 target, after rounding to
    8 bits. Sharpness is measured on what PSNR is: the shaved Y channel for SR, all channels otherwise."""
    out = quantize(output, 8)
    if out.shape != target.shape:
        raise ValueError(f"output {out.shape} does not match the target {target.shape}")
    if condition.task == "sr":
        out_y, target_y = shave(rgb_to_y(out), condition.scale), shave(rgb_to_y(target), condition.scale)
        return (psnr(out_y, target_y, data_range=255), ssim(out_y, target_y, gaussian=True),
                sharpness_ratio(out_y, target_y))
    return psnr(out, target, data_range=255), ssim(out, target), sharpness_ratio(out, target)


def bicubic_input(hr: np.ndarray, scale: int) -> np.ndarray:
    """The documented downscale for sets without provided inputs: Pillow's antialiased bicubic on float
    pixels, rounded to 8 bits. `hr` must already be cropped to a multiple of `scale`."""
    return quantize_8bit(downscale(hr.astype(np.float32) / 255.0, scale))


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
