"""The built-in noise estimator that fills a model's noise-level map (GeneratorConfig.noise_map).

Donoho and Johnstone's estimator, the one scikit-image's `estimate_sigma` uses: the finest diagonal wavelet
band (Haar HH) of a natural image is mostly noise, and the median of its magnitudes is robust to the
edges and texture that do leak into it. sigma = median(|HH|) / 0.6745 (the median of |N(0, 1)|).
It runs inside the model, on whatever the model is given (a training crop, or a tile), in float32.
"""

import torch

MAD_TO_SIGMA = 1 / 0.6745


def estimate_noise_level(x: torch.Tensor) -> torch.Tensor:
    """Gaussian noise std of each image of a (B, C, H, W) batch on the input's scale: shape (B,)."""
    x = x.float()
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    hh = (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2
    values = hh.abs().flatten(1)
    # torch.median's lower median, by a sort: ONNX has no median operator, but exports sort (TopK).
    lower_median = torch.sort(values, dim=1).values[:, (values.shape[1] - 1) // 2]
    return lower_median * MAD_TO_SIGMA


def noise_level_map(x: torch.Tensor, size: tuple[int, int] | None = None,
                    level: torch.Tensor | None = None) -> torch.Tensor:
    """A (B, 1, *size) plane (default: x's size) holding each image's noise level: `level` (B,) where the
    caller knows it (one estimate for a whole tiled image, or a user's strength), else estimated on x."""
    level = (estimate_noise_level(x) if level is None else level).to(x.dtype)
    return level.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *(size or x.shape[-2:]))
