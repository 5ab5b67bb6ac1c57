"""The realism control: network interpolation between a fidelity model and its GAN fine-tune, the sharpness
metric that judges it, and `--scale` picking the shipped super-resolution model."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from _infer_helpers import photo, random_generator, save
from conftest import save_png
from sagan_restore import checkpoint
from sagan_restore.infer.loading import load_model
from sagan_restore.cli import main
from sagan_restore.errors import UserError
from sagan_restore.io import read_image
from sagan_restore.metrics import sharpness_ratio
from sagan_restore.models import zoo


@pytest.fixture
def pair(tmp_path):
    """A model file and its GAN variant beside it, as the shipped ones are stored."""
    fidelity = save(random_generator(seed=0), tmp_path / "mine.safetensors")
    gan = save(random_generator(seed=1), tmp_path / "mine_gan.safetensors")
    return fidelity, gan


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_realism_interpolates_every_weight(pair):
    fidelity, gan = pair
    a, b = _weights(load_model(fidelity)[0]), _weights(load_model(gan)[0])
    assert not torch.allclose(a, b)
    for realism in (0.0, 0.3, 1.0):
        model, info = load_model(fidelity, realism=realism)
        assert torch.allclose(_weights(model), (1 - realism) * a + realism * b, atol=1e-6)
    assert info["realism"] == 1.0 and info["realism_model"].endswith("mine_gan.safetensors")


def test_user_model_defaults_to_fidelity_and_explicit_partner_defaults_to_it(pair, tmp_path):
    fidelity, gan = pair
    a, b = _weights(load_model(fidelity)[0]), _weights(load_model(gan)[0])
    assert torch.equal(_weights(load_model(fidelity, realism=None)[0]), a)
    elsewhere = save(random_generator(seed=1), tmp_path / "other.safetensors")
    assert torch.allclose(_weights(load_model(fidelity, realism_model=elsewhere)[0]), b)


def test_realism_without_a_gan_variant_or_out_of_range_is_a_clear_error(tmp_path, pair):
    lonely = save(random_generator(), tmp_path / "lonely.safetensors")
    with pytest.raises(UserError, match="no realism"):
        load_model(lonely, realism=0.5)
    with pytest.raises(UserError, match="between 0"):
        load_model(pair[0], realism=1.5)
    wider = save(random_generator(width=16), tmp_path / "wider.safetensors")
    with pytest.raises(UserError, match="architecture differs"):
        load_model(pair[0], realism=0.5, realism_model=wider)


def test_pretrained_default_realism_applies_only_with_a_shipped_gan(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setitem(zoo.PRETRAINED, "toy", zoo.Pretrained("toy", "test model", default_realism=0.25))
    save(random_generator(seed=0), tmp_path / "toy.safetensors")
    assert zoo.resolve("toy").default_realism == 0.0  # no GAN file yet: fidelity
    save(random_generator(seed=1), tmp_path / "toy_gan.safetensors")
    assert zoo.resolve("toy").default_realism == 0.25
    _, info = load_model("toy")
    assert info["realism"] == 0.25
    _, info = load_model("toy", realism=0)
    assert "realism" not in info


def test_enhance_cli_realism_end_points_match_the_two_models(pair, tmp_path):
    fidelity, gan = pair
    save_png(tmp_path / "in.png", photo(40, 48, noise=0.05))
    outputs = {}
    for name, args in {"fid": ["--model", str(fidelity)], "gan": ["--model", str(gan)],
                       "r1": ["--model", str(fidelity), "--realism", "1"],
                       "r05": ["--model", str(fidelity), "--realism", "0.5"]}.items():
        assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / name), "--no-progress",
                     *args]) == 0
        outputs[name] = read_image(tmp_path / name / "in.png").pixels
    np.testing.assert_array_equal(outputs["r1"], outputs["gan"])
    assert not np.array_equal(outputs["r05"], outputs["fid"]) and not np.array_equal(outputs["r05"], outputs["gan"])


def test_enhance_cli_rejects_realism_for_a_model_without_variant(tmp_path, capsys):
    lonely = save(random_generator(), tmp_path / "lonely.safetensors")
    save_png(tmp_path / "in.png", photo(32, 32))
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(lonely),
                 "--realism", "0.7", "--no-progress"]) == 2
    assert "--realism-model" in capsys.readouterr().err
    assert not (tmp_path / "out" / "in.png").exists()


def test_enhance_scale_picks_the_shipped_sr_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    (tmp_path / "weights").mkdir()
    save(random_generator(scale=2), tmp_path / "weights" / "sr2.safetensors")
    save_png(tmp_path / "in.png", photo(24, 20))
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--scale", "2",
                 "--no-progress"]) == 0
    assert read_image(tmp_path / "out" / "in.png").pixels.shape == (48, 40, 3)
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out4"), "--scale", "4",
                 "--no-progress"]) == 2
    assert "no pretrained model for that factor (shipped: 2)" in capsys.readouterr().err


def test_sharpness_ratio_tells_smooth_from_noisy():
    target = photo(64, 64)
    assert sharpness_ratio(target, target) == pytest.approx(1.0)
    assert sharpness_ratio(gaussian_filter(target, (1.5, 1.5, 0)), target) < 0.3
    noisy = target + np.random.default_rng(0).normal(0, 0.05, target.shape)
    assert sharpness_ratio(noisy, target) > 1.5


def test_evaluate_scores_each_realism_point_with_sharpness(pair, tmp_path):
    fidelity, _ = pair
    test_set = tmp_path / "set"
    test_set.mkdir()
    save_png(test_set / "a.png", photo(32, 32))
    out = tmp_path / "eval"
    assert main(["evaluate", "--set", str(test_set), "--model", str(fidelity), "--realism", "0,0.5,1",
                 "--sigma", "25", "--baselines", "none", "--out", str(out), "--no-progress"]) == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert [r["method"] for r in records] == ["mine r0", "mine r0.5", "mine r1"]
    assert all(r["sharpness"] > 0 for r in records)
    assert len({round(r["psnr"], 6) for r in records}) == 3
    assert "realism 0.5" in records[1]["details"] and [r["realism"] for r in records] == [0.0, 0.5, 1.0]
    assert "Sharpness ratio" in (out / "results.md").read_text()


def base_and_fine_tune(tmp_path, move):
    """A model saved as m.safetensors, and a copy whose every weight p moved by move(p): a stand-in fine-tune
    (real ones move weights by a few percent)."""
    base = random_generator(seed=0)
    base_path = save(base, tmp_path / "m.safetensors")
    tuned = random_generator(seed=0)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(move(p))
    return base, base_path, tuned


def test_gan_variant_stored_as_a_4bit_difference_loads_close_to_the_original(tmp_path):
    base, base_path, tuned = base_and_fine_tune(tmp_path, lambda p: 0.03 * p.abs().mean() * torch.randn_like(p))
    checkpoint.save_generator_delta(tmp_path / "m_gan.safetensors", tuned, base_path, info={"steps": 7})
    loaded, info = checkpoint.load_generator(tmp_path / "m_gan.safetensors")
    assert info["steps"] == 7
    exact, stored, original = _weights(tuned), _weights(loaded), _weights(base)
    assert (stored - exact).abs().max() < 0.1 * (exact - original).abs().max()
    assert (tmp_path / "m_gan.safetensors").stat().st_size < 0.3 * base_path.stat().st_size
    x = torch.from_numpy(photo(32, 32).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():  # the rounding error is a small fraction of what the fine-tune changed
        assert (loaded(x) - tuned(x)).abs().max() < 0.1 * (tuned(x) - base(x)).abs().max()
    (tmp_path / "m.safetensors").unlink()
    with pytest.raises(UserError, match="missing beside it"):
        checkpoint.load_generator(tmp_path / "m_gan.safetensors")


def test_a_difference_file_refuses_a_base_retrained_since(tmp_path):
    """A base replaced by other weights of the same architecture (sr2 retrained, its variants not) would
    silently add the stored differences to the wrong weights: loading names the file and the fix instead."""
    base, base_path, tuned = base_and_fine_tune(tmp_path, lambda p: 0.03 * p.abs().mean() * torch.randn_like(p))
    checkpoint.save_generator_delta(tmp_path / "m_gan.safetensors", tuned, base_path)
    checkpoint.load_generator(tmp_path / "m_gan.safetensors")  # the base it was made against: loads
    save(random_generator(seed=5), base_path)
    with pytest.raises(UserError, match=r"m_gan.safetensors: stored as a difference from m.safetensors, whose "
                                        r"weights have changed since; reinstall"):
        checkpoint.load_generator(tmp_path / "m_gan.safetensors")


def test_smaller_delta_groups_load_back_and_follow_the_fine_tune_more_closely(tmp_path):
    """save_generator_delta(group=16|8): more scales, less rounding; loading reads the group from the shapes."""
    _, base_path, tuned = base_and_fine_tune(  # uneven moves
        tmp_path, lambda p: 0.05 * p.abs().mean() * torch.randn_like(p) * torch.rand_like(p) ** 4)
    errors, sizes = [], []
    for group in (32, 8):
        path = tmp_path / f"g{group}.safetensors"
        checkpoint.save_generator_delta(path, tuned, base_path, group=group)
        errors.append(float((_weights(checkpoint.load_generator(path)[0]) - _weights(tuned)).abs().mean()))
        sizes.append(path.stat().st_size)
    assert errors[1] < 0.8 * errors[0] and sizes[1] > sizes[0]


def test_8bit_delta_follows_a_long_fine_tune_sixteen_times_more_finely(tmp_path):
    """save_generator_delta(bits=8): for a fine-tune that moved its weights far (real-restore from denoise),
    steps 127 to a group's largest move where 4 bits have 7, at about half the size of float16 storage."""
    base, base_path, tuned = base_and_fine_tune(tmp_path, lambda p: 0.5 * p.abs().mean() * torch.randn_like(p))
    errors = {}
    for bits in (4, 8):
        path = tmp_path / f"b{bits}.safetensors"
        checkpoint.save_generator_delta(path, tuned, base_path, bits=bits)
        errors[bits] = float((_weights(checkpoint.load_generator(path)[0]) - _weights(tuned)).abs().mean())
    assert errors[8] < errors[4] / 10
    full = tmp_path / "full.safetensors"
    checkpoint.save_generator(full, tuned, half=True)
    assert 0.5 * full.stat().st_size < (tmp_path / "b8.safetensors").stat().st_size < 0.6 * full.stat().st_size
    with pytest.raises(ValueError, match="bits"):
        checkpoint.save_generator_delta(tmp_path / "b3.safetensors", tuned, base_path, bits=3)
