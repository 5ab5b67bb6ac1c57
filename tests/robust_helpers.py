"""Small helpers shared by the robustness tests: tiny photo-like images, tiny model flags, and running the
CLI in a child process the way a user does."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import smooth_image

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["--width", "8", "--depth", "2", "--crop", "32", "--batch", "4", "--d-width", "8", "--no-progress"]


def photo(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """conftest's synthetic photo with finer shading and a little texture, as these tests were tuned on."""
    return smooth_image(rng, h, w, channels, frequency=2.0, texture=0.02)


def save_png(path: Path, img: np.ndarray) -> Path:
    data = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(data.squeeze(2) if data.shape[2] == 1 else data).save(path)
    return path


def clean_folder(folder: Path, *, count: int = 4, size: int = 48, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        save_png(folder / f"img{i}.png", photo(rng, size, size + 8))
    return folder


def child_env() -> dict:
    """The environment for a child `python -m sagan_restore`: this checkout's sources, one thread (the
    test machine has two cores shared with other work, and oversubscribed threads crawl)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    return env


def start_cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sagan_restore", *args], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def files_digest(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes, to check that nothing in it changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """In-process training on one thread: these tiny models gain nothing from two, and on a shared
    two-core machine two threads spin against other processes and run 10-50x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
