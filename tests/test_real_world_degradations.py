"""The `real`, `web`, `real-web` and `camera` presets and their pieces: each measured doing what it claims."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from sagan_restore.cli import main
from sagan_restore.config import DegradationConfig, TrainConfig, config_to_dict, train_config_from_dict
from sagan_restore.data import degradations as dg
from sagan_restore.data.datasets import ImageSource, TrainingSamples

from conftest import TINY_MODEL, smooth_image

# The IJG (libjpeg) luminance quantisation table at quality 50, JPEG standard Annex K.
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def jpeg_quality_of(data: bytes) -> int:
    """The quality whose IJG luminance table the file carries (libjpeg's scaling: 5000/q below 50, else
    200 - 2q percent), compared as sorted values so the table's storage order does not matter."""
    table = np.sort(np.asarray(Image.open(io.BytesIO(data)).quantization[0]))
    for quality in range(1, 101):
        percent = 5000 // quality if quality < 50 else 200 - 2 * quality
        expected = np.clip((IJG_LUMINANCE * percent + 50) // 100, 1, 255)
        if np.array_equal(np.sort(expected), table):
            return quality
    raise AssertionError("not an IJG table")


def second_moments(kernel: np.ndarray) -> np.ndarray:
    """The 2x2 covariance of a kernel's weights in (column, row) coordinates around its centre."""
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    k = kernel / kernel.sum()
    return np.array([[np.sum(k * x * x), np.sum(k * x * y)], [np.sum(k * x * y), np.sum(k * y * y)]])


def radius(size: int) -> np.ndarray:
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    return np.hypot(x, y)


def impulse(size=41, channels=1):
    img = np.zeros((size, size, channels), dtype=np.float32)
    img[size // 2, size // 2] = 1.0
    return img


# --- kernels ------------------------------------------------------------------------------------------

# From sigma 1 up; below it a Gaussian sampled on the pixel grid is narrower than its sigma (0.46 px at 0.5),
# Real-ESRGAN's kernels as much as ours.
@pytest.mark.parametrize("sigma", [1.0, 1.5, 3.0])
def test_gaussian_kernel_and_blurred_impulse_have_the_requested_width(sigma):
    kernel = dg.gaussian_kernel(21, sigma)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)
    cov = second_moments(kernel)
    assert math.sqrt(cov[0, 0]) == pytest.approx(sigma, rel=0.03)  # 21 taps cut a 3-pixel Gaussian at 3.3 sigma
    assert cov[0, 1] == pytest.approx(0.0, abs=1e-6)
    spread = dg.blur(impulse(), kernel)[..., 0][10:31, 10:31]
    assert np.allclose(spread, kernel, atol=1e-6)  # blurring an impulse draws the kernel itself


def test_anisotropic_kernel_has_its_widths_along_the_rotated_axes():
    theta = math.pi / 6
    cov = second_moments(dg.gaussian_kernel(31, 3.0, 1.0, theta))
    values, vectors = np.linalg.eigh(cov)
    assert np.sqrt(values) == pytest.approx([1.0, 3.0], rel=0.03)
    major = vectors[:, 1] * np.sign(vectors[0, 1])
    assert math.atan2(major[1], major[0]) == pytest.approx(theta, abs=0.01)
    # Blurring a vertical line spreads it the most when the long axis is horizontal (theta = 0).
    line = np.zeros((41, 41, 1), dtype=np.float32)
    line[:, 20] = 1.0
    flat, steep = (dg.blur(line, dg.gaussian_kernel(21, 3.0, 1.0, t))[20, :, 0] for t in (0.0, math.pi / 2))
    assert flat.max() < 0.6 * steep.max()


def test_generalized_gaussian_beta_sets_the_shape():
    gauss = dg.gaussian_kernel(21, 2.0)
    assert np.allclose(dg.generalized_gaussian_kernel(21, 2.0, beta=1.0), gauss, atol=1e-7)
    heavy, disc = (dg.generalized_gaussian_kernel(21, 2.0, beta=b) for b in (0.5, 4.0))
    far = radius(21) > 2.5 * 2.0
    assert heavy[far].sum() > 10 * gauss[far].sum()  # beta < 1: heavier tails
    # beta 4: a disc, flat out to half a sigma (the Gaussian has fallen 12% there), nothing beyond 2 sigma
    centre = 10
    assert disc[centre, centre + 1] > 0.99 * disc[centre, centre] and disc[centre, centre + 4] < 1e-3 * disc.max()
    assert gauss[centre, centre + 1] < 0.9 * gauss[centre, centre]


def test_plateau_kernel_has_a_flat_top_and_heavy_tails():
    plateau, gauss = dg.plateau_kernel(21, 2.0, beta=2.0), dg.gaussian_kernel(21, 2.0)
    far = radius(21) > 3 * 2.0
    assert plateau[far].sum() > 3 * gauss[far].sum()
    assert plateau[10, 11] > 0.9 * plateau[10, 10]


@pytest.mark.parametrize("cutoff", [math.pi / 3, math.pi / 2])
def test_sinc_kernel_passes_below_its_cutoff_and_stops_above(cutoff):
    response = np.abs(np.fft.fftshift(np.fft.fft2(dg.sinc_kernel(21, cutoff), s=(256, 256))))
    w = np.fft.fftshift(np.fft.fftfreq(256)) * 2 * np.pi
    radius = np.hypot(*np.meshgrid(w, w))
    assert response[radius < 0.6 * cutoff].min() > 0.85
    assert response[(radius > 1.4 * cutoff) & (radius < np.pi)].mean() < 0.05


def test_blur_keeps_flat_images_and_takes_images_smaller_than_the_kernel():
    small = np.full((4, 6, 3), 0.3, dtype=np.float32)
    out = dg.blur(small, dg.gaussian_kernel(21, 3.0))
    assert out.shape == small.shape and np.allclose(out, 0.3, atol=1e-6)


# --- resize, noise, colour ----------------------------------------------------------------------------

def test_interpolate_sizes_and_area_is_the_block_mean(rng):
    img = rng.random((12, 16, 3)).astype(np.float32)
    for mode in dg.RESIZE_MODES:
        assert dg.interpolate(img, 5, 23, mode).shape == (5, 23, 3)
    area = dg.interpolate(img, 6, 8, "area")
    assert np.allclose(area, img.reshape(6, 2, 8, 2, 3).mean(axis=(1, 3)), atol=1e-6)


@pytest.mark.parametrize("grey", [False, True])
def test_gaussian_noise_colour_and_grey(rng, grey):
    noisy = dg.gaussian_noise(np.full((256, 256, 3), 0.5, np.float32), 20, rng, grey=grey)
    noise = (noisy - 0.5) * 255
    assert noise.std() == pytest.approx(20, rel=0.02)
    same = np.allclose(noise[..., 0], noise[..., 1]) and np.allclose(noise[..., 1], noise[..., 2])
    assert same == grey


@pytest.mark.parametrize("grey", [False, True])
def test_scaled_poisson_noise_variance_is_scale_squared_times_intensity_over_256(rng, grey):
    scale = 2.0
    for value in (0.2, 0.8):
        img = np.full((256, 256, 3), value, np.float32)
        noise = dg.scaled_poisson_noise(img, scale, rng, grey=grey) - img
        x = round(value * 255) / 255
        assert noise.var() == pytest.approx(scale**2 * x / 256, rel=0.05)
        assert np.allclose(noise[..., 0], noise[..., 2]) == grey


def test_srgb_transfer_round_trips_and_matches_the_standard():
    assert dg.srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.2140, abs=1e-4)
    assert dg.srgb_to_linear(np.array([0.02]))[0] == pytest.approx(0.02 / 12.92)
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(dg.linear_to_srgb(dg.srgb_to_linear(x)), x, atol=1e-6)


