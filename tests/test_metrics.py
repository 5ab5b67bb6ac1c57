"""PSNR, SSIM and the Y channel against scikit-image and an independent SSIM of the SR literature."""

import numpy as np
import pytest
from scipy.ndimage import correlate
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sagan_restore.metrics import psnr, rgb_to_y, shave, ssim


def _noisy_pair(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return np.round(np.clip(noisy, 0, 255)).astype(np.uint8)


@pytest.fixture(params=["colour", "grey"])
def real_pair(request):
    """A real photo (scikit-image's astronaut / camera, cropped for speed) and a noisy 8-bit copy."""
    clean = data.astronaut()[100:292, 150:342] if request.param == "colour" else data.camera()[50:242, 200:392, None]
    return clean, _noisy_pair(clean, 20, seed=3)


def test_psnr_agrees_with_skimage(real_pair):
    clean, noisy = real_pair
    assert abs(psnr(noisy, clean, data_range=255) - peak_signal_noise_ratio(clean, noisy, data_range=255)) < 0.01


def test_ssim_is_the_protocols_skimage_call(real_pair):
    clean, noisy = real_pair
    if clean.shape[2] == 3:
        expected = structural_similarity(noisy, clean, data_range=255, channel_axis=-1)
    else:  # the protocol scores grey images without a channel axis
        expected = structural_similarity(noisy[..., 0], clean[..., 0], data_range=255)
    assert abs(ssim(noisy, clean) - expected) < 0.001
    assert 0.2 < ssim(noisy, clean) < 0.95  # a real, partial similarity: not a degenerate 0 or 1


def _reference_gaussian_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al.'s SSIM as the SR literature (MATLAB, BasicSR) computes it: 11x11 Gaussian window with
    sigma 1.5, statistics over the window, the 5-pixel border where the window does not fit dropped."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()

    def filt(x):
        return correlate(x, window, mode="reflect")[5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def test_gaussian_ssim_matches_the_sr_literature(real_pair):
    clean, noisy = real_pair
    y_clean, y_noisy = rgb_to_y(clean), rgb_to_y(noisy)
    assert abs(ssim(y_noisy, y_clean, gaussian=True) - _reference_gaussian_ssim(y_noisy, y_clean)) < 0.001


def test_y_channel_is_bt601():
    rgb = data.astronaut()[:64, :64]
    expected = rgb2ycbcr(rgb)[..., 0]  # scikit-image's BT.601 conversion, Y in 16..235
    assert np.abs(rgb_to_y(rgb) - expected).max() < 1e-6
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)


def test_grey_has_no_chroma_to_remove():
    grey = data.camera()[:8, :8, None]
    assert np.array_equal(rgb_to_y(grey), grey[..., 0].astype(np.float64))


def test_shave_drops_the_border():
    img = np.arange(100).reshape(10, 10)
    assert shave(img, 2).shape == (6, 6)
    assert shave(img, 2)[0, 0] == img[2, 2]
    assert shave(img, 0).shape == (10, 10)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    from sagan_restore.data.degradations import jpeg

    return np.round(jpeg(img.astype(np.float32) / 255, quality) * 255)


def test_blockiness_is_one_for_a_photo_and_rises_as_jpeg_quality_drops():
    from sagan_restore.metrics import blockiness

    photo = data.chelsea()[20:276, 100:356]  # a PNG photo, never JPEG-coded
    assert blockiness(photo) == pytest.approx(1.0, abs=0.05)
    noise = np.random.default_rng(0).normal(128, 20, (256, 256))
    assert blockiness(noise) == pytest.approx(1.0, abs=0.03)
    scores = [blockiness(_jpeg(photo, q)) for q in (90, 50, 30, 10)]
    assert scores == sorted(scores) and scores[-1] > 2.0 and scores[0] < 1.15


def test_blockiness_of_an_upscaled_jpeg_is_seen_on_the_enlarged_grid():
    from sagan_restore.data.degradations import jpeg
    from sagan_restore.io import resize
    from sagan_restore.metrics import blockiness

    small = resize(data.chelsea()[:288, :448].astype(np.float32) / 255, (112, 72))  # a x4 input

    def upscaled(img):  # bicubic, as the baseline: a JPEG input's blocks become 32-pixel tiles
        return resize(img, (448, 288)) * 255

    assert blockiness(upscaled(small), scale=4) == pytest.approx(1.0, abs=0.1)  # interpolation is not blocking
    assert blockiness(upscaled(jpeg(small, 20)), scale=4) > 2.0


def test_blockiness_of_flat_and_tiny_images_is_one():
    from sagan_restore.metrics import blockiness

    assert blockiness(np.full((32, 32, 3), 0.5)) == 1.0
    assert blockiness(np.zeros((5, 5))) == 1.0
