"""What GeoTIFFs and DICOMs share: which files are rasters, value ranges per band, nodata.

A raster's samples are measurements in the file's own units (digital numbers, reflectance, Hounsfield
units), held as float32 (H, W, bands) arrays beside a boolean `valid` array of the same shape (False where
the file says nodata). A model sees them through a `ValueRange`: `low` of each band maps to 0, `high` to 1,
and nothing is clipped on the way in, so values beyond the range reach the network as they are.

Value ranges per sample type, when the model stores none (photo models, the shipped ones):
- uint8: 0..255, uint16: 0..65535, int16: -32768..32767 (the type's full range, as photos are read);
- float32 / float64: 0..1 (the values as they are);
- DICOM: the modality values (after rescale slope/intercept) of the stored bits' full range.
A model trained on rasters stores the range it measured on its training data (`measure_value_range`:
per-band 0.5th and 99.5th percentiles) and `enhance` applies that instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from sagan_restore.config import ValueRange
from sagan_restore.errors import UserError
from sagan_restore.io import DECODER_ERRORS, DICOM_SUFFIXES, TIFF_SUFFIXES

RasterKind = Literal["geotiff", "dicom"]
# TIFF tags that make a TIFF a GeoTIFF (GeoTIFF 1.1 spec) or give it a nodata value (GDAL's private tag).
GEO_TAGS = (33550, 33922, 34264, 34735, 42113)
SAMPLE_TYPES = ("uint8", "uint16", "int16", "float32", "float64")
PERCENTILES = (0.5, 99.5)  # robust to a few hot pixels and clouds, unlike min and max
MEASURE_SAMPLES = 1_000_000  # pixels per file looked at when measuring a range: every k-th one


def raster_kind(path: Path) -> RasterKind | None:
    """"dicom" for .dcm/.dicom files; "geotiff" for a TIFF the photo reader would lose or refuse
    (georeferenced, with nodata, more than 4 bands, or int16 samples); None for photos."""
    suffix = Path(path).suffix.lower()
    if suffix in DICOM_SUFFIXES:
        return "dicom"
    if suffix in TIFF_SUFFIXES and _tiff_is_raster(Path(path)):
        return "geotiff"
    return None


def _tiff_is_raster(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return (any(code in page.tags for code in GEO_TAGS) or page.samplesperpixel > 4
                    or np.dtype(page.dtype) == np.int16)
    except (*DECODER_ERRORS, tifffile.TiffFileError):
        return False  # the photo reader reports what is wrong with it


def check_sample_type(path: Path, dtype: np.dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.name not in SAMPLE_TYPES:
        raise UserError(f"{path}: {dtype.name} samples are not supported; use one of {', '.join(SAMPLE_TYPES)}")
    return dtype


def full_range(dtype: np.dtype) -> tuple[float, float]:
    """What 0..1 means for a sample type when nothing else says: an integer type's full range, floats as they are."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def default_value_range(dtype: np.dtype, bands: int) -> ValueRange:
    low, high = full_range(dtype)
    return ValueRange((low,) * bands, (high,) * bands, f"the full range of {np.dtype(dtype).name}")


def for_bands(value_range: ValueRange, bands: int, *, model: str) -> ValueRange:
    """A model's range for `bands` input bands: its own, or its one band's range for each (a grey model
    enhancing band by band)."""
    if value_range.bands == bands:
        return value_range
    if value_range.bands == 1:
        return ValueRange(value_range.low * bands, value_range.high * bands, value_range.measured)
    raise UserError(f"--model {model}: its value range has {value_range.bands} bands, the input {bands}; "
                    "select the bands it was trained on with --bands")


def normalize(values: np.ndarray, value_range: ValueRange) -> np.ndarray:
    """(H, W, bands) raw values -> what the model sees: low -> 0, high -> 1, unclipped."""
    low = np.asarray(value_range.low, dtype=np.float32)
    span = np.asarray(value_range.high, dtype=np.float32) - low
    return (values - low) / span


