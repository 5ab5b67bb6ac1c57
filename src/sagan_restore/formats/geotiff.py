"""GeoTIFF through rasterio (GDAL): georeferencing, nodata and band metadata kept, any size streamed.

What an output keeps from its input: the CRS; the geotransform (or ground control points), scaled for
super-resolution so the output covers the same ground at a finer pixel size; the nodata value; band
descriptions, colour interpretation, units, scales and offsets; dataset and band tags; the sample type.
It is written tiled (256 x 256) and DEFLATE-compressed, as a BigTIFF when it may pass 4 GB.

Nothing here holds a whole raster: `RasterReader.read_window` reads a window and `RasterWriter` writes
one, and GDAL's block cache is capped (GDAL_CACHEMAX), so memory stays bounded by the windows the caller
asks for, whatever the raster's size.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from sagan_restore.errors import UserError, first_line
from sagan_restore.formats.raster import check_sample_type
from sagan_restore.io import atomic_path

# 64 MB of GDAL block cache (its default is 5% of the machine's memory, which would dominate the bound).
# PAM off: GDAL would otherwise put what a TIFF cannot hold in a .aux.xml sidecar of the temporary file.
GDAL_OPTIONS = {"GDAL_CACHEMAX": 64, "GDAL_PAM_ENABLED": "NO"}
BLOCK = 256  # output tile size: GDAL's and most viewers' usual block


def _rasterio(path: Path):
    try:
        import rasterio
    except ModuleNotFoundError:
        raise UserError(f"{path}: a GeoTIFF (georeferenced, nodata or many bands); reading it without losing "
                        "that needs the geo extra: pip install 'sagan-restore[geo]'") from None
    return rasterio


class RasterReader:
    """An open GeoTIFF read window by window."""

    def __init__(self, dataset, path: Path):
        self.dataset = dataset
        self.path = path
        self.dtype = check_sample_type(path, dataset.dtypes[0])
        if len(set(dataset.dtypes)) > 1:
            raise UserError(f"{path}: bands of different sample types ({', '.join(sorted(set(dataset.dtypes)))}); "
                            "save them with one type")
        self.nodata = dataset.nodata

    @property
    def height(self) -> int:
        return self.dataset.height

    @property
    def width(self) -> int:
        return self.dataset.width

    @property
    def count(self) -> int:
        return self.dataset.count

    def read_window(self, y0: int, y1: int, x0: int, x1: int,
                    indexes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """Rows y0..y1-1, columns x0..x1-1 of the bands `indexes` (1-based): (values (h, w, n) float32, valid
        (h, w, n) bool). Invalid: the nodata value, and NaN in float rasters (with or without a declared nodata)."""
        from rasterio.windows import Window

        with _decoding(self.path):
            raw = self.dataset.read(list(indexes), window=Window(x0, y0, x1 - x0, y1 - y0))  # (n, h, w)
        raw = np.moveaxis(raw, 0, -1)
        valid = np.ones(raw.shape, dtype=bool) if self.nodata is None or np.isnan(self.nodata) else raw != self.nodata
        values = raw.astype(np.float32)
        if self.dtype.kind == "f":
            valid &= np.isfinite(values)
        return values, valid

    @property
    def has_nodata(self) -> bool:
        return self.nodata is not None or self.dtype.kind == "f"


@contextmanager
def _decoding(path: Path):
    from rasterio.errors import RasterioError

    try:
        yield
    except RasterioError as err:
        raise UserError(f"{path}: not a readable GeoTIFF ({first_line(err)}); is the file complete?") from None


@contextmanager
def open_raster(path: Path) -> Iterator[RasterReader]:
    rasterio = _rasterio(path)
    from rasterio.errors import NotGeoreferencedWarning

    with rasterio.Env(**GDAL_OPTIONS), warnings.catch_warnings():
        # A TIFF of many bands or int16 samples need not be georeferenced; it is a raster all the same.
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with _decoding(path):
            dataset = rasterio.open(path)
        with dataset:
            yield RasterReader(dataset, Path(path))


def read_whole(path: Path, *, max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """(values (H, W, bands) float32, valid) of a whole raster, for training images (which must fit)."""
    with open_raster(path) as reader:
        if reader.height * reader.width > max_pixels:
            raise UserError(f"{path}: {reader.width}x{reader.height} is over --max-pixels {max_pixels:g} for a "
                            "training image; cut it into smaller rasters (e.g. gdal_retile.py)")
        return reader.read_window(0, reader.height, 0, reader.width, tuple(range(1, reader.count + 1)))


def size(path: Path) -> tuple[int, int]:
    """(height, width) from the header."""
    with open_raster(path) as reader:
        return reader.height, reader.width


class RasterWriter:
    """An output GeoTIFF being written window by window."""

    def __init__(self, dataset, path: Path):
        self.dataset = dataset
        self.path = path

    def write_window(self, y0: int, x0: int, samples: np.ndarray) -> None:
        """(h, w, bands) samples of the output's type at output rows y0..y0+h-1, columns x0..x0+w-1."""
        from rasterio.errors import RasterioError
        from rasterio.windows import Window

        try:
            self.dataset.write(np.moveaxis(samples, -1, 0), window=Window(x0, y0, samples.shape[1], samples.shape[0]))
        except RasterioError as err:  # GDAL reports a full disk this way, not as an OSError
            raise UserError(f"{self.path}: could not write it ({first_line(err)}); any previous version is "
                            "unchanged") from None


