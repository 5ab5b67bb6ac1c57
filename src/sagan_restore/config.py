"""Typed configuration. `cli.py` builds these once; everything else receives them explicitly.

A run folder's `config.json` and every checkpoint hold `config_to_dict(cfg)`, and saved generators hold
their `GeneratorConfig`, so a model is rebuilt from its file without repeating any training flag.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int = 3
    out_channels: int = 3
    width: int = 32  # channels at full resolution; doubled at each level down
    depth: int = 3  # number of 2x downsamplings; inputs are padded to a multiple of 2**depth
    # Blocks per level, in the encoder and in the decoder at that level; the last entry is the bottleneck's.
    # An int means that many at every level. A block costs about the same FLOPs at every level (twice the
    # channels on a quarter of the pixels) but less memory traffic and time at the coarse ones, where
    # convolutions are wider, and it sees more context there.
    blocks: int | tuple[int, ...] = 1
    # Levels with self-attention: 0 = full resolution ... depth = bottleneck (fewest tokens, the default).
    attn_levels: tuple[int, ...] | None = None
    scale: int = 1  # 1 for restoration, 2/3/4 for super-resolution
    # "res": conv-LeakyReLU-conv residual blocks. "naf": NAFNet's blocks (LayerNorm, 1x1 -> depthwise 3x3
    # -> SimpleGate -> simplified channel attention -> 1x1, then a gated feed-forward, learned residual
    # scales starting at 0).
    block: Literal["res", "naf"] = "res"
    # > 1: FFDNet's stem: the U-Net starts at 1/unshuffle of the input resolution (pixel unshuffle, so no
    # pixel is lost) with `width` channels there, and a pixel shuffle restores the resolution at the end.
    unshuffle: int = 1
    # FFDNet's noise-level map as an extra input plane, filled by the built-in estimator
    # (models/noise_level.py) from each input itself, so the model stays blind: one command, no sigma.
    noise_map: bool = False
    # How super-resolution leaves the low resolution. "steps": EDSR's tail, a 3x3 conv + pixel shuffle per x2
    # step, then a conv to the output channels at the full output resolution (at x4 the second step and the
    # last conv run on 4x and 16x the pixels: 43% of the FLOPs of an x4 model with 4 blocks at the input
    # resolution). "once": ESPCN's and SPAN's, one 3x3 conv to out_channels * scale**2 at the input
    # resolution and one pixel shuffle (the shipped sr4's).
    upsampler: Literal["steps", "once"] = "steps"

    def __post_init__(self):
        if self.attn_levels is None:
            object.__setattr__(self, "attn_levels", (self.depth,))
        if not isinstance(self.blocks, int):
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
            if len(self.blocks) != self.depth + 1:
                raise ValueError(f"blocks {list(self.blocks)}: give one count per level, {self.depth + 1} "
                                 f"for depth {self.depth} (the last is the bottleneck's)")
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"width {self.width} and depth {self.depth}: both must be at least 1")
        if min(self.level_blocks) < 0 or self.blocks == 0:
            raise ValueError(f"blocks {self.blocks}: counts must be 0 or more, and a single count at least 1")
        check_choice(self, "block")
        if self.unshuffle not in (1, 2, 4):
            raise ValueError(f"unshuffle must be 1, 2 or 4, not {self.unshuffle}")
        if self.noise_map and self.scale > 1:
            raise ValueError("noise_map is for denoising (scale 1)")
        if self.unshuffle > 1 and self.scale > 1:
            raise ValueError("unshuffle is for restoration (scale 1): SR already works at the low resolution")
        check_choice(self, "upsampler")
        if self.upsampler == "once" and self.scale == 1:
            raise ValueError("upsampler 'once' is for super-resolution (scale 2, 3 or 4)")
        if self.scale not in (1, 2, 3, 4):
            raise ValueError(f"scale must be 1, 2, 3 or 4, not {self.scale}")
        bad = [lv for lv in self.attn_levels if not 0 <= lv <= self.depth]
        if bad:
            raise ValueError(f"attention levels {bad} outside 0..{self.depth}")

    @property
    def level_blocks(self) -> tuple[int, ...]:
        """Blocks at each level 0..depth (depth = the bottleneck)."""
        if isinstance(self.blocks, int):
            return (self.blocks,) * (self.depth + 1)
        return self.blocks

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this: every level must halve evenly."""
        return self.unshuffle * 2**self.depth