def denormalize(pixels: np.ndarray, value_range: ValueRange) -> np.ndarray:
    low = np.asarray(value_range.low, dtype=np.float32)
    span = np.asarray(value_range.high, dtype=np.float32) - low
    return pixels * span + low


def fill_nodata(pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Nodata pixels set, in place, to the mean of the band's valid pixels around them (in this array),
    so the network sees neither the nodata value (often 0 or -9999, a false edge) nor NaN. Their outputs
    are masked back to nodata afterwards."""
    for b in range(pixels.shape[2]):
        hole = ~valid[..., b]
        if hole.any():
            band = pixels[..., b]
            band[hole] = band[~hole].mean() if not hole.all() else 0.0
    return pixels


def to_samples(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Raw float values -> the sample type: integers rounded and clipped to the type's range (never
    wrapped), floats as they are."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui":
        low, high = full_range(dtype)
        return np.clip(np.round(values), low, high).astype(dtype)
    return values.astype(dtype)


def mask_nodata(samples: np.ndarray, valid: np.ndarray, nodata: float | None) -> np.ndarray:
    """Nodata pixels set back to the nodata value, in place; a valid pixel the network happened to bring to
    that very value is moved one step off it, so it does not become nodata."""
    if nodata is None:
        return samples
    if np.isnan(nodata):
        samples[~valid] = np.nan
        return samples
    nodata = samples.dtype.type(nodata)
    collides = valid & (samples == nodata)
    if collides.any():
        if samples.dtype.kind in "ui":
            step = 1 if nodata < np.iinfo(samples.dtype).max else -1
            samples[collides] = nodata + samples.dtype.type(step) if step > 0 else nodata - samples.dtype.type(1)
        else:
            samples[collides] = np.nextafter(nodata, samples.dtype.type(np.inf))
    samples[~valid] = nodata
    return samples


def sample_values(values: np.ndarray, valid: np.ndarray, *, limit: int = MEASURE_SAMPLES) -> list[np.ndarray]:
    """Up to `limit` valid values of each band (every k-th pixel), for measuring a range."""
    step = max(1, values.shape[0] * values.shape[1] // limit)
    flat, ok = values.reshape(-1, values.shape[2])[::step], valid.reshape(-1, values.shape[2])[::step]
    return [flat[ok[:, b], b] for b in range(values.shape[2])]


def measure_value_range(samples: list[list[np.ndarray]], *, files: int) -> ValueRange:
    """Per-band PERCENTILES of the values sampled from `files` training rasters (one list of bands each)."""
    bands = len(samples[0])
    low, high = [], []
    for b in range(bands):
        values = np.concatenate([s[b] for s in samples])
        lo, hi = (np.percentile(values, PERCENTILES) if values.size else (0.0, 1.0))
        if not hi > lo:  # a constant band: any unit span keeps it finite
            hi = lo + 1.0
        low.append(float(lo))
        high.append(float(hi))
    return ValueRange(tuple(low), tuple(high),
                      f"{PERCENTILES[0]:g}th/{PERCENTILES[1]:g}th percentiles of {files} training raster(s)")


def raster_size(path: Path, kind: RasterKind) -> tuple[int, int]:
    """(height, width) from the header (a DICOM's frame size)."""
    if kind == "dicom":
        from sagan_restore.formats import dicom

        return dicom.size(path)
    from sagan_restore.formats import geotiff

    return geotiff.size(path)


def read_raster(path: Path, kind: RasterKind, *, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """A whole raster, as a training image: (values (H, W, bands) float32, valid (H, W, bands))."""
    if kind == "dicom":
        from sagan_restore.formats import dicom

        image = dicom.read_dicom(path, max_pixels=max_pixels)
        if image.multi_frame:
            raise UserError(f"{path}: a multi-frame DICOM ({image.frames.shape[0]} frames); training reads "
                            "single-frame files, so save its frames as files of their own")
        values = image.frames[0][..., None]
        return values, np.ones(values.shape, dtype=bool)
    from sagan_restore.formats import geotiff

    return geotiff.read_whole(path, max_pixels=max_pixels)