def test_poisson_gaussian_noise_variance_is_shot_times_intensity_plus_read(rng):
    shot, read = 4e-3, 1e-4
    for value in (0.05, 0.5):
        noisy = dg.poisson_gaussian_noise(np.full((256, 256, 3), value, np.float32), shot, read, rng)
        assert noisy.mean() == pytest.approx(value, rel=0.02)
        assert noisy.var() == pytest.approx(shot * value + read, rel=0.05)


def test_camera_noise_is_measured_in_linear_light_then_encoded():
    """Mid-grey sRGB 0.5 is linear 0.214; the sRGB noise std is the linear one times the curve's slope."""
    draw = dg.CameraDraw(shot=2e-3, read=1e-5, jpeg_quality=None)
    out = dg.apply_camera(np.full((256, 256, 3), 0.5, np.float32), draw, np.random.default_rng(0))
    linear = dg.srgb_to_linear(np.array([0.5]))[0]
    slope = 1.055 / 2.4 * linear ** (1 / 2.4 - 1)
    assert out.std() == pytest.approx(math.sqrt(2e-3 * linear + 1e-5) * slope, rel=0.05)
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)  # 8 bits
    # The same photons in the shadows are a larger share of the signal: noisier there in sRGB.
    dark = dg.apply_camera(np.full((256, 256, 3), 0.1, np.float32), draw, np.random.default_rng(0))
    assert dark.std() > out.std()


