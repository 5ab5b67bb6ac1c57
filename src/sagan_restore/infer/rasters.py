"""Enhancing rasters: GeoTIFFs streamed window by window, DICOMs frame by frame, bands chosen explicitly.

Which bands a model sees (`plan_bands`): a raster with as many bands as the model has channels is
enhanced whole; a one-band raster goes through a colour model as three equal channels, as grey photos
do. Anything else needs `--bands`: band numbers (1-based, as GDAL counts) in the model's channel order,
e.g. `--bands 3,2,1` feeds red, green, blue to an RGB model from a raster stored blue, green, red, NIR;
or, with a 1-channel model, the bands to enhance one by one (`--bands all` for every band). The output
holds the bands enhanced, in that order. There is no guess: a mismatch is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sagan_restore.config import ValueRange
from sagan_restore.errors import UserError
from sagan_restore.formats.raster import (RasterKind, default_value_range, denormalize, fill_nodata, for_bands,
                                          mask_nodata, normalize, to_samples)
from sagan_restore.infer.tiling import (RunBatch, TileSettings, shrinking, tiled_apply_shrinking,
                                        tiled_apply_strips)

BandChoice = tuple[int, ...] | Literal["all"] | None  # --bands 3,2,1, --bands all, or not given


@dataclass(frozen=True)
class BandPlan:
    indexes: tuple[int, ...]  # 1-based bands read, in the order the model sees and the output holds them
    per_band: bool = False  # a 1-channel model run on each band on its own
    replicate: bool = False  # one band into a colour model as equal channels, its outputs averaged back


def plan_bands(path: Path, count: int, model_channels: int, bands: BandChoice) -> BandPlan:
    if bands is None:
        if count == model_channels:
            return BandPlan(tuple(range(1, count + 1)))
        if count == 1:
            return BandPlan((1,), replicate=True)
        how = ("--bands all to enhance every band on its own with this 1-channel model, or --bands N for one"
               if model_channels == 1 else
               f"--bands with {model_channels} band numbers in the model's channel order (e.g. --bands 3,2,1 "
               "for red, green, blue from a raster stored blue, green, red, NIR), or a 1-channel model with "
               "--bands all")
        raise UserError(f"{path}: {count} bands, and the model takes {model_channels}; say which to use: {how}")
    indexes = tuple(range(1, count + 1)) if bands == "all" else bands
    outside = [b for b in indexes if not 1 <= b <= count]
    if outside:
        raise UserError(f"--bands {','.join(map(str, indexes))}: {path} has bands 1..{count}, not "
                        f"{', '.join(map(str, outside))}")
    if model_channels == 1:
        return BandPlan(indexes, per_band=len(indexes) > 1)
    if len(indexes) != model_channels:
        raise UserError(f"--bands {','.join(map(str, indexes))}: the model takes {model_channels} bands, not "
                        f"{len(indexes)}; list {model_channels}, or use a 1-channel model to go band by band")
    return BandPlan(indexes)


def band_runner(run: RunBatch, plan: BandPlan) -> RunBatch:
    """`run` adapted so the tiler can pass every planned band at once: (B, bands, h, w) -> (B, bands, sh, sw)."""
    if plan.per_band:
        return lambda tiles: np.concatenate([run(np.ascontiguousarray(tiles[:, b:b + 1]))
                                             for b in range(tiles.shape[1])], axis=1)
    if plan.replicate:
        return lambda tiles: run(np.repeat(tiles, 3, axis=1)).mean(axis=1, keepdims=True)
    return run


def model_value_range(info: dict, *, bands: int, default: ValueRange, model: str) -> ValueRange:
    """The range the model was trained with (its metadata), else the file type's default."""
    stored = info.get("value_range")
    if stored is None:
        return default
    return for_bands(ValueRange(**stored), bands, model=model)


def derivation(enhancer, model: str) -> str:
    what = "denoised" if enhancer.scale == 1 else f"upscaled x{enhancer.scale}"
    return f"{what} by sagan-restore {version('sagan-restore')} with model {Path(model).name}"


def enhance_raster(enhancer, src: Path, dst: Path, *, kind: RasterKind, bands: BandChoice, model: str,
                   progress: bool, max_pixels: int) -> float:
    """Enhance a GeoTIFF or DICOM into `dst` (same format and metadata); returns its megapixels."""
    if dst.suffix.lower() != src.suffix.lower():
        raise UserError(f"{src}: written as {dst.suffix} it would lose its {'tags' if kind == 'dicom' else 'georeferencing'}; "
                        "leave --ext out for GeoTIFF and DICOM inputs")
    if kind == "dicom":
        return enhance_dicom(enhancer, src, dst, bands=bands, model=model, progress=progress, max_pixels=max_pixels)
    return enhance_geotiff(enhancer, src, dst, bands=bands, model=model, progress=progress)


