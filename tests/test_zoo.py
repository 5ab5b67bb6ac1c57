import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sagan_restore import checkpoint
from sagan_restore.infer.loading import load_model
from sagan_restore.cli import main
from sagan_restore.config import GeneratorConfig
from sagan_restore.errors import UserError
from sagan_restore.models import zoo
from sagan_restore.models.generator import UNetGenerator

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    return tmp_path / "weights"


def test_unknown_name_lists_the_choices(weights_dir):
    with pytest.raises(UserError, match="not a pretrained model"):
        zoo.resolve("no-such-model")


def test_pretrained_name_resolves_and_loads_in_float32(weights_dir):
    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(width=8, depth=2))
    checkpoint.save_generator(weights_dir / "denoise.safetensors", model, info={"steps": 3}, half=True)
    loaded, info = load_model("denoise")
    assert info["steps"] == 3
    weight = next(loaded.parameters())
    assert weight.dtype == torch.float32
    assert torch.allclose(weight, next(model.parameters()), atol=1e-3)


def test_models_command_lists_shipped_models_with_scores(weights_dir, capsys):
    model = UNetGenerator(GeneratorConfig(width=8, depth=2))
    info = {"steps": 5, "parameters": 1234, "gflops_per_mp": 1.5, "recipe": "recipes/denoise.sh",
            "scores": [{"set": "McMaster", "sigma": 25, "psnr": 30.5, "ssim": 0.85}]}
    checkpoint.save_generator(weights_dir / "denoise.safetensors", model, info=info)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "denoise" in out and "McMaster sigma 25: 30.50 dB" in out


def test_package_model_recipe_writes_half_precision_weights(tmp_path, weights_dir):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--iters", "2", "--no-progress", "--width", "8", "--depth", "2",
                 "--crop", "32", "--batch", "2", "--adv-weight", "0"]) == 0
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import package_model
    finally:
        sys.path.pop(0)
    assert package_model.main([str(run), "--name", "denoise", "--recipe", "recipes/denoise.sh"]) == 0
    path = weights_dir / "denoise.safetensors"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys())
    _, info = load_model("denoise")
    assert info["name"] == "denoise" and info["parameters"] > 0 and info["train_seconds"] > 0

    gan_run = tmp_path / "gan"
    assert main(["train", "--out", str(gan_run), "--iters", "2", "--no-progress", "--width", "8", "--depth", "2",
                 "--crop", "32", "--batch", "2", "--d-width", "8", "--init-from", "denoise"]) == 0
    assert package_model.main([str(gan_run), "--name", "denoise", "--recipe", "recipes/denoise_gan.sh",
                               "--gan"]) == 0
    assert zoo.PRETRAINED["denoise"].has_realism
    assert zoo.resolve("denoise").default_realism == zoo.PRETRAINED["denoise"].default_realism
    with safe_open(str(weights_dir / "denoise_gan.safetensors"), framework="pt") as f:
        assert f.metadata()["delta_of"] == "denoise.safetensors"
    _, info = load_model("denoise", realism=1)
    assert info["realism"] == 1 and info["name"] == "denoise"


def test_package_model_keeps_load_time_facts_out_of_the_metadata(tmp_path, weights_dir):
    """Re-storing a model that has a light variant beside it (real-restore) loads it through the strength
    blend, which notes the light file's path in the info; that path must not land in the shipped file."""
    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(width=8, depth=2))
    copy = tmp_path / "copy"
    copy.mkdir()
    checkpoint.save_generator(copy / "real-restore.safetensors", model, info={"steps": 4})
    checkpoint.save_generator(copy / "real-restore_light.safetensors", model, info={"steps": 2})
    checkpoint.save_generator(weights_dir / "denoise.safetensors", model, info={"steps": 1}, half=True)
    sys.path.insert(0, str(REPO / "recipes"))
    try:
        import package_model
    finally:
        sys.path.pop(0)
    assert "strength_model" in load_model(copy / "real-restore.safetensors")[1]
    assert package_model.main([str(copy / "real-restore.safetensors"), "--name", "real-restore", "--recipe",
                               "recipes/real_restore.sh", "--delta-of", "denoise"]) == 0
    _, stored = checkpoint.load_generator(weights_dir / "real-restore.safetensors")
    assert stored["steps"] == 4 and stored["name"] == "real-restore"
    assert not {"strength", "strength_model", "realism", "realism_model"} & set(stored)


