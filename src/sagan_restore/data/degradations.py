"""Degradations that turn a clean image into a training input. One function per degradation.

All take and return float32 (H, W, C) arrays in [0, 1] (noise may leave that range: the published
denoising protocol feeds unclipped noisy images) and draw randomness only from the `rng` they are given.

Besides the single steps that `degrade` chains as the flags ask, two presets model real photos:
- `real_world`: Real-ESRGAN's second-order pipeline (Wang et al. 2021), every range as published in its
  train_realesrgan_x4plus.yml (`REAL_ESRGAN`);
- `camera`: Poisson-Gaussian sensor noise in linear light, back to sRGB, 8 bits and JPEG, with the noise
  levels of Brooks et al. 2019, "Unprocessing images for learned raw denoising" (`CAMERA`).
- `web`: one mild stage, what a photo put on the web goes through: a little blur, an antialiased
  downscale (the way image editors and browsers shrink), mild noise, JPEG (`WEB`). Real-ESRGAN's ranges
  are heavy and its resizes alias; a model trained on them alone over-smooths mildly degraded images, so
  `real-web` mixes the two (`REAL_WEB_SHARE` of the samples from `real`, the rest from `web`).
Each is split into a draw (`draw_real`, `draw_camera`, `draw_web`: every random parameter, recorded in a
frozen dataclass) and an application that uses the same `rng` only for the noise itself.
"""

from __future__ import annotations

import io as _bytes_io
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve
from scipy.special import j1

from sagan_restore.config import DegradationConfig
from sagan_restore.io import quantize, resize


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, *, grey: bool = False) -> np.ndarray:
    """Additive white Gaussian noise; `sigma` is on the 0..255 scale, as in the literature. grey=True: one
    noise plane shared by every channel (luminance noise only, Real-ESRGAN's "gray noise")."""
    shape = img.shape[:2] + (1,) if grey else img.shape
    return img + rng.normal(0.0, sigma / 255.0, shape).astype(np.float32)


