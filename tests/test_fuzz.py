"""Randomly corrupted real files through image loading, `enhance`, dataset construction and model loading:
the only failure allowed is a UserError (exit status 2 from the CLI) that names the file.

Seeded, so a failure reproduces; SAGAN_FUZZ_CASES=5000 runs a longer search than the default."""

import io
import os
import warnings
from pathlib import Path

import numpy as np
import png
import tifffile
import torch
from PIL import Image

from sagan_restore import checkpoint
from sagan_restore.infer.loading import load_model
from sagan_restore.cli import main
from sagan_restore.config import GeneratorConfig, TrainConfig
from sagan_restore.data.datasets import TrainingSamples, build_source
from sagan_restore.errors import UserError
from sagan_restore.io import read_image
from sagan_restore.models.generator import UNetGenerator

from robust_helpers import one_torch_thread, photo  # noqa: F401 (fixture)

CASES = int(os.environ.get("SAGAN_FUZZ_CASES", "1000"))


def _encoded(fmt: str, arr: np.ndarray, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def seed_files() -> dict[str, bytes]:
    """One small valid file per format, mode and bit depth the reader handles."""
    img = photo(np.random.default_rng(0), 24, 32)
    rgb8 = np.round(img * 255).astype(np.uint8)
    rgb16 = np.round(img * 65535).astype(np.uint16)
    files = {
        "rgb.png": _encoded("PNG", rgb8),
        "grey.png": _encoded("PNG", rgb8[..., 0]),
        "rgba.png": _encoded("PNG", np.dstack([rgb8, rgb8[..., :1]])),
        "grey16.png": _encoded("PNG", rgb16[..., 0]),
        "photo.jpg": _encoded("JPEG", rgb8, quality=90),
        "progressive.jpg": _encoded("JPEG", rgb8, quality=90, progressive=True),
        "photo.webp": _encoded("WEBP", rgb8),
        "photo.bmp": _encoded("BMP", rgb8),
        "photo.ppm": _encoded("PPM", rgb8),
    }
    buffer = io.BytesIO()
    Image.fromarray(rgb8).convert("P").save(buffer, format="PNG")
    files["palette.png"] = buffer.getvalue()
    buffer = io.BytesIO()
    png.Writer(32, 24, greyscale=False, bitdepth=16).write(buffer, rgb16.reshape(24, -1))
    files["rgb16.png"] = buffer.getvalue()
    for name, data, options in (("rgb16.tif", rgb16, {}), ("deflate.tif", rgb8, {"compression": "zlib"}),
                                ("float.tif", img[..., 0], {})):
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, data, **options)
        files[name] = buffer.getvalue()
    return files


def corrupt(data: bytes, rng: np.random.Generator) -> bytes:
    """One of the ways files break: cut short, bit rot, a damaged header, a garbage block, a lost block,
    trailing junk."""
    d = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:
        return bytes(d[: rng.integers(0, len(d))])
    if kind == 1:
        for _ in range(rng.integers(1, 8)):
            d[rng.integers(len(d))] = rng.integers(256)
    elif kind == 2:
        for _ in range(rng.integers(1, 4)):
            d[rng.integers(min(len(d), 64))] = rng.integers(256)
    elif kind == 3:
        at, n = rng.integers(len(d)), int(rng.integers(1, 64))
        d[at:at + n] = rng.integers(0, 256, n).astype(np.uint8).tobytes()
    elif kind == 4:
        at = rng.integers(len(d))
        del d[at:at + rng.integers(1, 100)]
    else:
        d += rng.integers(0, 256, rng.integers(1, 200)).astype(np.uint8).tobytes()
    return bytes(d)


def corrupted_files(folder: Path, count: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    seeds = seed_files()
    names = sorted(seeds)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        name = names[i % len(names)]
        path = folder / f"{i:04d}_{name}"
        path.write_bytes(corrupt(seeds[name], rng))
        paths.append(path)
    return paths


def test_read_image_on_corrupted_files(tmp_path):
    outcomes = {"read": 0, "refused": 0}
    for path in corrupted_files(tmp_path, CASES, seed=1):
        try:
            image = read_image(path)
        except UserError as err:
            assert str(err).startswith(str(path)), err
            outcomes["refused"] += 1
            continue
        pixels = image.pixels
        assert pixels.dtype == np.float32 and pixels.ndim == 3 and pixels.shape[2] in (1, 3), path
        assert np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1, path
        assert image.alpha is None or image.alpha.shape == pixels.shape[:2], path
        outcomes["read"] += 1
    assert min(outcomes.values()) > CASES // 10  # the corruptions hit both ways, or they test nothing


def test_enhance_on_corrupted_files(tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    checkpoint.save_generator(model, UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(2,))))
    codes = []
    for path in corrupted_files(tmp_path / "in", max(CASES // 10, 20), seed=2):
        out = tmp_path / "out" / path.stem
        code = main(["enhance", str(path), "-o", str(out), "--model", str(model), "--no-progress"])
        captured = capsys.readouterr()
        codes.append(code)
        if code == 0:
            assert read_image(out / path.name).pixels.shape[:2] == read_image(path).pixels.shape[:2]
        else:  # the file is reported as failed, by name
            text = captured.out + captured.err
            assert code == 1 and f"  {path}: " in text and "Traceback" not in text, text
            assert not out.exists() or not any(out.iterdir())  # no output, not even a partial one
    assert 0 in codes and 1 in codes


def test_dataset_construction_on_corrupted_folders(tmp_path):
    built = 0
    for trial in range(max(CASES // 40, 5)):
        folder = tmp_path / f"clean{trial}"
        paths = corrupted_files(folder, 2, seed=100 + trial)
        cfg = TrainConfig(out=tmp_path / "run", clean=(folder,), clean_weights=(1.0,), crop=16,
                          generator=GeneratorConfig(width=8, depth=2, attn_levels=(2,)))
        try:
            with warnings.catch_warnings():  # a damaged file can decode as a tiny image: that warning is fine
                warnings.filterwarnings("ignore", message=".*mirror-padded")
                samples = TrainingSamples(build_source(cfg), cfg)
        except UserError as err:
            bad = [p for p in paths if str(p) in str(err)]
            assert bad, err  # names the files it refuses
            continue
        for index in range(4):
            inputs, target = samples[index]
            assert inputs.shape == target.shape == (3, 16, 16) and torch.isfinite(target).all()
        built += 1
    assert built > 0


def test_model_loading_on_corrupted_files(tmp_path):
    model = UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(2,)))
    checkpoint.save_generator(tmp_path / "g.safetensors", model)
    state = {"step": 1, "config": {"generator": {"width": 8, "depth": 2, "attn_levels": [2]}, "degradation": {}},
             "generator": model.state_dict(), "opt_g": {}}
    torch.save(state, tmp_path / "c.pt")
    seeds = {name: (tmp_path / name).read_bytes() for name in ("g.safetensors", "c.pt")}
    rng = np.random.default_rng(3)
    loaded = 0
    for i in range(max(CASES // 4, 40)):
        name = sorted(seeds)[i % 2]
        path = tmp_path / "damaged" / f"{i:04d}_{name}"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(corrupt(seeds[name], rng))
        try:
            load_model(path)
            loaded += 1
        except UserError as err:
            assert str(path) in str(err), err
    assert loaded > 0