def test_enhance_without_model_uses_the_shipped_denoiser(tmp_path, weights_dir):
    import numpy as np
    from PIL import Image

    from conftest import save_png, smooth_image

    checkpoint.save_generator(weights_dir / "denoise.safetensors", UNetGenerator(GeneratorConfig(width=8, depth=2)))
    save_png(tmp_path / "photo.png", smooth_image(np.random.default_rng(0), 24, 30))
    assert main(["enhance", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    with Image.open(tmp_path / "out" / "photo.png") as im:
        assert im.size == (30, 24)


def test_shipped_weights_are_under_32_mb():
    """Every user's clone and install carries them: fine-tunes ship as 4-bit differences where that keeps
    PSNR within 0.01 dB (recipes/package_model.py --delta-of), 8-bit ones or float16 otherwise. (30 MB
    until the first real-sr2 on the 8-block sr2 needed 8 bits; 30.2 MB once its second stage stored in 4; 31.7 MB
    with real-sr2_gan.)"""
    total = sum(p.stat().st_size for p in zoo.WEIGHTS_DIR.glob("*.safetensors"))
    assert total < 32e6


def test_models_output_piped_into_a_reader_that_stops_early_is_not_an_error():
    import subprocess

    with subprocess.Popen([sys.executable, "-m", "sagan_restore", "models"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        proc.stdout.close()  # the reader is gone before anything is written, as `| head -0` would be
        assert proc.wait(timeout=60) == 0
        assert "Traceback" not in proc.stderr.read().decode()


def test_a_pretrained_name_wins_over_a_folder_of_that_name_unless_written_as_a_path(tmp_path, monkeypatch):
    """A folder sr4/ in the working directory used to win over the pretrained sr4 while sr4's default
    realism still applied, so `enhance --scale 4` failed with a confusing message."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    (tmp_path / "sr4").mkdir()
    checkpoint.save_generator(tmp_path / "sr4" / "generator.safetensors", UNetGenerator(GeneratorConfig(width=8, depth=2)))
    with pytest.warns(UserWarning, match="pass ./sr4"):
        resolved = zoo.resolve("sr4")
    assert resolved.pretrained is zoo.PRETRAINED["sr4"] and resolved.path == zoo.PRETRAINED["sr4"].path
    assert resolved.default_realism == zoo.PRETRAINED["sr4"].default_realism
    mine = zoo.resolve("./sr4")
    assert mine.pretrained is None and mine.path.resolve() == (tmp_path / "sr4").resolve()
    assert mine.default_realism == 0.0 and mine.realism_path is None
    model, info = load_model("./sr4")
    assert model.cfg.width == 8 and "realism" not in info


def test_enhance_with_a_folder_named_like_a_model_uses_the_pretrained_one(tmp_path, monkeypatch, capsys):
    from sagan_restore.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sr4").mkdir()  # an unrelated folder, e.g. earlier results
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.warns(UserWarning, match="pretrained"):
        assert main(["enhance", "small.png", "-o", "out", "--model", "sr4", "--no-progress"]) == 0
    with Image.open(tmp_path / "out" / "small.png") as result:
        assert result.size == (64, 64)


def test_enhance_without_model_prefers_the_real_photo_models_where_shipped(weights_dir):
    from sagan_restore.cli import enhance_model

    weights_dir.mkdir(parents=True, exist_ok=True)
    for name, scale in [("denoise", 1), ("sr4", 4), ("sr2", 2)]:
        checkpoint.save_generator(weights_dir / f"{name}.safetensors",
                                  UNetGenerator(GeneratorConfig(width=8, depth=2, scale=scale)))
    assert [enhance_model(None, s) for s in (None, 2, 4)] == ["denoise", "sr2", "sr4"]
    for name, scale in [("real-restore", 1), ("real-sr4", 4)]:
        checkpoint.save_generator(weights_dir / f"{name}.safetensors",
                                  UNetGenerator(GeneratorConfig(width=8, depth=2, scale=scale)))
    assert [enhance_model(None, s) for s in (None, 2, 4)] == ["real-restore", "sr2", "real-sr4"]
    assert enhance_model(None, None, outscale=3) == "real-sr4"
    assert enhance_model("sr4", 4) == "sr4"  # by name, the bicubic model stays
