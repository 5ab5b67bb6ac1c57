"""Tiny generators for the inference tests: fixed seeds, attention switched on, or exactly the identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

from sagan_restore.checkpoint import save_generator
from sagan_restore.config import GeneratorConfig
from sagan_restore.models.attention import SelfAttention2d
from sagan_restore.models.generator import UNetGenerator


def random_generator(*, scale: int = 1, channels: int = 3, width: int = 8, depth: int = 2,
                     seed: int = 0) -> UNetGenerator:
    """Random weights, with the attention gates opened to 0.5 (they start at 0) so attention contributes."""
    torch.manual_seed(seed)
    model = UNetGenerator(GeneratorConfig(in_channels=channels, out_channels=channels, width=width, depth=depth,
                                          attn_levels=(depth,), scale=scale))
    for module in model.modules():
        if isinstance(module, SelfAttention2d):
            module.gamma.data.fill_(0.5)
    return model.eval()


def identity_generator(*, scale: int = 1, channels: int = 3) -> UNetGenerator:
    """Output = the (bicubic-upsampled) input: the global residual with a zeroed last convolution."""
    model = random_generator(scale=scale, channels=channels)
    torch.nn.init.zeros_(model.tail.weight)
    torch.nn.init.zeros_(model.tail.bias)
    return model


def save(model: UNetGenerator, path: Path) -> Path:
    save_generator(path, model, info={"task": "test"})
    return path


def photo(height: int, width: int, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """scikit-image's astronaut resized to (height, width), float32 (H, W, 3) in [0, 1], optionally noisy."""
    img = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if noise:
        arr = arr + np.random.default_rng(seed).normal(0, noise, arr.shape).astype(np.float32)
    return arr
