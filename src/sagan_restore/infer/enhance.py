"""Applying a trained generator to images: arrays in memory and files on disk."""

from __future__ import annotations

import glob
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from sagan_restore import distributed
from sagan_restore.devices import pick_device, uses_bf16
from sagan_restore.errors import UserError
from sagan_restore.formats.raster import raster_kind
from sagan_restore.infer.loading import load_model
from sagan_restore.infer.rasters import BandChoice, enhance_raster
from sagan_restore.infer.tiling import OnTiles, TileSettings, auto_tile_settings, tiled_apply_shrinking
from sagan_restore.io import (DEFAULT_MAX_PIXELS, DICOM_SUFFIXES, IMAGE_SUFFIXES, JPEG_BLOCK, READ_SUFFIXES, from_memory,
                              read_image, resize, to_channels, to_memory, write_image)
from sagan_restore.models.generator import UNetGenerator, pad_to_multiple
from sagan_restore.models.noise_level import estimate_noise_level

MAX_STRENGTH = 4.0  # --strength's bound; at 2 the shipped denoiser already gives up 2.7 dB (README)
# The centre window a whole image's noise level is estimated on: a median over a million samples is steady,
# and sorting a huge image's worth would cost seconds and memory for nothing.
NOISE_WINDOW = 2048


