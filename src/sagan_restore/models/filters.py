"""Linear image filters that discriminators and losses share: they let G's gradient pass through."""

import math

import torch
import torch.nn.functional as F

BT601_LUMA = (0.299, 0.587, 0.114)


def to_luma(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of an RGB batch, one channel; a grey batch as it is."""
    if image.shape[1] != 3:
        return image
    weights = image.new_tensor(BT601_LUMA).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def high_frequencies(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """The image minus its Gaussian blur of `sigma` pixels (separable, reflect-padded): the fine detail and
    noise, where a restored output differs from a photo, without the colour and shading, where it does not.
    Linear, so G's gradient passes through it."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=image.device)
    kernel = torch.exp(-taps**2 / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(image.dtype)
    channels = image.shape[1]
    blurred = F.pad(image, (radius, radius, radius, radius), mode="reflect")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    return image - blurred


def laplacian(image: torch.Tensor) -> torch.Tensor:
    """The 5-point Laplacian of each channel: the stencil metrics.sharpness_ratio measures with (scipy's
    `laplace`), so a loss on it speaks the metric's language. Reflect-padded without repeating the edge
    pixel, where scipy repeats it, so the two differ on the one-pixel border only."""
    kernel = image.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    channels = image.shape[1]
    padded = F.pad(image, (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, kernel.view(1, 1, 3, 3).expand(channels, 1, 3, 3), groups=channels)


def chroma(image: torch.Tensor) -> torch.Tensor:
    """An RGB batch less its luma in every channel: colour with no brightness (zero on grey pixels)."""
    return image - to_luma(image)
