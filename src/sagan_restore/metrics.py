"""Image quality scores. PSNR is computed here; SSIM is scikit-image's."""

from __future__ import annotations

import numpy as np


def psnr(output: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    mse = float(np.mean((output.astype(np.float64) - target.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(data_range**2 / mse)
