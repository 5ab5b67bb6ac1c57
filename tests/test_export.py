"""`sagan-restore export --format onnx`: dynamic sizes, parity with PyTorch, tiling in Python."""

import numpy as np
import pytest

from _infer_helpers import photo, random_generator, save
from sagan_restore.cli import main
from sagan_restore.infer.enhance import Enhancer
from sagan_restore.infer.tiling import tiled_apply

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from sagan_restore.export import onnx_parity, onnx_run_batch, onnx_session  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = save(random_generator(scale=2), folder / "g.safetensors")
    assert main(["export", "--model", str(model), "--format", "onnx", "-o", str(folder / "g.onnx")]) == 0
    return model, folder / "g.onnx"


def test_onnxruntime_matches_pytorch_on_a_photo(exported):
    model, onnx_file = exported
    assert onnx_parity(onnx_file, model) <= 1e-3


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 17, 45), (1, 3, 64, 9)])
def test_height_width_and_batch_are_dynamic(exported, shape):
    model, onnx_file = exported
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    assert onnx_parity(onnx_file, model, image=image) <= 1e-3


def test_the_file_carries_the_architecture_and_tiling_stays_in_python(exported):
    model, onnx_file = exported
    session, cfg = onnx_session(onnx_file)
    assert cfg.scale == 2 and cfg.width == 8
    pixels = photo(60, 90)
    tiled = tiled_apply(pixels, onnx_run_batch(session), tile=32, overlap=8, multiple=2**cfg.depth, scale=cfg.scale,
                        out_channels=cfg.out_channels, batch=4)
    expected = Enhancer.load(model, tile=32, overlap=8, batch=4).enhance_pixels(pixels)
    assert np.abs(tiled - expected).max() <= 1e-3


def test_export_refuses_to_overwrite_and_wrong_suffix(exported, tmp_path, capsys):
    model, onnx_file = exported
    assert main(["export", "--model", str(model), "-o", str(onnx_file), "--no-check"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", "--model", str(model), "-o", str(tmp_path / "model.pt")]) == 2
    assert ".onnx" in capsys.readouterr().err


def test_the_new_blocks_stem_and_noise_map_export_too(tmp_path):
    import torch

    from sagan_restore.checkpoint import save_generator
    from sagan_restore.config import GeneratorConfig
    from sagan_restore.models.generator import UNetGenerator

    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(width=8, depth=2, block="naf", blocks=(1, 1, 2), unshuffle=2,
                                          noise_map=True))
    for p in model.parameters():  # open NAFNet's residual scales, which start at 0, so the blocks count
        if p.dim() == 4 and p.shape[0] == 1 and p.shape[2:] == (1, 1):
            p.data.fill_(0.5)
    save_generator(tmp_path / "g.safetensors", model)
    assert main(["export", "--model", str(tmp_path / "g.safetensors"), "-o", str(tmp_path / "g.onnx")]) == 0
    image = np.random.default_rng(0).random((2, 3, 21, 35), dtype=np.float32) * np.float32(0.5)
    assert onnx_parity(tmp_path / "g.onnx", tmp_path / "g.safetensors", image=image) <= 1e-3