def test_camera_draws_follow_brooks_et_al(rng):
    draws = [dg.draw_camera(rng) for _ in range(2000)]
    shots = np.log([d.shot for d in draws])
    assert np.exp(shots.min()) >= 1e-4 and np.exp(shots.max()) <= 1.2e-2
    residual = np.log([d.read for d in draws]) - (2.18 * shots + 1.20)
    assert residual.std() == pytest.approx(0.26, rel=0.1) and abs(residual.mean()) < 0.03
    saved = [d.jpeg_quality for d in draws if d.jpeg_quality is not None]
    assert len(saved) / len(draws) == pytest.approx(0.8, abs=0.04) and 30 <= min(saved) and max(saved) <= 95


# --- JPEG ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [30, 50, 75, 95])
def test_jpeg_files_carry_the_requested_quality(rng, quality):
    img = smooth_image(rng, 64, 64, texture=0.05)
    assert jpeg_quality_of(dg.encode_jpeg(img, quality)) == quality


def test_real_pipeline_encodes_at_its_drawn_qualities(monkeypatch):
    used = []
    original = dg.jpeg
    monkeypatch.setattr(dg, "jpeg", lambda img, quality: used.append(quality) or original(img, quality))
    clean = smooth_image(np.random.default_rng(1), 64, 64)
    for i in range(5):
        rng = np.random.default_rng([0, i])
        draw = dg.draw_real(rng)
        used.clear()
        dg.apply_real(clean, draw, scale=4, rng=rng)
        assert used == [draw.first.jpeg_quality, draw.second.jpeg_quality]


# --- the real pipeline: ranges, sizes, determinism -----------------------------------------------------