def poisson_noise(img: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Shot noise of a sensor that counts `peak` photons at white: variance proportional to intensity."""
    return (rng.poisson(np.clip(img, 0, 1) * peak) / peak).astype(np.float32)


def salt_and_pepper(img: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Set a fraction `amount` of pixels (all channels) to black or white, half each."""
    out = img.copy()
    hit = rng.random(img.shape[:2]) < amount
    white = rng.random(img.shape[:2]) < 0.5
    out[hit & white] = 1.0
    out[hit & ~white] = 0.0
    return out


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect").astype(np.float32)


def downscale(img: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic downscale by an integer factor; H and W must be multiples of `scale`."""
    h, w = img.shape[:2]
    assert h % scale == 0 and w % scale == 0, "crop to a multiple of the scale first"
    return resize(img, (w // scale, h // scale))


def encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    """The bytes of an 8-bit JPEG of the given quality (Pillow's libjpeg: IJG tables, 4:2:0 chroma)."""
    data = quantize(img, 8)
    buffer = _bytes_io.BytesIO()
    Image.fromarray(data.squeeze(2) if data.shape[2] == 1 else data).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through an 8-bit JPEG of the given quality."""
    decoded = np.asarray(Image.open(_bytes_io.BytesIO(encode_jpeg(img, quality))), dtype=np.float32) / 255.0
    return decoded[..., None] if decoded.ndim == 2 else decoded


def quantize_8bit(img: np.ndarray) -> np.ndarray:
    """What saving to an 8-bit file does: clip to [0, 1] and round to 1/255 steps."""
    return quantize(img, 8) / np.float32(255)


# --- blur kernels -------------------------------------------------------------------------------------
# A kernel is a normalised (size, size) array, size odd, centred on its middle tap. The Gaussian family is
# written with the covariance Sigma = R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T and the squared
# Mahalanobis distance d(x) = x^T Sigma^-1 x of each tap x from the centre, as in Real-ESRGAN.

def _mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * x + s * y, -s * x + c * y  # coordinates along the kernel's own axes
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> np.ndarray:
    """exp(-d/2): isotropic when sigma_y is None (or equal), else anisotropic with its x axis (sigma_x) along
    (cos theta, sin theta) in (column, row) coordinates: clockwise on screen, where rows grow downwards."""
    return _normalised(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y or sigma_x, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, *,
                                beta: float) -> np.ndarray:
    """exp(-d^beta / 2): beta = 1 is the Gaussian, beta < 1 has heavier tails, beta > 1 a flatter top and a
    sharper fall (a defocus disc as beta grows)."""
    return _normalised(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y or sigma_x, theta) ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, *,
                   beta: float) -> np.ndarray:
    """1 / (1 + d^beta): a flat top and polynomial (heavy) tails, like a lens's point-spread function."""
    return _normalised(1.0 / (1.0 + _mahalanobis_sq(size, sigma_x, sigma_y or sigma_x, theta) ** beta))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
    """The ideal circular low-pass filter, cut off at `cutoff` radians per pixel (pi = Nyquist), truncated
    to size x size: omega J1(omega r) / (2 pi r). Its ringing is what over-sharpened and JPEG'd images show."""
    half = size // 2
    y, x = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    r = np.hypot(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        kernel = cutoff * j1(cutoff * r) / (2 * np.pi * r)
    kernel[half, half] = cutoff**2 / (4 * np.pi)  # the limit at r = 0
    return _normalised(kernel)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with `kernel`, the borders mirrored (numpy's "reflect", as Real-ESRGAN's
    filter2D pads). By FFT: a 21-tap kernel costs no more than a 3-tap one, and any image size works, even
    one smaller than the kernel."""
    half = kernel.shape[0] // 2
    padded = np.pad(img, ((half, half), (half, half), (0, 0)), mode="reflect")
    return fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1)).astype(np.float32)


# --- resizing, noise and colour as Real-ESRGAN and cameras do it --------------------------------------

ResizeMode = Literal["area", "bilinear", "bicubic"]
RESIZE_MODES: tuple[ResizeMode, ...] = ("area", "bilinear", "bicubic")


def interpolate(img: np.ndarray, height: int, width: int, mode: ResizeMode) -> np.ndarray:
    """Resize with PyTorch's F.interpolate, as Real-ESRGAN does: no antialiasing, so shrinking aliases (part
    of what it simulates); "area" averages when shrinking and repeats pixels when enlarging; bicubic uses
    a = -0.75 and may overshoot [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
    corners = {} if mode == "area" else {"align_corners": False}
    out = F.interpolate(x, size=(height, width), mode=mode, **corners)
    return out[0].numpy().transpose(1, 2, 0).copy()


def scaled_poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator, *, grey: bool = False) -> np.ndarray:
    """Real-ESRGAN's Poisson noise: the shot noise of an 8-bit image counted as 256 photons at white,
    multiplied by `scale`, so its variance is scale^2 * intensity / 256. grey=True: drawn once on the
    luma and added to every channel."""
    x = quantize_8bit(img).astype(np.float64)  # as Real-ESRGAN: counted on the 8-bit rounded image
    if grey and x.shape[2] == 3:
        x = x @ _LUMA[:, None]
    noise = (rng.poisson(x * POISSON_COUNTS_AT_WHITE) / POISSON_COUNTS_AT_WHITE - x) * scale
    return (img + noise).astype(np.float32)


POISSON_COUNTS_AT_WHITE = 256  # Real-ESRGAN: 2^ceil(log2(distinct values)) of an 8-bit image
_LUMA = np.array([0.299, 0.587, 0.114])  # BT.601 luma weights (what Real-ESRGAN's rgb_to_grayscale uses)


def srgb_to_linear(img: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding to linear light, for values in [0, 1]."""
    img = np.clip(img, 0.0, 1.0)
    return np.where(img <= 0.04045, img / 12.92, ((img + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(img: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding; values are clipped to [0, 1] first, as a camera's pipeline clips."""
    img = np.clip(img, 0.0, 1.0)
    return np.where(img <= 0.0031308, img * 12.92, 1.055 * img ** (1 / 2.4) - 0.055).astype(np.float32)


def poisson_gaussian_noise(linear: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """A sensor's noise on linear intensities: photon counts with mean x / shot (so the shot-noise variance
    is shot * x) plus Gaussian read noise of variance `read`; the noise variance is shot * x + read."""
    photons = rng.poisson(np.clip(linear, 0.0, None).astype(np.float64) / shot) * shot
    return (photons + rng.normal(0.0, math.sqrt(read), linear.shape)).astype(np.float32)


# --- the `real` preset: Real-ESRGAN's second-order pipeline --------------------------------------------

KernelShape = Literal["gaussian", "generalized", "plateau", "sinc"]


@dataclass(frozen=True)
class Kernel:
    """One drawn blur kernel by its parameters (a test set records them; `weights` builds the array)."""

    shape: KernelShape
    size: int  # odd
    sigma_x: float = 0.0  # pixels, along the kernel's own x axis
    sigma_y: float = 0.0
    theta: float = 0.0  # radians
    beta: float = 1.0  # generalized and plateau shapes
    cutoff: float = 0.0  # sinc: radians per pixel

    def weights(self) -> np.ndarray:
        if self.shape == "sinc":
            return sinc_kernel(self.size, self.cutoff)
        if self.shape == "gaussian":
            return gaussian_kernel(self.size, self.sigma_x, self.sigma_y, self.theta)
        make = generalized_gaussian_kernel if self.shape == "generalized" else plateau_kernel
        return make(self.size, self.sigma_x, self.sigma_y, self.theta, beta=self.beta)


# Real-ESRGAN's kernel mixture: (shape, anisotropic, probability).
KERNEL_MIXTURE = (("gaussian", False, 0.45), ("gaussian", True, 0.25), ("generalized", False, 0.12),
                  ("generalized", True, 0.03), ("plateau", False, 0.12), ("plateau", True, 0.03))


@dataclass(frozen=True)
class StageRanges:
    """The ranges of one degradation stage (blur, resize, noise, JPEG); every value drawn uniformly.
    The defaults are Real-ESRGAN's first stage."""

    blur_prob: float = 1.0  # second stage: 0.8
    kernel_sizes: tuple[int, int] = (7, 21)  # odd sizes in this range, equally likely
    sinc_prob: float = 0.1  # the kernel is a sinc instead of the mixture
    sigma: tuple[float, float] = (0.2, 3.0)  # pixels (second stage: 0.2-1.5); each axis drawn alone
    generalized_beta: tuple[float, float] = (0.5, 4.0)  # half the draws below 1, half above
    plateau_beta: tuple[float, float] = (1.0, 2.0)
    resize_probs: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep (second: 0.3, 0.4, 0.3)
    resize_range: tuple[float, float] = (0.15, 1.5)  # factor; second stage: 0.3-1.2, of the output size
    gaussian_prob: float = 0.5  # Gaussian noise, else Poisson
    noise_sigma: tuple[float, float] = (1.0, 30.0)  # 0..255 scale; second stage: 1-25
    poisson_scale: tuple[float, float] = (0.05, 3.0)  # second stage: 0.05-2.5
    grey_noise_prob: float = 0.4  # the noise is one plane shared by all channels
    jpeg_quality: tuple[int, int] = (30, 95)


@dataclass(frozen=True)
class RealRanges:
    """Both stages of Real-ESRGAN and its final step, with the published values as defaults."""

    first: StageRanges = field(default_factory=StageRanges)
    second: StageRanges = field(default_factory=lambda: StageRanges(
        blur_prob=0.8, sigma=(0.2, 1.5), resize_probs=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2),
        noise_sigma=(1.0, 25.0), poisson_scale=(0.05, 2.5)))
    final_sinc_prob: float = 0.8  # the final resize is followed by a sinc filter
    final_sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)  # radians per pixel
    final_kernel_sizes: tuple[int, int] = (7, 21)


REAL_ESRGAN = RealRanges()


@dataclass(frozen=True)
class StageDraw:
    kernel: Kernel | None  # None: no blur
    resize: float  # factor; first stage: of the input size, second: of the output size
    resize_mode: ResizeMode
    noise: Literal["gaussian", "poisson"]
    noise_level: float  # Gaussian sigma (0..255 scale) or Poisson scale
    grey_noise: bool
    jpeg_quality: int


@dataclass(frozen=True)
class RealDraw:
    first: StageDraw
    second: StageDraw
    final_mode: ResizeMode
    final_sinc: Kernel | None  # None: no final filter
    jpeg_last: bool  # final order: resize + sinc, then JPEG (True), or JPEG, then resize + sinc


def _odd_size(sizes: tuple[int, int], rng: np.random.Generator) -> int:
    return int(rng.choice(np.arange(sizes[0] | 1, sizes[1] + 1, 2)))


def _beta(span: tuple[float, float], rng: np.random.Generator) -> float:
    """Real-ESRGAN's draw: half the time in [low, 1], half in [1, high], so both sides of the Gaussian
    are equally likely whatever the span's width."""
    return float(rng.uniform(span[0], 1.0) if rng.random() < 0.5 else rng.uniform(1.0, span[1]))


def draw_kernel(ranges: StageRanges, rng: np.random.Generator) -> Kernel:
    size = _odd_size(ranges.kernel_sizes, rng)
    if rng.random() < ranges.sinc_prob:
        # Real-ESRGAN: small kernels keep the cutoff high, so the truncated sinc still low-passes.
        low = math.pi / 3 if size < 13 else math.pi / 5
        return Kernel("sinc", size, cutoff=float(rng.uniform(low, math.pi)))
    shape, anisotropic, _ = KERNEL_MIXTURE[rng.choice(len(KERNEL_MIXTURE), p=[p for *_, p in KERNEL_MIXTURE])]
    sigma_x = float(rng.uniform(*ranges.sigma))
    sigma_y, theta = (float(rng.uniform(*ranges.sigma)), float(rng.uniform(-math.pi, math.pi))) \
        if anisotropic else (sigma_x, 0.0)
    beta = {"gaussian": lambda: 1.0, "generalized": lambda: _beta(ranges.generalized_beta, rng),
            "plateau": lambda: _beta(ranges.plateau_beta, rng)}[shape]()
    return Kernel(shape, size, sigma_x, sigma_y, theta, beta)


def draw_stage(ranges: StageRanges, rng: np.random.Generator) -> StageDraw:
    kernel = draw_kernel(ranges, rng) if rng.random() < ranges.blur_prob else None
    direction = rng.choice(3, p=ranges.resize_probs)
    resize = [rng.uniform(1.0, ranges.resize_range[1]), rng.uniform(ranges.resize_range[0], 1.0), 1.0][direction]
    mode = RESIZE_MODES[rng.integers(len(RESIZE_MODES))]
    gaussian = rng.random() < ranges.gaussian_prob
    level = rng.uniform(*(ranges.noise_sigma if gaussian else ranges.poisson_scale))
    grey = rng.random() < ranges.grey_noise_prob
    quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
    return StageDraw(kernel, float(resize), mode, "gaussian" if gaussian else "poisson", float(level), bool(grey),
                     quality)


def draw_real(rng: np.random.Generator, ranges: RealRanges = REAL_ESRGAN) -> RealDraw:
    first, second = draw_stage(ranges.first, rng), draw_stage(ranges.second, rng)
    final_mode = RESIZE_MODES[rng.integers(len(RESIZE_MODES))]
    final_sinc = None
    if rng.random() < ranges.final_sinc_prob:
        final_sinc = Kernel("sinc", _odd_size(ranges.final_kernel_sizes, rng),
                            cutoff=float(rng.uniform(*ranges.final_sinc_cutoff)))
    return RealDraw(first, second, final_mode, final_sinc, jpeg_last=bool(rng.random() < 0.5))


def _blur_resize_noise(img: np.ndarray, stage: StageDraw, size: tuple[int, int],
                       rng: np.random.Generator) -> np.ndarray:
    if stage.kernel is not None:
        img = blur(img, stage.kernel.weights())
    img = interpolate(img, *size, stage.resize_mode)
    add_noise = gaussian_noise if stage.noise == "gaussian" else scaled_poisson_noise
    return np.clip(add_noise(img, stage.noise_level, rng, grey=stage.grey_noise), 0.0, 1.0)


def apply_real(clean: np.ndarray, draw: RealDraw, *, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Real-ESRGAN's degradation of a clean (H, W, C) image to exactly (H // scale, W // scale, C), 8 bits.

    First stage: blur, resize by its factor, noise, JPEG. Second: blur, resize to its factor of the output
    size, noise, then in random order [resize to the output size + sinc] and [JPEG at the second stage's
    quality]."""
    h, w = clean.shape[:2]
    out_h, out_w = h // scale, w // scale

    def sized(height: int, width: int, factor: float) -> tuple[int, int]:
        return max(1, int(height * factor)), max(1, int(width * factor))

    img = jpeg(_blur_resize_noise(clean, draw.first, sized(h, w, draw.first.resize), rng), draw.first.jpeg_quality)
    img = _blur_resize_noise(img, draw.second, sized(out_h, out_w, draw.second.resize), rng)

    def resize_and_sinc(x: np.ndarray) -> np.ndarray:
        x = interpolate(x, out_h, out_w, draw.final_mode)
        return x if draw.final_sinc is None else blur(x, draw.final_sinc.weights())

    if draw.jpeg_last:
        img = jpeg(resize_and_sinc(img), draw.second.jpeg_quality)
    else:
        img = resize_and_sinc(jpeg(img, draw.second.jpeg_quality))
    return quantize_8bit(img)


def real_world(clean: np.ndarray, scale: int, rng: np.random.Generator, ranges: RealRanges = REAL_ESRGAN) -> np.ndarray:
    """The `real` preset: draw the degradation, then apply it (the same rng gives the noise)."""
    return apply_real(clean, draw_real(rng, ranges), scale=scale, rng=rng)


# --- the `camera` preset: sensor noise in linear light, then 8 bits and JPEG --------------------------

@dataclass(frozen=True)
class CameraRanges:
    """Brooks et al. 2019 (Unprocessing images for learned raw denoising): log(shot) uniform, log(read)
    Gaussian around a line in log(shot) fitted to real sensors. Intensities are linear, 0..1."""

    shot: tuple[float, float] = (1e-4, 1.2e-2)  # variance per unit intensity, log-uniform
    read_slope: float = 2.18  # log(read) ~ N(read_slope * log(shot) + read_offset, read_spread^2)
    read_offset: float = 1.20
    read_spread: float = 0.26
    jpeg_prob: float = 0.8  # the rest are saved losslessly (PNG, TIFF): the model must not expect blocks
    jpeg_quality: tuple[int, int] = (30, 95)  # as Real-ESRGAN's: phones save at 85-95, the web recompresses


CAMERA = CameraRanges()


@dataclass(frozen=True)
class CameraDraw:
    shot: float
    read: float
    jpeg_quality: int | None  # None: saved without JPEG


def draw_camera(rng: np.random.Generator, ranges: CameraRanges = CAMERA) -> CameraDraw:
    log_shot = rng.uniform(math.log(ranges.shot[0]), math.log(ranges.shot[1]))
    log_read = rng.normal(ranges.read_slope * log_shot + ranges.read_offset, ranges.read_spread)
    quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
    saved_as_jpeg = rng.random() < ranges.jpeg_prob
    return CameraDraw(float(math.exp(log_shot)), float(math.exp(log_read)), quality if saved_as_jpeg else None)


def apply_camera(clean: np.ndarray, draw: CameraDraw, rng: np.random.Generator) -> np.ndarray:
    """sRGB -> linear -> Poisson-Gaussian noise -> sRGB (clipped) -> 8 bits -> JPEG if drawn. Same size."""
    return saved_as_drawn(sensor_image(clean, draw, rng), draw)


def sensor_image(clean: np.ndarray, draw: CameraDraw, rng: np.random.Generator) -> np.ndarray:
    """The photo as the sensor saw it: the drawn noise added in linear light, back in sRGB (clipped)."""
    return linear_to_srgb(poisson_gaussian_noise(srgb_to_linear(clean), draw.shot, draw.read, rng))


def saved_as_drawn(noisy: np.ndarray, draw: CameraDraw) -> np.ndarray:
    """The sensor image as the drawn file stores it: 8 bits, then JPEG if drawn."""
    return quantize_8bit(noisy) if draw.jpeg_quality is None else jpeg(noisy, draw.jpeg_quality)


def camera(clean: np.ndarray, rng: np.random.Generator, ranges: CameraRanges = CAMERA) -> np.ndarray:
    """The `camera` preset: draw the sensor and file, then apply them (the same rng gives the noise)."""
    return apply_camera(clean, draw_camera(rng, ranges), rng)


def camera_keeping_noise(clean: np.ndarray, rng: np.random.Generator,
                         ranges: CameraRanges = CAMERA) -> tuple[np.ndarray, np.ndarray]:
    """The `camera` preset's input, and as target the photo as the sensor saw it: noisy, before the file's
    8 bits and JPEG. A model trained on these pairs removes the file's artefacts and keeps the grain (the
    light end of real-restore's --strength). Same draws, in the same order, as `camera`."""
    draw = draw_camera(rng, ranges)
    noisy = sensor_image(clean, draw, rng)
    return saved_as_drawn(noisy, draw), noisy.astype(np.float32)


# --- the `web` preset: one mild stage with an antialiased downscale -------------------------------------

@dataclass(frozen=True)
class WebRanges:
    """A photo shrunk for the web: the issue's "blurred a little, downscaled, mild noise, JPEG 75" and its
    neighbours. Every value drawn uniformly."""

    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # pixels of the full-size image, isotropic Gaussian
    # Pillow's antialiased filters, as editors and browsers shrink images (no aliasing, unlike `real`).
    downscale_filters: tuple[str, ...] = ("bicubic", "lanczos", "box", "bilinear")
    noise_prob: float = 0.6
    noise_sigma: tuple[float, float] = (1.0, 8.0)  # 0..255 scale, at the small size (after the downscale)
    jpeg_prob: float = 0.85  # the rest stay lossless (PNG)
    jpeg_quality: tuple[int, int] = (50, 95)


WEB = WebRanges()
REAL_WEB_SHARE = 0.5  # `real-web`: share of samples from Real-ESRGAN's pipeline, the rest from `web`


@dataclass(frozen=True)
class WebDraw:
    blur_sigma: float | None  # None: no blur
    downscale_filter: str
    noise_sigma: float | None  # None: no noise
    jpeg_quality: int | None  # None: no JPEG


def draw_web(rng: np.random.Generator, ranges: WebRanges = WEB) -> WebDraw:
    sigma = float(rng.uniform(*ranges.blur_sigma)) if rng.random() < ranges.blur_prob else None
    resample = ranges.downscale_filters[int(rng.integers(len(ranges.downscale_filters)))]
    noise = float(rng.uniform(*ranges.noise_sigma)) if rng.random() < ranges.noise_prob else None
    quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
    return WebDraw(sigma, resample, noise, quality if rng.random() < ranges.jpeg_prob else None)


def apply_web(clean: np.ndarray, draw: WebDraw, *, scale: int, rng: np.random.Generator) -> np.ndarray:
    """Blur -> antialiased downscale to exactly (H // scale, W // scale) -> noise -> 8 bits -> JPEG."""
    img = clean if draw.blur_sigma is None else gaussian_blur(clean, draw.blur_sigma)
    h, w = clean.shape[:2]
    if scale > 1:
        img = resize(img, (w // scale, h // scale), Image.Resampling[draw.downscale_filter.upper()])
    if draw.noise_sigma is not None:
        img = gaussian_noise(img, draw.noise_sigma, rng)
    img = np.clip(img, 0.0, 1.0)
    return quantize_8bit(img) if draw.jpeg_quality is None else jpeg(img, draw.jpeg_quality)


def web(clean: np.ndarray, scale: int, rng: np.random.Generator, ranges: WebRanges = WEB) -> np.ndarray:
    """The `web` preset: draw, then apply (the same rng gives the noise)."""
    return apply_web(clean, draw_web(rng, ranges), scale=scale, rng=rng)


def degrade_pair(clean: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training input, target) for a clean crop: the target is the clean crop, or with `keep_noise` the
    sensor's noisy image (see camera_keeping_noise)."""
    if cfg.keep_noise:
        return camera_keeping_noise(clean, rng)
    return degrade(clean, cfg, rng), clean


def degrade(clean: np.ndarray, cfg: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """The training input for a clean target crop: a preset's pipeline, or the flags' steps: blur, downscale,
    noise, JPEG, then maybe 8-bit rounding."""
    if cfg.preset == "real":
        return real_world(clean, cfg.scale, rng)
    if cfg.preset == "web":
        return web(clean, cfg.scale, rng)
    if cfg.preset == "real-web":
        mixture = real_world if rng.random() < REAL_WEB_SHARE else web
        return mixture(clean, cfg.scale, rng)
    if cfg.preset == "camera":
        return camera(clean, rng)
    img = clean
    if cfg.blur[1] > 0:
        img = gaussian_blur(img, rng.uniform(*cfg.blur))
    if cfg.task == "sr":
        img = downscale(img, cfg.scale)
    if cfg.poisson_peak > 0:
        img = poisson_noise(img, cfg.poisson_peak, rng)
    if cfg.sigma[1] > 0:
        img = gaussian_noise(img, rng.uniform(*cfg.sigma), rng)
    if cfg.salt_pepper > 0:
        img = salt_and_pepper(img, cfg.salt_pepper, rng)
    if cfg.jpeg is not None:
        img = jpeg(img, int(rng.integers(cfg.jpeg[0], cfg.jpeg[1] + 1)))
    if rng.random() < cfg.quantize_share:
        img = quantize_8bit(img)
    return img.astype(np.float32)