@contextmanager
def create_like(path: Path, source: RasterReader, *, scale: int, indexes: tuple[int, ...]) -> Iterator[RasterWriter]:
    """A new GeoTIFF at `path` for the bands `indexes` of `source` enhanced `scale` times: written beside
    `path` and renamed over it only when complete, so a failure leaves no partial output."""
    rasterio = _rasterio(path)
    src = source.dataset
    profile = {
        "driver": "GTiff", "width": src.width * scale, "height": src.height * scale, "count": len(indexes),
        "dtype": source.dtype.name, "crs": src.crs, "transform": _scaled_transform(src.transform, scale),
        "nodata": src.nodata, "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        # Horizontal differencing (2) for integers, floating-point prediction (3) for floats: both shrink
        # smooth rasters' files a lot at no loss.
        "predictor": 3 if source.dtype.kind == "f" else 2, "bigtiff": "IF_SAFER",
        # Band-interleaved blocks keep a band's values together (better compression) and let a band be
        # read without the others.
        "interleave": "band" if len(indexes) > 1 else "pixel",
    }
    with ExitStack() as stack:
        stack.enter_context(rasterio.Env(**GDAL_OPTIONS))
        tmp = stack.enter_context(atomic_path(path))
        with rasterio.open(tmp, "w", **profile) as dst:
            _copy_metadata(src, dst, indexes=indexes, scale=scale)
            yield RasterWriter(dst, Path(path))


def _scaled_transform(transform, scale: int):
    """The same origin and ground extent with `scale` times as many pixels: each pixel 1/scale the size."""
    from rasterio.transform import Affine

    a, b, c, d, e, f = transform[:6]
    return Affine(a / scale, b / scale, c, d / scale, e / scale, f)  # transform x scale(1/s), written out


def _copy_metadata(src, dst, *, indexes: tuple[int, ...], scale: int) -> None:
    from rasterio.control import GroundControlPoint

    gcps, gcp_crs = src.gcps
    if gcps and src.transform.is_identity:  # georeferenced by control points instead of a transform
        dst.gcps = ([GroundControlPoint(row=g.row * scale, col=g.col * scale, x=g.x, y=g.y, z=g.z, id=g.id,
                                        info=g.info) for g in gcps], gcp_crs)
    if src.rpcs is not None:  # rational polynomial coefficients are in pixels of the input's size
        if scale == 1:
            dst.rpcs = src.rpcs
        else:
            warnings.warn(f"{src.name}: its RPC georeferencing is not carried to the x{scale} output (it would "
                          "need refitting); the CRS, transform and control points are")
    dst.update_tags(**src.tags())
    dst.colorinterp = [src.colorinterp[i - 1] for i in indexes]
    for out, i in enumerate(indexes, start=1):
        if src.descriptions[i - 1]:
            dst.set_band_description(out, src.descriptions[i - 1])
        if src.units[i - 1]:
            dst.set_band_unit(out, src.units[i - 1])
        dst.update_tags(out, **src.tags(i))
    dst.scales = [src.scales[i - 1] for i in indexes]
    dst.offsets = [src.offsets[i - 1] for i in indexes]