@dataclass(frozen=True)
class DegradationConfig:
    """How clean images are degraded on the fly. Steps run in this order: blur, downscale, noise, JPEG."""

    task: Literal["denoise", "sr"] = "denoise"
    scale: int = 1  # downscaling factor for "sr" (2, 3 or 4); 1 for "denoise"
    # "custom": the steps below, as set. "real": Real-ESRGAN's second-order pipeline (blur, resize, noise,
    # JPEG, twice, then resize + sinc and JPEG), "web": one mild stage (blur, antialiased downscale, noise,
    # JPEG), "real-web": half of each, "camera": Poisson-Gaussian sensor noise in linear light, 8 bits, JPEG
    # (scale 1 only). Presets draw every parameter themselves (ranges in data/degradations.py: REAL_ESRGAN,
    # WEB, CAMERA) and end in 8 bits, so the step fields below must stay off.
    preset: Literal["custom", "real", "web", "real-web", "camera"] = "custom"
    # Gaussian noise std on the 0..255 scale, drawn uniformly; None: 25 for denoising, 0 for SR.
    sigma: tuple[float, float] | None = None
    poisson_peak: float = 0.0  # > 0: Poisson (shot) noise with this many photons at white
    salt_pepper: float = 0.0  # fraction of pixels set to 0 or 1
    blur: tuple[float, float] = (0.0, 0.0)  # Gaussian blur std in pixels, drawn uniformly
    jpeg: tuple[int, int] | None = None  # JPEG quality range, e.g. (30, 95)
    quantize_share: float = 0.5  # share of inputs clipped and rounded to 8 bits, as files users bring
    grey_share: float = 0.0  # share of colour crops made grey (equal channels, equal noise) first
    # With preset camera: the target is the sensor's noisy photo, not the clean one, so the model learns to
    # remove the file's 8-bit and JPEG artefacts and keep the grain (a `_light` strength variant).
    keep_noise: bool = False

    def __post_init__(self):
        check_choice(self, "task")
        check_choice(self, "preset")
        if self.keep_noise and self.preset != "camera":
            raise ValueError("keep_noise needs preset camera: it keeps that preset's sensor noise in the target")
        if self.sigma is None:
            plain_denoising = self.task == "denoise" and self.preset == "custom"
            object.__setattr__(self, "sigma", (25.0, 25.0) if plain_denoising else (0.0, 0.0))
        if self.preset != "custom":
            steps = {"sigma": self.sigma != (0.0, 0.0), "blur": self.blur != (0.0, 0.0), "jpeg": self.jpeg is not None,
                     "poisson_peak": self.poisson_peak > 0, "salt_pepper": self.salt_pepper > 0}
            given = [name for name, on in steps.items() if on]
            if given:
                raise ValueError(f"{given[0]} with preset {self.preset!r}: the preset draws its own blur, noise and "
                                 "JPEG; leave it out")
        if self.preset == "camera" and self.task != "denoise":
            raise ValueError("preset camera: restoration at scale 1 only (task denoise); to upscale, use preset real")
        if self.task == "sr" and self.scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4 for super-resolution, not {self.scale}")
        if self.task == "denoise" and self.scale != 1:
            raise ValueError(f"scale {self.scale} with task 'denoise': use task 'sr' to upscale")
        for name in ("sigma", "blur"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} {low:g}-{high:g}: expected 0 <= low <= high")
        if self.jpeg is not None and not 1 <= self.jpeg[0] <= self.jpeg[1] <= 100:
            raise ValueError(f"jpeg {self.jpeg}: qualities must be 1..100, low <= high")
        for name in ("quantize_share", "grey_share", "salt_pepper"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} {getattr(self, name):g}: must be between 0 and 1")
        if self.poisson_peak < 0:
            raise ValueError(f"poisson_peak {self.poisson_peak:g}: must be 0 (off) or more")