class Enhancer:
    """A generator ready to enhance images of any size, tile by tile.

        enhancer = Enhancer.load("runs/demo", device="auto")
        clean = enhancer.enhance(noisy)  # PIL image or numpy array in, the same kind out
    """

    def __init__(self, model: UNetGenerator, device: torch.device, info: dict, *, settings: TileSettings,
                 half: bool | None = False, compile: bool = False, name: str = "model", strength: float = 1.0,
                 self_ensemble: bool = False):
        if not 0 <= strength <= MAX_STRENGTH:
            raise UserError(f"--strength {strength:g}: must be between 0 and {MAX_STRENGTH:g} (1 = as the model "
                            "judges the noise, below = gentler, above = stronger)")
        if strength != 1 and not model.cfg.noise_map:
            raise UserError(f"--strength: {name} has no noise-level input to scale; it works with models trained "
                            "with --noise-map on Gaussian noise (denoise)")
        self.strength = strength
        self.self_ensemble = self_ensemble
        self._noise_level: torch.Tensor | None = None  # the whole image's, while enhance_pixels runs
        self.device = device
        self.info = info
        self.name = name  # the --model argument, for messages and a DICOM's derivation description
        self.settings = settings
        # NHWC is the layout oneDNN (CPU) and cuDNN (tensor cores) run convolutions fastest in.
        self.model = model.to(device=device, memory_format=torch.channels_last).eval()
        self.autocast_dtype = None
        if half is None:  # `enhance --precision auto`: half where the hardware computes bf16 natively
            half = uses_bf16("auto", device)
        if half:
            if device.type == "cuda":
                self.autocast_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            elif uses_bf16("auto", device):  # a CPU with native bf16
                self.autocast_dtype = torch.bfloat16
            else:
                warnings.warn("--half: this CPU has no native bf16 (AVX512-BF16 or AMX), where it is slower "
                              "than float32; running in float32")
        # Freezing lets inductor fold weights into oneDNN convolutions on CPU; it needs inference mode, which
        # enhance_pixels always runs in. Each new tile shape compiles once (tens of seconds on CPU).
        self.forward = (torch.compile(self.model, dynamic=False, options={"freezing": True}) if compile
                        else self.model)

    @classmethod
    def load(cls, spec: str | Path, *, device: str = "cpu", tile: int | None = None, overlap: int = 32,
             batch: int | None = None, half: bool | None = False, compile: bool = False, realism: float | None = None,
             realism_model: str | Path | None = None, strength: float = 1.0,
             self_ensemble: bool = False) -> "Enhancer":
        """A pretrained model by name, or one from a run folder, .safetensors or .pt file.

        tile: input pixels per tile side; None picks one from the free memory, 0 runs whole images at once.
        overlap: pixels neighbouring tiles share and blend. batch: tiles per forward (None: automatic).
        half: bf16 (or fp16) autocast on a GPU, bf16 on a CPU that runs it natively; False (the default)
        float32; None half where the hardware computes bf16 natively, float32 elsewhere (the `enhance`
        command's default). compile: torch.compile the model.
        realism: 0 faithful .. 1 the GAN variant's sharpness, interpolated in between; None = the pretrained
        model's documented default (see infer/loading.load_model). realism_model: the GAN variant of your own
        model. strength: how hard to denoise. For a model with a light variant (real-restore), the blend of
        the two, 0..1 (see infer/loading.load_model); for other models with a noise-level input, how much
        noise they are told there is, as a multiple of their own estimate (0.5 keeps more grain and detail,
        2 smooths more). self_ensemble: average the outputs for the eight flips and quarter turns of each
        tile (geometric self-ensemble), for about eight times the network time.
        """
        torch_device = pick_device(device)
        if half is None:
            half = uses_bf16("auto", torch_device)
        model, info = load_model(spec, device=torch_device, realism=realism, realism_model=realism_model,
                                 strength=strength)
        if "strength_model" in info:  # the blend did it: the noise-level input is told the model's own estimate
            strength = 1.0
        if batch is not None and batch < 1:
            raise UserError(f"--batch {batch}: must be at least 1")
        if overlap < 0:
            raise UserError(f"--overlap {overlap}: must be 0 or more")
        settings = auto_tile_settings(model.cfg, torch_device, overlap=overlap, batch=batch,
                                      tile=None if tile is None else _tile_multiple(tile, overlap, model.multiple),
                                      bytes_per_value=2 if half and torch_device.type == "cuda" else 4)
        return cls(model, torch_device, info, settings=settings, half=half, compile=compile, name=str(spec),
                   strength=strength, self_ensemble=self_ensemble)

    @property
    def scale(self) -> int:
        return self.model.cfg.scale

    @property
    def precision(self) -> str:
        """What the network computes in: float32, bfloat16 or float16."""
        return str(self.autocast_dtype or torch.float32).removeprefix("torch.")

    def enhance(self, image):
        """Enhance a PIL image or a numpy array (H, W) or (H, W, C), C = 1-4, of uint8, uint16 or float in
        [0, 1]; returns the same kind, mode, dtype and layout, `scale` times larger. Alpha is carried through
        (resized for super-resolution) and values are clipped to the type's range."""
        pixels, alpha, kind = from_memory(image)
        out = self.enhance_pixels(pixels)
        return to_memory(out, self.upscale_alpha(alpha) if alpha is not None else None, kind)

    @torch.inference_mode()
    def enhance_pixels(self, pixels: np.ndarray, *, progress: bool = False,
                       on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """(H, W, 1|3) float pixels in [0, 1] -> (sH, sW, same C), unclipped.

        A colour model sees grey images as three equal channels and its output goes back to grey; a grey
        model enhances each colour channel on its own. progress: a tqdm bar of tiles on the terminal;
        on_progress: told the fraction of the work done (0..1) after each batch of tiles.
        """
        channels = pixels.shape[2]
        model_channels = self.model.cfg.in_channels
        if model_channels == 1 and channels == 3:
            planes = [self._tiled(pixels[..., c:c + 1], progress, _plane_progress(on_progress, c, 3))
                      for c in range(3)]
            return np.concatenate(planes, axis=2)
        out = self._tiled(to_channels(pixels, model_channels), progress, _plane_progress(on_progress, 0, 1))
        return to_channels(out, channels) if out.shape[2] != channels else out

    def _tiled(self, pixels: np.ndarray, progress: bool, on_tiles: OnTiles | None) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        # One noise level for the whole image: every tile is told the same (no seams between tiles judged
        # differently), and a whole image's estimate is steadier than a tile's.
        self._noise_level = self.image_noise_level(pixels)
        try:
            out, self.settings = tiled_apply_shrinking(
                pixels, self.run_batch, self.settings, device=self.device, multiple=self.model.multiple,
                scale=self.scale, out_channels=self.model.cfg.out_channels, progress=progress, on_tiles=on_tiles)
        finally:
            self._noise_level = None
        return out

    def image_noise_level(self, pixels: np.ndarray) -> torch.Tensor | None:
        """The level a noise-map model is told for this (H, W, C) image: its estimate times the strength."""
        if not self.model.cfg.noise_map:
            return None
        h, w = pixels.shape[:2]
        top, left = max(0, (h - NOISE_WINDOW) // 2), max(0, (w - NOISE_WINDOW) // 2)
        window = pixels[top:top + NOISE_WINDOW, left:left + NOISE_WINDOW]
        level = estimate_noise_level(torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None])
        return (level * self.strength).to(self.device)

    def run_batch(self, tiles: np.ndarray) -> np.ndarray:
        """(B, C, h, w) float32 tiles on the host -> (B, C_out, s*h, s*w) float32 results on the host."""
        x = torch.from_numpy(tiles).to(self.device).contiguous(memory_format=torch.channels_last)
        level = self._noise_level
        if level is None and self.strength != 1:  # tiles of a streamed raster: each tile's estimate, scaled
            level = estimate_noise_level(x) * self.strength
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            y = self._forward(x, level) if not self.self_ensemble else self._ensemble_forward(x, level)
        return y.float().cpu().numpy()

    def _ensemble_forward(self, x: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        """The mean of the model's outputs on the eight flips and quarter turns of `x`, each turned back.

        The tiles are padded to whole JPEG blocks first. A tile starts on a block boundary, as the tiler
        starts tiles at multiples of 2**depth; mirrored without the padding, a side of, say, 75 pixels would
        put the input's 8x8 block edges off the U-Net's stride-2 grid, which the real-world models' deblocking
        relies on. Before this padding the ensemble cost `real-restore` 0.39 dB on the x1 heavy set (JPEG
        30-60) and took x4 medium's blockiness from 1.13 to 1.20; with it, +0.06 dB and 1.15."""
        h, w = x.shape[-2:]
        padded = pad_to_multiple(x, max(self.model.multiple, JPEG_BLOCK))
        y = sum(_undo_view(self._forward(_view(padded, turns, flip), level).float(), turns, flip)
                for turns in range(4) for flip in (False, True)) / 8
        return y[..., :h * self.scale, :w * self.scale]

    def _forward(self, x: torch.Tensor, level: torch.Tensor | None) -> torch.Tensor:
        return self.forward(x) if level is None else self.forward(x, level)

    def upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        """Alpha is not restored, only resized with the image (bicubic) so it still fits."""
        if self.scale == 1:
            return alpha
        h, w = alpha.shape
        return np.clip(resize(alpha[..., None], (w * self.scale, h * self.scale))[..., 0], 0, 1)


def _view(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    """(B, C, h, w) mirrored left to right if `flip`, then turned `turns` quarter turns: one of the eight
    symmetries of the square, under which a photo is as likely as it was."""
    x = torch.flip(x, dims=(-1,)) if flip else x
    return torch.rot90(x, turns, dims=(-2, -1)).contiguous(memory_format=torch.channels_last)


def _undo_view(y: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    y = torch.rot90(y, -turns, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if flip else y


def _plane_progress(on_progress: Callable[[float], None] | None, plane: int, planes: int) -> OnTiles | None:
    """Tile counts of one of `planes` passes over the image as a fraction of the whole job."""
    if on_progress is None:
        return None
    return lambda done, total: on_progress((plane + done / total) / planes)


def _tile_multiple(tile: int, overlap: int, multiple: int) -> int:
    """A user's tile size rounded down to the model's multiple, checked against the overlap."""
    if tile < 0:
        raise UserError(f"--tile {tile}: must be 0 (no tiling) or a size in pixels")
    if tile == 0:
        return 0
    rounded = tile // multiple * multiple
    if rounded < 2 * overlap + multiple:
        raise UserError(f"--tile {tile} with --overlap {overlap}: a tile must be more than twice the overlap "
                        f"(and a multiple of {multiple}); use a larger --tile or a smaller --overlap")
    return rounded


@dataclass
class BatchReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # outputs that existed (--skip-existing)
    failed: list[tuple[Path, str]] = field(default_factory=list)  # (input, reason)
    megapixels: float = 0.0  # input megapixels enhanced
    seconds: float = 0.0

    def summary(self, out_dir: Path, precision: str = "float32") -> str:
        rate = (f" ({self.megapixels / self.seconds:.2f} MP/s, {precision})" if self.written and self.seconds > 0
                else "")
        lines = [f"enhanced {len(self.written)} image(s) into {out_dir} in {self.seconds:.1f} s{rate}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} whose output already existed")
        if self.failed:
            lines.append(f"FAILED {len(self.failed)}:")
            lines += [f"  {path}: {reason}" for path, reason in self.failed]
        return "\n".join(lines)


def _is_hidden(path: Path, root: Path) -> bool:
    """Dot files and folders: editor backups, macOS '._' twins and our own half-written temporaries."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_in(folder: Path, *, recursive: bool, exclude: Path | None) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    images = []
    for p in found:
        if p.is_file() and p.suffix.lower() in READ_SUFFIXES and not _is_hidden(p, folder):
            if exclude is None or not p.resolve().is_relative_to(exclude):
                images.append(p)
    return sorted(images)


def collect_inputs(inputs: list[Path], *, recursive: bool = False,
                   exclude: Path | None = None) -> list[tuple[Path, Path]]:
    """(image file, output path relative to the output folder) for every file, folder and glob pattern.

    Files found in a folder keep their path below it (with --recursive); `exclude` (the output folder) is
    never searched, so a second run does not enhance its own outputs.
    """
    exclude = exclude.resolve() if exclude is not None else None
    found: list[tuple[Path, Path]] = []
    for path in inputs:
        if path.is_dir():
            images = _images_in(path, recursive=recursive, exclude=exclude)
            if not images:
                where = "in this folder or below" if recursive else "in this folder (add --recursive for subfolders)"
                raise UserError(f"{path}: no images {where}; looked for {', '.join(READ_SUFFIXES)}")
            found += [(p, p.relative_to(path)) for p in images]
        elif path.exists():
            found.append((path, Path(path.name)))
        elif any(c in str(path) for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=recursive))
            images = [p for p in matches if p.is_file() and p.suffix.lower() in READ_SUFFIXES]
            if not images:
                raise UserError(f"{path}: no image files match this pattern")
            found += [(p, Path(p.name)) for p in images]
        else:
            raise UserError(f"{path}: no such file or folder")
    return found


def output_path_for(relative: Path, out_dir: Path, *, suffix: str = "", ext: str | None = None) -> Path:
    """The input's name (plus `suffix`) and format, or the format `ext` (".png", ".jpg", ...); formats read
    but not written (GIF) become PNG."""
    if ext is None:
        ext = relative.suffix if relative.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES else ".png"
    return out_dir / relative.parent / f"{relative.stem}{suffix}{ext}"


def _listing(paths: list, limit: int = 5) -> str:
    shown = ", ".join(str(p) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def plan_outputs(inputs: list[tuple[Path, Path]], out_dir: Path, *, suffix: str, overwrite: bool,
                 skip_existing: bool, ext: str | None = None) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(input, output) pairs to enhance and the outputs skipped because they exist. Refuses, before any
    work, to overwrite an input, to write two inputs to one output, or to replace outputs unasked."""
    plans = [(src, output_path_for(rel, out_dir, suffix=suffix, ext=ext)) for src, rel in inputs]
    clashes = [str(src) for src, dst in plans if dst.resolve() == src.resolve()]
    if clashes:
        raise UserError("the output would overwrite its input (choose another -o or a --suffix): " + _listing(clashes))
    seen: dict[Path, Path] = {}
    for src, dst in plans:
        if dst in seen:
            raise UserError(f"{seen[dst]} and {src} would both be written to {dst}; enhance them into different "
                            "folders or keep their folders with --recursive on the parent folder")
        seen[dst] = src
    existing = [dst for _, dst in plans if dst.exists()]
    if existing and skip_existing:
        return [(src, dst) for src, dst in plans if not dst.exists()], existing
    if existing and not overwrite:
        raise UserError(f"{len(existing)} output(s) already exist: {_listing(existing)}; pass --overwrite to "
                        "replace them or --skip-existing to leave them")
    return plans, []


def enhance_file(enhancer: Enhancer, src: Path, dst: Path, *, quality: int = 95, max_pixels: int = DEFAULT_MAX_PIXELS,
                 progress: bool = False, on_progress: Callable[[float], None] | None = None,
                 outscale: float | None = None, bands: BandChoice = None) -> float:
    """Enhance one file into `dst` with the same format, bit depth, alpha and metadata; returns its megapixels.
    outscale: the output is then resized (Lanczos) to this factor of the input's size. GeoTIFFs and DICOMs
    go through infer/rasters.py, `bands` saying which raster bands the model sees."""
    kind = raster_kind(src)
    if kind is not None:
        if outscale is not None and outscale != enhancer.scale:
            raise UserError(f"--outscale: {src} is a {'DICOM' if kind == 'dicom' else 'GeoTIFF'}, enhanced at the "
                            f"model's own scale (x{enhancer.scale}) only; leave --outscale out")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"{dst.parent}: cannot create the output folder ({err.strerror or err})")
        return enhance_raster(enhancer, src, dst, kind=kind, bands=bands, model=enhancer.name, progress=progress,
                              max_pixels=max_pixels)
    if bands is not None:
        raise UserError(f"--bands: {src} is a photo, not a GeoTIFF; --bands chooses the bands of rasters")
    image = read_image(src, max_pixels=max_pixels)
    height, width = image.pixels.shape[:2]
    factor = enhancer.scale if outscale is None or outscale == enhancer.scale else outscale
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    alpha = image.alpha
    if alpha is not None:  # resized once, straight to the output's size
        alpha = enhancer.upscale_alpha(alpha) if factor == enhancer.scale else \
            np.clip(resize(alpha[..., None], size, Image.Resampling.LANCZOS)[..., 0], 0, 1)
    dpi = tuple(d * factor for d in image.dpi) if image.dpi else None  # same print size, more pixels
    pixels, bit_depth, icc, exif = image.pixels, image.bit_depth, image.icc_profile, image.exif
    del image  # the input's pixels are not needed past enhance_pixels; large images need that memory back
    out = enhancer.enhance_pixels(pixels, progress=progress, on_progress=on_progress)
    del pixels
    if factor != enhancer.scale:
        out = resize(out, size, Image.Resampling.LANCZOS)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{dst.parent}: cannot create the output folder ({err.strerror or err})")
    write_image(dst, out, alpha=alpha, bit_depth=bit_depth, quality=quality, icc_profile=icc, exif=exif, dpi=dpi)
    return height * width / 1e6


def enhance_files(enhancer: Enhancer, inputs: list[Path], out_dir: Path, *, suffix: str = "",
                  overwrite: bool = False, skip_existing: bool = False, recursive: bool = False,
                  quality: int = 95, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = True,
                  ext: str | None = None, outscale: float | None = None, bands: BandChoice = None,
                  rank: distributed.Rank = distributed.Rank()) -> BatchReport:
    """Enhance files, folders and glob patterns into out_dir, keeping names and formats (or writing the
    format `ext`), optionally resized to `outscale` times the input. Inputs are never overwritten. A file
    that fails is recorded with its reason and the rest go on.

    In a torchrun job (`rank` of several processes) every process plans the whole job, then takes every
    world_size-th file from its rank on: a deterministic share, each output written by one process only.
    """
    if overwrite and skip_existing:
        raise UserError("--overwrite and --skip-existing contradict each other; pass one")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"-o {out_dir}: is a file; the output must be a folder")
    files = collect_inputs(inputs, recursive=recursive, exclude=out_dir)
    plans, skipped = plan_outputs(files, out_dir, suffix=suffix, overwrite=overwrite, skip_existing=skip_existing,
                                  ext=ext)
    # No process writes before all have planned, so all saw the same existing outputs and share one list.
    distributed.barrier()
    plans, skipped = plans[rank.rank::rank.world_size], skipped[rank.rank::rank.world_size]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"-o {out_dir}: cannot create the output folder ({err.strerror or err})")
    for src, dst in plans:
        if ext is None and src.suffix.lower() != dst.suffix.lower():
            warnings.warn(f"{src}: written as PNG ({dst}): {src.suffix.lstrip('.').upper()}'s palette of 256 "
                          "colours would undo the restoration")
    report = BatchReport(skipped=skipped)
    start = time.perf_counter()
    bar = tqdm(plans, disable=not progress, unit="image")
    for src, dst in bar:
        bar.set_postfix_str(src.name, refresh=False)
        try:
            report.megapixels += enhance_file(enhancer, src, dst, quality=quality, max_pixels=max_pixels,
                                              progress=progress, outscale=outscale, bands=bands)
            report.written.append(dst)
        except (UserError, MemoryError) as err:
            reason = (str(err) or type(err).__name__).removeprefix(f"{src}: ")
            report.failed.append((src, reason))  # listed once, in the summary
    report.seconds = time.perf_counter() - start
    return report