@torch.inference_mode()
def enhance_geotiff(enhancer, src: Path, dst: Path, *, bands: BandChoice, model: str, progress: bool) -> float:
    """Window by window through `tiled_apply_strips`: memory holds one strip of a column panel of tiles,
    never the raster (README, "Rasters larger than memory", gives the bound). --max-pixels does not apply:
    nothing is held whole. The GPU running out of memory starts the file again with half the tile."""
    from sagan_restore.formats import geotiff

    cfg, scale = enhancer.model.cfg, enhancer.scale
    with geotiff.open_raster(src) as reader:
        plan = plan_bands(src, reader.count, cfg.in_channels, bands)
        value_range = model_value_range(enhancer.info, bands=len(plan.indexes), model=model,
                                        default=default_value_range(reader.dtype, len(plan.indexes)))
        last: dict = {}  # the valid mask of the window read last, for the output written after it

        def read_window(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            values, valid = reader.read_window(y0, y1, x0, x1, plan.indexes)
            last.update(y0=y0, x0=x0, valid=valid)
            return fill_nodata(normalize(values, value_range), valid)

        def valid_window(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            # The tiler writes only pixels of the strip it read last, so their mask is at hand.
            valid = last["valid"]
            rows, cols = slice(y0 - last["y0"], y1 - last["y0"]), slice(x0 - last["x0"], x1 - last["x0"])
            assert 0 <= rows.start and rows.stop <= valid.shape[0] and 0 <= cols.start and cols.stop <= valid.shape[1]
            return valid[rows, cols]

        def write_window(writer, y0: int, x0: int, pixels: np.ndarray) -> None:
            samples = to_samples(denormalize(pixels, value_range), reader.dtype)
            if reader.has_nodata:
                (h, w), first_row, first_col = pixels.shape[:2], y0 // scale, x0 // scale
                valid = valid_window(first_row, (y0 + h - 1) // scale + 1, first_col, (x0 + w - 1) // scale + 1)
                valid = np.repeat(np.repeat(valid, scale, axis=0), scale, axis=1)
                top, left = y0 - first_row * scale, x0 - first_col * scale
                samples = mask_nodata(samples, valid[top: top + h, left: left + w], reader.nodata)
            writer.write_window(y0, x0, samples)

        def attempt(s: TileSettings) -> None:
            # A fresh output each time: a failed attempt's temporary file is removed by create_like.
            with geotiff.create_like(dst, reader, scale=scale, indexes=plan.indexes) as writer:
                tiled_apply_strips(read_window, lambda y0, x0, pixels: write_window(writer, y0, x0, pixels),
                                   band_runner(enhancer.run_batch, plan), height=reader.height,
                                   width=reader.width, tile=s.tile, overlap=s.overlap,
                                   multiple=enhancer.model.multiple, scale=scale, out_channels=len(plan.indexes),
                                   batch=s.batch, progress=progress)

        _, enhancer.settings = shrinking(attempt, enhancer.settings, device=enhancer.device, height=reader.height,
                                         width=reader.width, multiple=enhancer.model.multiple)
        return reader.height * reader.width / 1e6


@torch.inference_mode()
def enhance_dicom(enhancer, src: Path, dst: Path, *, bands: BandChoice, model: str, progress: bool,
                  max_pixels: int) -> float:
    from sagan_restore.formats import dicom

    if bands is not None:
        raise UserError(f"--bands: {src} is a grey DICOM with one band; leave --bands out")
    image = dicom.read_dicom(src, max_pixels=max_pixels)
    cfg = enhancer.model.cfg
    plan = plan_bands(src, 1, cfg.in_channels, None)
    default = ValueRange((image.low,), (image.high,), "the modality range of the stored bits")
    value_range = model_value_range(enhancer.info, bands=1, model=model, default=default)
    run = band_runner(enhancer.run_batch, plan)
    outputs = []
    for frame in image.frames:
        pixels = normalize(frame[..., None], value_range)
        out, enhancer.settings = tiled_apply_shrinking(
            pixels, run, enhancer.settings, device=enhancer.device, multiple=enhancer.model.multiple,
            scale=enhancer.scale, out_channels=1, progress=progress)
        outputs.append(denormalize(out, value_range)[..., 0])
    dicom.write_dicom(dst, image, np.stack(outputs), scale=enhancer.scale, derivation=derivation(enhancer, model))
    return image.frames.size / 1e6
