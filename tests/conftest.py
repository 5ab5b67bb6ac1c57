import os

import numpy as np
import pytest
import torch
from PIL import Image

# Tiny models gain nothing from a second thread, and OpenMP threads spinning against other processes on a
# busy 2-core machine slow tests several-fold. Subprocesses inherit the setting through the environment.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY_MODEL = ["--width", "8", "--depth", "2", "--crop", "32", "--batch", "2", "--d-width", "8"]


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def smooth_image(rng: np.random.Generator, h: int, w: int, channels: int = 3, *, frequency: float = 1.0,
                 texture: float = 0.0) -> np.ndarray:
    """A photo-like float image in [0, 1]: smooth shading (waves `frequency` times the default), an edge,
    and optionally a little texture (Gaussian, this std). The one synthetic photo of the test suite."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    planes = []
    for _ in range(channels):
        a, b, c = rng.uniform(-1, 1, 3)
        plane = (0.5 + 0.3 * np.sin(frequency * (3 * a * xx + 2 * b * yy) + c)
                 + 0.2 * (xx + yy > rng.uniform(0.5, 1.5)))
        planes.append(plane + rng.normal(0, texture, (h, w)) if texture else plane)
    return np.clip(np.stack(planes, axis=2), 0, 1).astype(np.float32)


def save_png(path, img: np.ndarray) -> None:
    data = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(data.squeeze(2) if data.shape[2] == 1 else data).save(path)