def test_real_draws_stay_in_real_esrgans_ranges():
    rng = np.random.default_rng(0)
    draws = [dg.draw_real(rng) for _ in range(3000)]
    for stage, sigma, resize, noise, poisson in (("first", 3.0, (0.15, 1.5), 30, 3.0),
                                                  ("second", 1.5, (0.3, 1.2), 25, 2.5)):
        stages = [getattr(d, stage) for d in draws]
        kernels = [s.kernel for s in stages if s.kernel is not None]
        assert {k.size for k in kernels} == set(range(7, 22, 2))
        gaussians = [k for k in kernels if k.shape != "sinc"]
        assert all(0.2 <= k.sigma_x <= sigma and 0.2 <= k.sigma_y <= sigma for k in gaussians)
        assert np.mean([k.shape == "sinc" for k in kernels]) == pytest.approx(0.1, abs=0.02)
        assert np.mean([k.sigma_x != k.sigma_y for k in gaussians]) == pytest.approx(0.31, abs=0.03)
        assert all(0.5 <= k.beta <= 4 for k in gaussians if k.shape == "generalized")
        assert all(1 <= k.beta <= 2 for k in gaussians if k.shape == "plateau")
        assert all(resize[0] <= s.resize <= resize[1] for s in stages)
        assert {s.resize_mode for s in stages} == {"area", "bilinear", "bicubic"}
        levels = [(s.noise, s.noise_level) for s in stages]
        assert all(1 <= v <= noise for n, v in levels if n == "gaussian")
        assert all(0.05 <= v <= poisson for n, v in levels if n == "poisson")
        assert np.mean([s.grey_noise for s in stages]) == pytest.approx(0.4, abs=0.03)
        assert all(30 <= s.jpeg_quality <= 95 for s in stages)
    assert np.mean([d.first.kernel is not None for d in draws]) == 1.0
    assert np.mean([d.second.kernel is not None for d in draws]) == pytest.approx(0.8, abs=0.02)
    assert np.mean([d.final_sinc is not None for d in draws]) == pytest.approx(0.8, abs=0.02)
    assert np.mean([d.jpeg_last for d in draws]) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_real_pipeline_output_is_exactly_the_input_size_over_the_scale(scale, channels):
    clean = smooth_image(np.random.default_rng(2), 48, 36, channels)
    for i in range(4):
        out = dg.real_world(clean, scale, np.random.default_rng([scale, i]))
        assert out.shape == (48 // scale, 36 // scale, channels) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1 and np.allclose(out * 255, np.round(out * 255), atol=1e-4)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_web_pipeline_output_is_exactly_the_input_size_over_the_scale_in_8_bits(scale):
    clean = smooth_image(np.random.default_rng(2), 48, 36)
    for i in range(4):
        out = dg.web(clean, scale, np.random.default_rng([scale, i]))
        assert out.shape == (48 // scale, 36 // scale, 3) and out.dtype == np.float32
        assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)


def test_web_downscale_is_antialiased_where_reals_is_not():
    """Stripes of a 3-pixel period shrunk 4x are beyond the small image's Nyquist limit: Pillow's filters
    average them away (box, a plain block mean, least), the plain interpolation of Real-ESRGAN's resize
    folds them into false stripes."""
    stripes = (0.5 + 0.5 * np.sin(2 * np.pi * np.arange(96) / 3))[None, :, None].repeat(96, 0).repeat(3, 2)
    stripes = stripes.astype(np.float32)
    for name in dg.WEB.downscale_filters:
        draw = dg.WebDraw(blur_sigma=None, downscale_filter=name, noise_sigma=None, jpeg_quality=None)
        out = dg.apply_web(stripes, draw, scale=4, rng=np.random.default_rng(0))
        assert out.shape == (24, 24, 3) and out.std() < (0.1 if name == "box" else 0.02), name
    assert min(dg.interpolate(stripes, 24, 24, mode).std() for mode in ("bilinear", "bicubic")) > 0.15


def test_web_noise_blur_and_jpeg_are_what_was_drawn():
    flat = np.full((96, 96, 3), 0.5, np.float32)
    draw = dg.WebDraw(blur_sigma=None, downscale_filter="bicubic", noise_sigma=6.0, jpeg_quality=None)
    out = dg.apply_web(flat, draw, scale=2, rng=np.random.default_rng(0))
    assert out.std() * 255 == pytest.approx(6.0, rel=0.08)
    edge = np.zeros((64, 64, 3), np.float32)
    edge[:, 32:] = 1
    blurred = dg.apply_web(edge, dg.WebDraw(1.5, "bicubic", None, None), scale=1, rng=np.random.default_rng(0))
    sharp = dg.apply_web(edge, dg.WebDraw(None, "bicubic", None, None), scale=1, rng=np.random.default_rng(0))
    assert np.abs(np.diff(blurred[32, :, 0])).max() < 0.5 * np.abs(np.diff(sharp[32, :, 0])).max()
    draws = [dg.draw_web(np.random.default_rng(i)) for i in range(300)]
    qualities = [d.jpeg_quality for d in draws if d.jpeg_quality is not None]
    assert min(qualities) >= dg.WEB.jpeg_quality[0] and max(qualities) <= dg.WEB.jpeg_quality[1]
    assert len(qualities) / len(draws) == pytest.approx(dg.WEB.jpeg_prob, abs=0.06)
    assert {d.downscale_filter for d in draws} == set(dg.WEB.downscale_filters)


def test_real_web_mixes_both_pipelines():
    clean = smooth_image(np.random.default_rng(2), 64, 64, texture=0.02)
    cfg = DegradationConfig(task="sr", scale=4, preset="real-web")
    web_like = 0
    for i in range(40):
        rng = np.random.default_rng([0, i])
        mixed = dg.degrade(clean, cfg, rng)
        replay = np.random.default_rng([0, i])
        from_web = replay.random() >= dg.REAL_WEB_SHARE
        expected = (dg.web if from_web else dg.real_world)(clean, 4, replay)
        assert np.array_equal(mixed, expected)
        web_like += from_web
    assert 10 < web_like < 30


def test_camera_keeps_the_size():
    clean = smooth_image(np.random.default_rng(2), 40, 30)
    assert dg.camera(clean, np.random.default_rng(0)).shape == (40, 30, 3)


def test_camera_keeping_noise_gives_the_camera_input_and_the_sensor_image_as_target():
    """--keep-noise: the input is exactly the camera preset's; the target is the noisy photo before the
    file's 8 bits and JPEG, so the input's difference from it is the file's artefacts alone."""
    clean = smooth_image(np.random.default_rng(2), 64, 64, texture=0.02)
    for seed in range(6):
        saved, noisy = dg.camera_keeping_noise(clean, np.random.default_rng(seed))
        assert np.array_equal(saved, dg.camera(clean, np.random.default_rng(seed)))
        draw = dg.draw_camera(np.random.default_rng(seed))
        linear = dg.srgb_to_linear(clean)
        expected_std = np.sqrt(draw.shot * linear + draw.read).mean()  # linear light, before the curve
        assert np.abs(noisy - clean).mean() > 0.3 * expected_std  # the grain is in the target
        if draw.jpeg_quality is None:  # saved losslessly: the input is the target rounded to 8 bits
            assert np.abs(saved - noisy).max() <= 0.5 / 255 + 1e-6
    cfg = DegradationConfig(preset="camera", keep_noise=True)
    inputs, target = dg.degrade_pair(clean, cfg, np.random.default_rng(1))
    assert np.array_equal(inputs, dg.camera(clean, np.random.default_rng(1))) and not np.array_equal(target, clean)
    plain = dg.degrade_pair(clean, DegradationConfig(preset="camera"), np.random.default_rng(1))
    assert np.array_equal(plain[0], inputs) and plain[1] is clean


def test_training_samples_keeping_noise_share_the_inputs_of_plain_camera_samples(tmp_path):
    photo = smooth_image(np.random.default_rng(3), 96, 96, texture=0.02)
    samples = {keep: TrainingSamples(ImageSource([lambda: photo], ["photo"]), TrainConfig(
        out=tmp_path, crop=64, degradation=DegradationConfig(preset="camera", keep_noise=keep, grey_share=0.5)))
        for keep in (False, True)}
    for index in range(6):  # grey and colour crops
        (lr, hr), (lr_kept, hr_kept) = samples[False][index], samples[True][index]
        assert np.array_equal(lr.numpy(), lr_kept.numpy())
        assert (hr_kept - hr).abs().mean() > 1e-3  # the target carries the sensor noise


def test_keep_noise_needs_the_camera_preset(tmp_path, capsys):
    with pytest.raises(ValueError, match="keep_noise needs preset camera"):
        DegradationConfig(keep_noise=True)
    assert main(["train", "--out", str(tmp_path / "run"), "--iters", "1", "--keep-noise", "--no-progress",
                 *TINY_MODEL]) == 2
    err = capsys.readouterr().err
    assert "--keep-noise" in err and "camera" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("preset,task,scale", [("real", "sr", 4), ("real", "denoise", 1), ("camera", "denoise", 1),
                                               ("web", "sr", 4), ("real-web", "sr", 2)])
def test_training_samples_are_a_function_of_seed_and_index(tmp_path, preset, task, scale):
    photo = smooth_image(np.random.default_rng(3), 96, 96, texture=0.02)
    cfg = TrainConfig(out=tmp_path, crop=64, degradation=DegradationConfig(task=task, scale=scale, preset=preset))
    samples = TrainingSamples(ImageSource([lambda: photo], ["photo"]), cfg)
    lr, hr = samples[7]
    assert lr.shape == (3, 64 // scale, 64 // scale) and hr.shape == (3, 64, 64)
    again, _ = TrainingSamples(ImageSource([lambda: photo], ["photo"]), cfg)[7]
    assert np.array_equal(lr.numpy(), again.numpy())
    assert not np.array_equal(lr.numpy(), samples[8][0].numpy())


# --- configuration and the command line ----------------------------------------------------------------

def test_presets_round_trip_through_a_run_config(tmp_path):
    cfg = TrainConfig(out=tmp_path, degradation=DegradationConfig(task="sr", scale=4, preset="real"))
    assert train_config_from_dict(config_to_dict(cfg)) == cfg
    assert DegradationConfig(preset="camera").sigma == (0.0, 0.0)  # no extra Gaussian noise on top


@pytest.mark.parametrize("flags,message", [
    (["--degrade", "real", "--sigma", "10"], "--sigma with preset 'real'"),
    (["--degrade", "camera", "--jpeg", "30-90"], "--jpeg with preset 'camera'"),
    (["--degrade", "camera", "--task", "sr"], "--degrade camera: restoration at scale 1 only"),
    (["--degrade", "fancy"], "invalid choice"),
])
def test_preset_flag_errors_are_one_line(tmp_path, capsys, flags, message):
    code = None
    try:
        code = main(["train", "--out", str(tmp_path / "run"), "--iters", "1", *flags])
    except SystemExit as stop:  # argparse's own refusal of an unknown choice
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags,scale", [(["--task", "sr", "--scale", "4", "--degrade", "real"], 4),
                                         (["--task", "sr", "--scale", "2", "--degrade", "real"], 2),
                                         (["--degrade", "camera"], 1)])
