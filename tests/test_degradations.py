import numpy as np
import pytest

from sagan_restore.config import DegradationConfig
from sagan_restore.data import degradations as dg


def flat(value=0.5, size=256, channels=3):
    return np.full((size, size, channels), value, dtype=np.float32)


@pytest.mark.parametrize("sigma", [5, 25, 50])
def test_gaussian_noise_has_the_requested_sigma(rng, sigma):
    noisy = dg.gaussian_noise(flat(), sigma, rng)
    assert abs((noisy - 0.5).std() * 255 - sigma) < 0.02 * sigma
    # Not clipped, as the protocol's input: near black, about a sixth (sigma 5) or more goes below 0.
    dark = dg.gaussian_noise(flat(value=0.02), sigma, rng)
    assert (dark < 0).mean() > 0.1 and (dark - 0.02).std() * 255 == pytest.approx(sigma, rel=0.02)


def test_poisson_noise_variance_follows_intensity(rng):
    peak = 100.0
    for value in (0.2, 0.8):
        noisy = dg.poisson_noise(flat(value), peak, rng)
        assert abs(noisy.mean() - value) < 0.01
        assert abs(noisy.var() - value / peak) < 0.1 * value / peak


def test_salt_and_pepper_hits_the_requested_fraction(rng):
    out = dg.salt_and_pepper(flat(), 0.1, rng)
    hit = (out[..., 0] != 0.5)
    assert abs(hit.mean() - 0.1) < 0.01
    assert set(np.unique(out[hit])) == {0.0, 1.0}


def test_blur_smooths(rng):
    noisy = dg.gaussian_noise(flat(), 25, rng)
    assert dg.gaussian_blur(noisy, 2.0).std() < 0.25 * noisy.std()
    assert dg.gaussian_blur(noisy, 0) is noisy


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_size_and_mean(rng, scale):
    img = rng.random((48, 60, 3)).astype(np.float32)
    small = dg.downscale(img, scale)
    assert small.shape == (48 // scale, 60 // scale, 3)
    assert abs(small.mean() - img.mean()) < 0.01


def test_jpeg_is_lossy_and_quality_matters(rng):
    img = dg.gaussian_blur(rng.random((64, 64, 3)).astype(np.float32), 1.0)
    err_low = np.abs(dg.jpeg(img, 10) - img).mean()
    err_high = np.abs(dg.jpeg(img, 95) - img).mean()
    assert err_low > 2 * err_high > 0


def test_quantize_rounds_to_8_bits_and_clips():
    out = dg.quantize_8bit(np.array([[[-0.1, 0.5, 1.2]]], dtype=np.float32))
    assert np.allclose(out * 255, [[[0, 128, 255]]])


def test_degrade_pipeline_sr_with_noise(rng):
    cfg = DegradationConfig(task="sr", scale=4, sigma=(10, 10), quantize_share=0.0)
    clean = flat(size=64)
    lr = dg.degrade(clean, cfg, rng)
    assert lr.shape == (16, 16, 3)
    assert abs((lr - 0.5).std() * 255 - 10) < 1.5


def test_degrade_quantize_share(rng):
    cfg = DegradationConfig(sigma=(25, 25), quantize_share=1.0)
    lr = dg.degrade(flat(size=32), cfg, rng)
    assert lr.min() >= 0 and np.allclose(lr * 255, np.round(lr * 255), atol=1e-4)


def test_sigma_range_draws_different_levels():
    cfg = DegradationConfig(sigma=(0, 50), quantize_share=0.0)
    sigmas = [(dg.degrade(flat(size=64), cfg, np.random.default_rng(i)) - 0.5).std() * 255 for i in range(20)]
    assert min(sigmas) < 15 and max(sigmas) > 35
