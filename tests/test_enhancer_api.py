"""The Python API: Enhancer.load(...).enhance(image) with PIL images and numpy arrays."""

import numpy as np
import pytest
from PIL import Image

from _infer_helpers import identity_generator, photo, random_generator, save
from sagan_restore import Enhancer
from sagan_restore.errors import UserError


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return save(random_generator(), tmp_path_factory.mktemp("models") / "g.safetensors")


@pytest.fixture(scope="module")
def sr_identity_path(tmp_path_factory):
    return save(identity_generator(scale=2), tmp_path_factory.mktemp("models") / "sr.safetensors")


@pytest.mark.parametrize("shape,dtype", [((40, 52), np.uint8), ((40, 52, 3), np.uint16), ((40, 52, 1), np.float32),
                                         ((40, 52, 4), np.float64), ((40, 52, 2), np.uint8)])
def test_numpy_in_numpy_out_of_the_same_kind(model_path, shape, dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    image = (rng.random(shape) * top).astype(dtype)
    out = Enhancer.load(model_path).enhance(image)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == shape
    assert not np.array_equal(out, image)  # the model did something
    if len(shape) == 3 and shape[2] in (2, 4):
        np.testing.assert_allclose(out[..., -1], image[..., -1], atol=1e-6)  # alpha carried through untouched


@pytest.mark.parametrize("mode,out_mode", [("RGB", "RGB"), ("L", "L"), ("RGBA", "RGBA"), ("LA", "LA"),
                                           ("P", "RGB"), ("I;16", "I;16"), ("F", "F")])
def test_pil_in_pil_out(model_path, mode, out_mode):
    rgb = Image.fromarray((photo(48, 64) * 255).round().astype(np.uint8))
    image = rgb.convert("I;16") if mode == "I;16" else rgb.convert(mode) if mode != "F" else rgb.convert("L").convert("F")
    if mode == "F":
        image = Image.fromarray(np.asarray(image) / 255.0)
    out = Enhancer.load(model_path).enhance(image)
    assert isinstance(out, Image.Image) and out.mode == out_mode and out.size == image.size


def test_super_resolution_upscales_alpha_with_the_image(sr_identity_path):
    rgba = np.zeros((30, 40, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 40, 90)
    rgba[:, 20:, 3] = 255  # right half opaque, left half transparent
    out = Enhancer.load(sr_identity_path).enhance(Image.fromarray(rgba))
    assert out.mode == "RGBA" and out.size == (80, 60)
    arr = np.asarray(out)
    assert (arr[:, :36, 3] == 0).all() and (arr[:, 44:, 3] == 255).all()
    assert np.abs(arr[..., :3].astype(int) - (200, 40, 90)).max() <= 1


def test_tiled_enhance_matches_whole_image_enhance(sr_identity_path):
    # SR identity = bicubic, whose kernel reaches past a tile's cut edge; the blend weights there are ~0.
    image = (photo(70, 90) * 65535).round().astype(np.uint16)
    whole = Enhancer.load(sr_identity_path, tile=0).enhance(image)
    tiled = Enhancer.load(sr_identity_path, tile=32, overlap=8, batch=2).enhance(image)
    assert tiled.shape == (140, 180, 3) and tiled.dtype == np.uint16
    diff = np.abs(tiled.astype(int) - whole.astype(int))
    assert diff.max() <= 65535 / 255 and diff.mean() < 2


def test_bad_inputs_are_user_errors(model_path):
    enhancer = Enhancer.load(model_path)
    with pytest.raises(UserError, match="divide a 0..255 image by 255"):
        enhancer.enhance(np.full((8, 8, 3), 200.0, dtype=np.float32))
    with pytest.raises(UserError, match="int64 are not supported"):
        enhancer.enhance(np.zeros((8, 8), dtype=np.int64))
    with pytest.raises(UserError, match=r"shape \(8, 8, 5\)"):
        enhancer.enhance(np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(UserError, match="more than twice the overlap"):
        Enhancer.load(model_path, tile=48, overlap=32)


def test_strength_scales_how_much_the_shipped_denoiser_removes():
    """--strength tells a noise-map model more or less noise than it estimates: the shipped denoiser then
    takes out more or less. Tiles of one image are all told the whole image's level."""
    rng = np.random.default_rng(5)
    clean = photo(96, 96)
    noisy = np.clip(clean + rng.normal(0, 15 / 255, clean.shape), 0, 1).astype(np.float32)
    removed = []
    for strength in (0.25, 1.0, 3.0):
        out = Enhancer.load("denoise", tile=0, strength=strength).enhance(noisy)
        removed.append(float(np.abs(out - noisy).mean()))
    assert removed[0] < 0.8 * removed[1] and removed[1] < 0.8 * removed[2], removed
    whole = Enhancer.load("denoise", tile=0).enhance(noisy)
    tiled_model = Enhancer.load("denoise", tile=48, overlap=16)
    tiled = tiled_model.enhance(noisy)
    # 48-pixel tiles give the bottleneck's attention 36 tokens where the whole image gives 144: the outputs
    # differ a little (the shipped model: mean 0.003, at most 0.03), never by a seam or a level change.
    difference = np.abs(tiled - whole)
    assert difference.mean() < 0.006 and difference.max() < 0.05
    level = float(tiled_model.image_noise_level(noisy))
    assert 10 / 255 < level < 20 / 255  # the estimate finds the sigma-15 noise


def test_strength_blends_a_model_with_its_light_variant(tmp_path, capsys):
    """A model with NAME_light.safetensors beside it (real-restore's): --strength S is the weight blend
    S * model + (1 - S) * light, 0..1, and its noise-level input is left to its own estimate."""
    from sagan_restore.cli import main
    from sagan_restore.infer.loading import load_model
    from conftest import save_png

    full = save(random_generator(seed=0), tmp_path / "mine.safetensors")
    light = save(random_generator(seed=1), tmp_path / "mine_light.safetensors")
    weights = lambda m: np.concatenate([p.detach().numpy().ravel() for p in m.parameters()])  # noqa: E731
    a, b = weights(load_model(full)[0]), weights(load_model(light)[0])
    for strength in (0.0, 0.3, 1.0):
        model, info = load_model(full, strength=strength)
        np.testing.assert_allclose(weights(model), strength * a + (1 - strength) * b, atol=1e-6)
    assert info["strength_model"].endswith("mine_light.safetensors")
    image = photo(32, 40, noise=0.05)
    outputs = {s: Enhancer.load(full, tile=0, strength=s).enhance(image) for s in (0.0, 0.5, 1.0)}
    np.testing.assert_allclose(outputs[0.0], Enhancer.load(light, tile=0).enhance(image), atol=1e-5)
    assert not np.allclose(outputs[0.5], outputs[0.0]) and not np.allclose(outputs[0.5], outputs[1.0])
    with pytest.raises(UserError, match="--strength 2: .*light variant.* 0 .* to 1"):
        Enhancer.load(full, strength=2)
    save_png(tmp_path / "in.png", image)
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "--model", str(full),
                 "--strength", "0", "--no-progress"]) == 0
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "bad"), "--model", str(full),
                 "--strength", "1.5", "--no-progress"]) == 2
    assert "light variant" in capsys.readouterr().err and not (tmp_path / "bad" / "in.png").exists()