def test_cli_trains_with_a_preset_and_resumes_exactly(tmp_path, flags, scale):
    common = ["--iters", "4", "--save-every", "2", "--log-every", "1", "--sample-every", "100", "--no-progress",
              "--adv-weight", "0", *TINY_MODEL, *flags]
    assert main(["train", "--out", str(tmp_path / "full"), *common]) == 0
    cut = tmp_path / "cut"
    assert main(["train", "--out", str(cut), *[("2" if a == "4" and i == 1 else a) for i, a in enumerate(common)]]) == 0
    assert main(["train", "--resume", str(cut), "--iters", "4", "--no-progress"]) == 0
    full, resumed = ((tmp_path / "full" / "log.csv").read_text(), (cut / "log.csv").read_text())
    assert full.splitlines()[0] == resumed.splitlines()[0]
    columns = full.splitlines()[0].split(",")
    l1 = columns.index("g_l1")
    rows = [[line.split(",") for line in text.splitlines()[1:] if line.split(",")[0].isdigit()] for text in (full, resumed)]
    assert [r[0] for r in rows[1]] == ["1", "2", "3", "4"]
    assert [float(r[l1]) for r in rows[0]] == pytest.approx([float(r[l1]) for r in rows[1]], rel=1e-5)
    saved = (tmp_path / "full" / "config.json").read_text()
    assert '"preset": "' + ("camera" if scale == 1 else "real") + '"' in saved


def test_preset_with_paired_data_is_refused_not_ignored(tmp_path, capsys):
    for sub in ("lr", "hr"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    code = main(["train", "--data", str(tmp_path / "pairs"), "--degrade", "real", "--out", str(tmp_path / "run")])
    assert code == 2 and "--degrade" in capsys.readouterr().err