@dataclass(frozen=True)
class ValueRange:
    """Raw sample values of each band that a model sees as 0 and 1: how rasters (GeoTIFF, DICOM) whose
    values are not 0..255 photos are normalised. Measured on the training data when a run starts
    (data.datasets.with_value_range), stored with the run and in the model's metadata, and applied by
    `enhance`, so inference sees what training saw."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    measured: str = ""  # how the numbers were found, e.g. "0.5/99.5th percentiles of 12 training rasters"

    def __post_init__(self):
        object.__setattr__(self, "low", tuple(float(v) for v in self.low))
        object.__setattr__(self, "high", tuple(float(v) for v in self.high))
        if not self.low or len(self.low) != len(self.high):
            raise ValueError(f"value_range: {len(self.low)} low and {len(self.high)} high values; give one "
                             "pair per band")
        if not all(math.isfinite(lo) and math.isfinite(hi) and hi > lo for lo, hi in zip(self.low, self.high)):
            raise ValueError(f"value_range {self.low}..{self.high}: each band needs finite values, high > low")

    @property
    def bands(self) -> int:
        return len(self.low)


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    data: Path | None = None  # paired folders: lr/hr, input/target or A/B
    aligned: Path | None = None  # side-by-side input|target images
    clean: tuple[Path, ...] = ()  # folders of clean images degraded on the fly
    clean_weights: tuple[float, ...] = ()  # how often each --clean folder is drawn from (relative)
    dead_leaves: float = 0.0  # with --clean: relative weight of procedural dead-leaves images
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    val: Path | None = None  # held-out images (clean, degraded once with fixed seeds) or pairs (lr/ + hr/)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    load_size: int | None = None  # resize so the shorter side is this before cropping
    crop: int = 64  # target-side crop size
    augment: bool = True  # random flips and 90-degree rotations
    iters: int = 5_000
    batch: int = 8  # the global batch: split over torchrun processes and accumulation steps
    lr: float = 2e-4
    lr_decay_from: float = 1.0  # fraction of iters after which the lr falls to 0 (1.0 = constant)
    lr_schedule: Literal["linear", "cosine"] = "linear"  # that fall: linear (pix2pix) or cosine (NAFNet, SAFMN)
    betas: tuple[float, float] = (0.5, 0.999)  # pix2pix's Adam betas
    weight_decay: float = 0.0  # > 0: AdamW's decoupled weight decay
    adv_weight: float = 1.0
    l1_weight: float = 100.0  # weight of the pixel loss; pix2pix's value: L1 anchors content, D adds texture
    pixel_loss: Literal["l1", "charbonnier"] = "l1"
    fft_weight: float = 0.0  # > 0: add a frequency (FFT) term, this many times the pixel loss's weight
    d_width: int = 32  # pix2pix uses 64; 32 costs a quarter of the FLOPs and judges 70x70 patches all the same
    d_layers: int = 3  # 3 layers give the 70x70 receptive field of pix2pix
    spectral_norm: bool = False
    # D's normalisation. "instance" keeps samples independent (results do not depend on how a batch is split
    # across processes) but normalises away each sample's texture energy, the very cue that tells a smooth
    # L1 output from a real photo: a fresh D stays at chance against a trained denoiser for hundreds of
    # steps. "batch" (pix2pix's choice; real and fake then pass through D separately) keeps that cue.
    d_norm: Literal["instance", "batch", "none"] = "instance"
    # D's shape: "patch" (pix2pix's PatchGAN, the options above) or "unet" (Real-ESRGAN's U-Net discriminator,
    # spectral norm built in, a logit per pixel; d_width sets its width, d_layers and d_norm do not apply).
    d_arch: Literal["patch", "unet"] = "patch"
    fm_weight: float = 0.0  # > 0: feature matching on D's features (models/losses.py), this weight
    # D's learning rate as a multiple of G's (the two time-scale update rule, Heusel et al. 2017), the usual
    # remedy for a fresh D that stays at chance against a trained fidelity model (real-restore's stayed at
    # chance for 380 steps at G's rate; docs/MODELS.md has what the faster rates did).
    d_lr_mult: float = 1.0
    # D judges (input, output) pairs (pix2pix's conditional D) or, False, the output alone (Real-ESRGAN's,
    # which need not read a faint texture difference beside a noisy input).
    d_conditional: bool = True
    # Steps at the start in which only D learns, G's weights staying as --init-from gave them: a fresh D
    # against a trained fidelity model gets that long to find its cue before G starts to follow it.
    d_warmup: int = 0
    # > 0: D judges the image minus its Gaussian blur of this sigma (pixels), its fine detail and noise only
    # (the frequency separation of Fritsche et al. 2019): colour and shading, which L1 already fixes, no
    # longer drown the texture difference between a restored output and a photo. 0: the whole image.
    d_highpass: float = 0.0
    # > 0: penalise a pattern locked to the input-pixel grid in SR (models/losses.py, phase_locked_loss), this
    # many times the pixel loss's weight: the mark a pixel-shuffle tail repeats in each input pixel's block of
    # output, which L1 barely sees and a discriminator rewards.
    grid_weight: float = 0.0
    # > 0: hold the output's steps across the input's JPEG block boundaries (every 8 x scale pixels) to the
    # target's (models/losses.py, block_boundary_loss), this many times the pixel loss's weight: against
    # the JPEG grid a real-world model leaves in, or enlarges.
    block_weight: float = 0.0
    # > 0: hold the colour's fine detail to the target's (models/losses.py, chroma_detail_loss), this many times
    # the pixel loss's weight: against the colour speckle of GAN fine-tunes on degraded inputs.
    chroma_weight: float = 0.0
    # > 0: hold the amount of fine detail in each 16-pixel patch (RMS Laplacian of the luma) to the target's
    # (models/losses.py, detail_amplitude_loss), this many times the pixel loss's weight: a realism
    # fine-tune's sharpness towards the photo's, up where L1 smooths and down where a GAN overshoots.
    detail_weight: float = 0.0
    # > 0: LDL's artifact term (models/losses.py, artifact_loss), this many times the pixel loss's weight:
    # L1 pulls harder where the output's error is noisy and worse than the EMA model's, the pixels where a
    # GAN invents texture that is not there. Needs ema above 0.
    artifact_weight: float = 0.0
    seed: int = 0
    init_from: Path | None = None  # start the generator from these weights (a fine-tune, or shipped weights)
    device: str = "auto"
    # "auto": bf16 autocast on a GPU that has it and on a CPU that runs bf16 natively (AVX512-BF16 or AMX),
    # float32 elsewhere (CPUs without it emulate bf16, slower than float32); or "fp32", "bf16".
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    ema: float = 0.0  # > 0: decay of a moving average of G's weights, used for samples and the saved model
    accumulate: int = 1  # micro-batches per optimiser step; `batch` is the global batch either way
    compile: bool = False  # torch.compile the nets for the training step
    channels_last: bool = False  # NHWC memory layout: faster convolutions on most GPUs and on oneDNN CPUs
    workers: int = 0
    cache_mb: int = 2048  # decoded training images kept in memory, per process
    tensorboard: bool = False  # also log to RUN_DIR/tensorboard (needs the tensorboard package)
    save_every: int = 500
    keep: int = 3  # newest checkpoints kept; older ones are deleted after each successful save
    sample_every: int = 250
    log_every: int = 10
    max_pixels: int = 200_000_000  # larger images are refused as possible decompression bombs
    # How raster data (GeoTIFF, DICOM) is normalised; None for photos (0..255, 0..65535) or until the run
    # measures it on its data.
    value_range: ValueRange | None = None

    def __post_init__(self):
        for name in ("precision", "pixel_loss", "lr_schedule", "d_norm", "d_arch"):
            check_choice(self, name)
        for name in ("iters", "batch", "crop", "save_every", "keep", "sample_every", "log_every", "max_pixels",
                     "accumulate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema {self.ema:g}: the decay must be in [0, 1), e.g. 0.999 (0 = no moving average)")
        for name in ("cache_mb", "workers", "fft_weight", "weight_decay", "adv_weight", "l1_weight", "dead_leaves",
                     "fm_weight", "d_lr_mult", "grid_weight", "block_weight",
                     "chroma_weight", "detail_weight", "artifact_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} {getattr(self, name):g}: must be 0 or more")
        if self.d_arch == "unet" and self.d_norm != "none":
            raise ValueError(f"d_norm {self.d_norm}: the U-Net discriminator has spectral norm and no other "
                             "normalisation; use d_norm none with it")
        if self.d_highpass < 0:
            raise ValueError(f"d_highpass {self.d_highpass:g}: must be 0 (off) or a blur sigma in pixels")
        if self.d_warmup < 0:
            raise ValueError(f"d_warmup {self.d_warmup}: must be 0 or more steps")
        if self.d_warmup > 0 and self.adv_weight == 0:
            raise ValueError("d_warmup needs a discriminator: set adv_weight above 0 too")
        if self.fm_weight > 0 and self.adv_weight == 0:
            raise ValueError("fm_weight needs a discriminator: set adv_weight above 0 too")
        if self.artifact_weight > 0 and self.ema == 0:
            raise ValueError("artifact_weight compares G with the moving average of its weights: set ema above "
                             "0 too (e.g. 0.999)")
        if self.grid_weight > 0 and self.generator.scale == 1:
            raise ValueError("grid_weight is for super-resolution (--scale 2, 3 or 4): at scale 1 there is no "
                             "input-pixel grid")
        if not 0 <= self.lr_decay_from <= 1:
            raise ValueError(f"lr_decay_from {self.lr_decay_from:g}: a fraction of the run, 0..1")


@dataclass(frozen=True)
class EvaluateConfig:
    """What `sagan-restore evaluate` scores: every method on every set at every noise level or scale."""

    sets: tuple[Path, ...]
    task: str = "denoise"  # "denoise" or "sr"; a paired lr/ + hr/ set follows its own size ratio
    sigmas: tuple[float, ...] = (25.0,)  # protocol noise levels on the 0..255 scale (denoise)
    scales: tuple[int, ...] = (4,)  # upscaling factors (sr)
    models: tuple[str, ...] = ()  # pretrained names, run folders, .safetensors or .pt files
    realism: tuple[float, ...] = ()  # points scored for models with a GAN variant; (): each model's default
    strengths: tuple[float, ...] = ()  # --strength values scored (light-variant or noise-map models); (): 1 only
    baselines: tuple[str, ...] = ()  # names from sagan_restore.baselines
    quantized_input: bool = False  # clip and round noisy inputs to 8 bits, as a saved file would be
    device: str = "auto"
    threads: int | None = None  # torch threads for models; None: torch's default. Baselines use one.
    tile: int | None = None  # models' tile size in input pixels; None: Enhancer's automatic choice, 0: none
    half: bool = False  # models in bf16 (fp16) autocast, as enhance --half: where the CPU or GPU runs it
    self_ensemble: bool = False  # models average over the 8 flips and quarter turns, as enhance --self-ensemble
    figure_images: int = 3  # images shown in each comparison figure


@dataclass(frozen=True)
class ServeConfig:
    """What `sagan-restore serve` offers and how much it takes at once."""

    host: str = "127.0.0.1"  # loopback: only this machine can reach the page
    port: int = 7860
    models: tuple[str, ...] = ()  # model specs offered on the page; () = the shipped pretrained models
    device: str = "auto"
    tile: int | None = None  # as `enhance --tile`; None: from the free memory
    max_upload_mb: float = 100.0  # larger request bodies get HTTP 413 before they are stored
    max_pixels: int = 25_000_000  # of a result (input pixels x scale^2): bounds the worker's memory
    queue: int = 8  # images waiting for the worker at most; more get HTTP 503 until one finishes
    keep_minutes: float = 60.0  # finished results are deleted after this (or when the page removes them)


def check_choice(cfg: Any, name: str) -> None:
    """A Literal-typed field must hold one of its values: "SR" or "bf32" would otherwise run as something else."""
    allowed = get_args(_type_hints(type(cfg))[name])
    if getattr(cfg, name) not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(cfg, name)!r}")


@functools.cache
def _type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def defaults(cls) -> dict[str, Any]:
    """The field defaults of a config dataclass: the one place the CLI takes its defaults from."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def config_to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = config_to_dict(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[f.name] = value
    return out


def generator_config_from_dict(d: dict) -> GeneratorConfig:
    """Fields missing from older files take their defaults, which are those files' architecture."""
    levels = d.get("attn_levels")
    blocks = d.get("blocks", 1)
    return GeneratorConfig(**{**d, "attn_levels": tuple(levels) if levels is not None else None,
                              "blocks": blocks if isinstance(blocks, int) else tuple(blocks)})


def train_config_from_dict(d: dict) -> TrainConfig:
    d = dict(d)
    deg = dict(d.pop("degradation"))
    gen = generator_config_from_dict(d.pop("generator"))
    for key in ("sigma", "blur", "jpeg"):
        if deg.get(key) is not None:
            deg[key] = tuple(deg[key])
    for key in ("out", "data", "aligned", "init_from", "val"):
        if d.get(key) is not None:
            d[key] = Path(d[key])
    d["clean"] = tuple(Path(p) for p in d.get("clean", ()))
    d["clean_weights"] = tuple(d.get("clean_weights", ()))
    if d.get("value_range") is not None:
        d["value_range"] = ValueRange(**d["value_range"])
    return TrainConfig(
        **{**d, "betas": tuple(d["betas"])},
        degradation=DegradationConfig(**deg),
        generator=gen,
    )