def test_strength_is_refused_where_it_means_nothing(sr_identity_path):
    with pytest.raises(UserError, match="--strength: .* no noise-level input"):
        Enhancer.load(sr_identity_path, strength=0.5)
    with pytest.raises(UserError, match="--strength 9"):
        Enhancer.load("denoise", strength=9)


def test_enhancing_does_not_import_scipy():
    """scipy (blur and resampling for the training degradations) took about half a second of every
    `enhance`'s start-up (docs/BENCHMARKS.md, "enhance against OpenCV NLM"); inference needs none of it."""
    import subprocess
    import sys

    code = ("import sys; from sagan_restore.cli import main; from sagan_restore.infer import enhance; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"


def test_self_ensemble_averages_the_model_over_the_eight_symmetries_of_each_tile(model_path):
    """A non-square image, so the quarter turns swap its sides: the result is the mean of the model's
    outputs on the eight flipped and turned images, each turned back."""
    import torch

    image = photo(24, 40)
    plain = Enhancer.load(model_path, tile=0)
    views = []
    for turns in range(4):
        for flip in (False, True):
            view = np.rot90(image[:, ::-1] if flip else image, turns)
            out = np.rot90(plain.enhance_pixels(np.ascontiguousarray(view)), -turns)
            views.append(out[:, ::-1] if flip else out)
    ensemble = Enhancer.load(model_path, tile=0, self_ensemble=True).enhance_pixels(image)
    np.testing.assert_allclose(ensemble, np.mean(views, axis=0), atol=1e-5)
    assert np.abs(ensemble - plain.enhance_pixels(image)).mean() > 1e-3  # the random model is not symmetric
    tiny = Enhancer.load(model_path, tile=0, self_ensemble=True).enhance_pixels(photo(3, 5))
    assert tiny.shape == (3, 5, 3)  # too small to pad by reflection


def test_self_ensemble_brings_the_shipped_denoiser_closer_to_the_photo():
    rng = np.random.default_rng(7)
    clean = photo(96, 128)
    noisy = (clean + rng.normal(0, 25 / 255, clean.shape)).astype(np.float32)
    error = {}
    for ensemble in (False, True):
        out = Enhancer.load("denoise", tile=0, self_ensemble=ensemble).enhance_pixels(noisy)
        error[ensemble] = float(np.mean((np.clip(out, 0, 1) - clean) ** 2))
    assert error[True] < 0.985 * error[False], error  # +0.11 dB on this crop; 0.985 is +0.07

