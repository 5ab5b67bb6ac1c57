"""Reading and writing images: the one place that knows about file formats, bit depth, alpha and ranges.

Inside the package an image is a float32 array of shape (H, W, C) with C = 1 (grey) or 3 (RGB) and values
in [0, 1]; alpha travels beside it as its own (H, W) array. Every conversion between what a file holds and
that form happens here, by name: grey is never silently made RGB, 16 bits are never cut to 8 and alpha is
never dropped without the caller asking for it.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import numpy as np
import png
from PIL import Image, ImageOps, UnidentifiedImageError

from sagan_restore.errors import UserError, first_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")
TIFF_SUFFIXES = (".tif", ".tiff")
DEFAULT_MAX_PIXELS = 200_000_000  # larger files are refused as possible decompression bombs
JPEG_BLOCK = 8  # pixels: JPEG codes each 8x8 block of luma on its own (chroma too, after 2x subsampling)
# zlib level of 8-bit PNGs. Pillow's default, 6, took 0.43 s for a 1 MP photo here, a tenth of a whole
# `enhance`; 3 took 0.12 s for a file 8% larger (OpenCV, and so Real-ESRGAN, write at 1: 0.07 s, +13%).
PNG_COMPRESS_LEVEL = 3
# What Pillow, tifffile and pypng raise on damaged or foreign bytes. Their parsers index into header
# fields the file itself declares, so a corrupt file can also surface as IndexError or TypeError
# (tests/test_fuzz.py finds these). Caught only around the decoders' own calls (`decoding`), so that the
# same errors in our array code show as the bugs they are.
DECODER_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, png.Error, zlib.error,
                  struct.error, IndexError, KeyError, TypeError, ArithmeticError)
# Read, but written as PNG: GIF's 256-colour palette would undo what the network restored.
READ_ONLY_SUFFIXES = (".gif",)
# DICOM files: read and written by sagan_restore.formats.dicom (with the medical extra), not here.
DICOM_SUFFIXES = (".dcm", ".dicom")
READ_SUFFIXES = IMAGE_SUFFIXES + READ_ONLY_SUFFIXES + DICOM_SUFFIXES  # what enhance picks up in folders and globs


class ImageTooLarge(UserError):
    """More pixels than the caller allows: a possible decompression bomb, or more than a server takes."""


@dataclass
class LoadedImage:
    pixels: np.ndarray  # (H, W, C) float32 in [0, 1], C = 1 or 3
    alpha: np.ndarray | None  # (H, W) float32 in [0, 1], or None
    bit_depth: int  # 8 or 16: what the file stored, and what an output keeps
    format: str  # "PNG", "JPEG", "TIFF", ...
    icc_profile: bytes | None = None
    exif: bytes | None = None  # EXIF block with the orientation already applied to the pixels (tag removed)
    dpi: tuple[float, float] | None = None

    @property
    def is_grey(self) -> bool:
        return self.pixels.shape[2] == 1


def list_images(folder: Path) -> list[Path]:
    """Image files (DICOMs included) directly inside `folder`, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + DICOM_SUFFIXES)


def read_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected an image file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty (0 bytes)")
    if path.suffix.lower() in DICOM_SUFFIXES:
        raise UserError(f"{path}: a DICOM file; `enhance` and `train` read DICOMs (keeping their tags), other "
                        "commands read photos only")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path, max_pixels)
    return _read_with_pillow(path, max_pixels)


@contextmanager
def decoding(path: Path):
    """Turn what a decoder raises on a damaged or foreign file into one UserError naming the file."""
    try:
        yield
    except UserError:
        raise
    except DECODER_ERRORS as err:
        raise UserError(f"{path}: not a readable image ({first_line(err)}); "
                        "is the file complete and really an image?") from None


def _check_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"{path}: {width}x{height} is {width * height / 1e6:.3g} megapixels, over the limit of "
            f"{max_pixels / 1e6:.3g}; raise --max-pixels if the file is trusted"
        )


def _read_with_pillow(path: Path, max_pixels: int) -> LoadedImage:
    with warnings.catch_warnings():
        # Pillow's own bomb check warns or raises at its global limit; ours is explicit and per call.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved_limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with decoding(path), Image.open(path) as im:
                _check_size(path, im.width, im.height, max_pixels)
                if im.format == "PNG" and _png_is_16bit_colour(path):
                    return _read_png16_colour(path, im)
                fmt = im.format or path.suffix.lstrip(".").upper()
                frames = getattr(im, "n_frames", 1)
                if frames > 1:
                    warnings.warn(f"{path}: an animated {fmt} of {frames} frames; only the first is used")
                icc = im.info.get("icc_profile")
                im.load()
                # Pillow removes the orientation tag from the EXIF of the image it turns upright.
                im = ImageOps.exif_transpose(im)
        finally:
            Image.MAX_IMAGE_PIXELS = saved_limit
    pixels, alpha, bit_depth = _pillow_to_arrays(str(path), im)
    return LoadedImage(pixels, alpha, bit_depth, fmt, icc, _exif_bytes(im.getexif()), _dpi(im))


def _exif_bytes(exif: Image.Exif) -> bytes | None:
    return exif.tobytes() if len(exif) else None


def _dpi(im: Image.Image) -> tuple[float, float] | None:
    dpi = im.info.get("dpi")
    return (float(dpi[0]), float(dpi[1])) if dpi else None


def orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn (H, W, ...) pixels upright as EXIF orientation 1..8 says, for decoders that ignore the tag.

    Same transforms as Pillow's ImageOps.exif_transpose.
    """
    if orientation in (5, 6, 7, 8):
        arr = np.swapaxes(arr, 0, 1)  # transpose first: 5 is a plain transpose
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    return np.ascontiguousarray(arr)


def _pillow_to_arrays(name: str, im: Image.Image) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(pixels, alpha, bit depth) of a Pillow image; `name` says which image in error messages."""
    mode = im.mode
    if mode == "P":
        # Palette images become RGB, or RGBA when the palette carries transparency.
        im = im.convert("RGBA" if "transparency" in im.info or im.palette.mode == "RGBA" else "RGB")
        mode = im.mode
    if mode == "1":
        im, mode = im.convert("L"), "L"
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im, mode = im.convert("RGB"), "RGB"
    if mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im).astype(np.float32)
        if mode == "I" and arr.max(initial=0) > 65535:
            raise UserError(f"{name}: 32-bit integer images are not supported; save it as 16-bit")
        return (arr / 65535.0)[..., None], None, 16
    if mode == "F":
        arr = _finite(name, np.asarray(im, dtype=np.float32))
        return np.clip(arr, 0, 1)[..., None], None, 16
    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im, dtype=np.float32) / 255.0
        if arr.ndim == 2:
            arr = arr[..., None]
        if mode in ("LA", "RGBA"):
            return np.ascontiguousarray(arr[..., :-1]), np.ascontiguousarray(arr[..., -1]), 8
        return arr, None, 8
    raise UserError(f"{name}: image mode {mode} is not supported; convert it to RGB, grey or RGBA")


def _finite(name: str | Path, arr: np.ndarray) -> np.ndarray:
    """Float files can hold NaN or infinity, which would poison every loss and output they touch."""
    if not np.isfinite(arr).all():
        raise UserError(f"{name}: the image holds NaN or infinite values; replace them before using it")
    return arr


def _png_is_16bit_colour(path: Path) -> bool:
    """Pillow reads 16-bit RGB, RGBA and grey+alpha PNGs as 8-bit; the IHDR chunk says whether the file is one."""
    with open(path, "rb") as f:
        header = f.read(26)
    bit_depth, colour_type = header[24], header[25]
    return bit_depth == 16 and colour_type in (2, 4, 6)


def _read_png16_colour(path: Path, im: Image.Image) -> LoadedImage:
    """Pixels through pypng (Pillow would truncate them to 8 bits), metadata from Pillow's `im`."""
    with open(path, "rb") as f:  # pypng given a file name leaves the file for the garbage collector to close
        width, height, rows, info = png.Reader(file=f).asDirect()
        planes = info["planes"]
        rows = [np.asarray(row, dtype=np.uint16) for row in rows]  # the decoding happens here
    arr = np.vstack(rows).reshape(height, width, planes)
    exif = im.getexif()
    arr = orient(arr, exif.pop(0x0112, 1)).astype(np.float32) / 65535.0
    colour = planes - 1 if planes in (2, 4) else planes
    alpha = np.ascontiguousarray(arr[..., colour]) if planes in (2, 4) else None
    return LoadedImage(np.ascontiguousarray(arr[..., :colour]), alpha, 16, "PNG", im.info.get("icc_profile"),
                       _exif_bytes(exif), _dpi(im))


def _read_tiff(path: Path, max_pixels: int) -> LoadedImage:
    # tifffile logs each damaged tag it skips; the caller gets one UserError instead, or a good image.
    tiff_log = logging.getLogger("tifffile")
    saved_level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)
    try:
        return _decode_tiff(path, max_pixels)
    finally:
        tiff_log.setLevel(saved_level)


def _decode_tiff(path: Path, max_pixels: int) -> LoadedImage:
    import tifffile

    with decoding(path), tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        shape = tuple(int(n) for n in page.shape)  # TypeError for a damaged header, not a huge tuple product
        series = tuple(int(n) for n in tif.series[0].shape) if tif.series else shape
        planar = page.samplesperpixel > 1 and page.planarconfig == 2  # (C, H, W)
        height, width = (shape[1], shape[2]) if planar else (shape[0], shape[1])
        _check_size(path, width, height, max_pixels)
        _refuse_stack(path, series, shape)
        arr = page.asarray()
        icc = page.tags["InterColorProfile"].value if "InterColorProfile" in page.tags else None
        orientation = page.tags["Orientation"].value if "Orientation" in page.tags else 1
    if arr.ndim not in (2, 3) or (planar and arr.ndim != 3):
        raise UserError(f"{path}: a TIFF page of shape {arr.shape}, not one grey, RGB or RGBA image")
    if planar:
        arr = np.moveaxis(arr, 0, -1)
    arr = orient(arr, int(orientation))
    if arr.dtype == np.uint8:
        bit_depth, scaled = 8, arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        bit_depth, scaled = 16, arr.astype(np.float32) / 65535.0
    elif arr.dtype in (np.float32, np.float64):
        bit_depth, scaled = 16, np.clip(_finite(path, arr.astype(np.float32)), 0, 1)
    else:
        kind = {"i": "signed integer", "u": "unsigned integer", "f": "float", "c": "complex"}.get(arr.dtype.kind, "")
        raise UserError(f"{path}: TIFF samples are {arr.dtype.itemsize * 8}-bit {kind} ({arr.dtype}), which is "
                        "not supported; use 8- or 16-bit unsigned integers or float (0..1)")
    icc = bytes(icc) if icc is not None else None
    if scaled.ndim == 2:
        return LoadedImage(scaled[..., None], None, bit_depth, "TIFF", icc)
    channels = scaled.shape[2]
    if channels == 1:
        return LoadedImage(scaled, None, bit_depth, "TIFF", icc)
    if channels == 2:
        return LoadedImage(scaled[..., :1].copy(), scaled[..., 1].copy(), bit_depth, "TIFF", icc)
    if channels in (3, 4):
        alpha = scaled[..., 3].copy() if channels == 4 else None
        return LoadedImage(np.ascontiguousarray(scaled[..., :3]), alpha, bit_depth, "TIFF", icc)
    raise UserError(f"{path}: TIFF with {channels} channels is not supported; use grey, RGB or RGBA")


def _refuse_stack(path: Path, series: tuple[int, ...], page: tuple[int, ...]) -> None:
    """A TIFF whose pages make one array (a z-stack, a volume, or what tifffile writes for an (H, W, C)
    array with more than 4 channels: H pages of W x C) is not one image: refuse it rather than enhance a
    slice of it."""
    if len(series) > len(page):
        raise UserError(f"{path}: a stack of {series[0]} TIFF pages of {' x '.join(map(str, page))} (array shape "
                        f"{series}), not one grey, RGB or RGBA image; save each image or channel as its own file")


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Convert (H, W, 1|3) pixels to the given channel count: grey is replicated, RGB becomes BT.601 luma."""
    have = pixels.shape[2]
    if have == channels:
        return pixels
    if have == 1 and channels == 3:
        return np.repeat(pixels, 3, axis=2)
    if have == 3 and channels == 1:
        return (pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    raise ValueError(f"cannot convert {have} channels to {channels}")


def quantize(pixels: np.ndarray, bit_depth: int) -> np.ndarray:
    """Clip to [0, 1] and round to the integer type of the bit depth.

    A band of rows at a time: the float temporaries of a 50-megapixel image would take gigabytes.
    """
    top = 255 if bit_depth == 8 else 65535
    out = np.empty(pixels.shape, dtype=np.uint8 if bit_depth == 8 else np.uint16)
    band = max(1, (1 << 22) // max(1, pixels[0].size))
    for y in range(0, pixels.shape[0], band):
        out[y: y + band] = np.round(np.clip(pixels[y: y + band], 0.0, 1.0) * top)
    return out


def resize(img: np.ndarray, size: tuple[int, int], resample=Image.Resampling.BICUBIC) -> np.ndarray:
    """Resize (H, W, C) float pixels to size = (width, height), channel by channel in float precision.

    Pillow's bicubic (a = -0.5) widens its kernel when downscaling, like MATLAB's antialiased imresize
    that made the standard SR test sets.
    """
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c])).resize(size, resample), dtype=np.float32)
        for c in range(img.shape[2])
    ]
    return np.stack(channels, axis=2)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a temporary file in the same folder, fsync it, rename it over `path`, fsync the folder.

    A crash or a kill leaves either the old file or the new one, never a truncated mix; a failed write
    (a full disk) leaves the old file and no temporary one. `write` gets an open binary file: writing
    through a Python file object is what turns a full disk into an OSError (torch.save to a path reports
    it as a RuntimeError, and safetensors' save_file not at all).
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path: Path):
    """`atomic_write` for writers that want a file name (GDAL, pydicom): yields a temporary path beside
    `path` (a dot file, which enhance never picks up as an input), then fsyncs it and renames it over
    `path`; if the block raises, the temporary file is removed and `path` is untouched."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
        _fsync_folder(path.parent)  # makes the rename itself durable
    except OSError as err:
        raise UserError(f"{path}: could not write it ({err.strerror or err}); any previous version is unchanged")
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_image(
    path: Path,
    pixels: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    dpi: tuple[float, float] | None = None,
) -> None:
    """Write (H, W, 1|3) pixels in [0, 1] to `path`, format from the suffix, atomically.

    The file appears complete or not at all: it is written beside its destination and renamed.
    Formats without 16-bit support (JPEG, WebP, BMP) are written at 8 bits. The ICC profile is kept in
    PNG, JPEG, WebP and TIFF; EXIF in PNG, JPEG and WebP; the resolution (dpi) in PNG, JPEG, TIFF and BMP.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        bit_depth = 8
    data = quantize(pixels, bit_depth)
    if alpha is not None:
        data = np.concatenate([data, quantize(alpha, bit_depth)[..., None]], axis=2)
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: output folder does not exist")
    atomic_write(path, lambda f: _encode(f, suffix, data, bit_depth=bit_depth, quality=quality,
                                         icc_profile=icc_profile, exif=exif, dpi=dpi))


def _encode(f: BinaryIO, suffix: str, data: np.ndarray, *, bit_depth: int, quality: int,
            icc_profile: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None) -> None:
    """Encode `data` in the format of `suffix` into the open binary file `f`."""
    channels = data.shape[2]
    if suffix in (".tif", ".tiff"):
        import tifffile

        photometric = "minisblack" if channels in (1, 2) else "rgb"
        extrasamples = ["unassalpha"] if channels in (2, 4) else None
        resolution = {"resolution": dpi, "resolutionunit": "INCH"} if dpi else {}
        buffer = BytesIO()  # tifffile wants a named file or a BytesIO, and atomic_write's has no name
        tifffile.imwrite(buffer, data.squeeze(2) if channels == 1 else data, photometric=photometric,
                         extrasamples=extrasamples, iccprofile=icc_profile, **resolution)
        f.write(buffer.getvalue())
        return
    if suffix == ".png" and bit_depth == 16 and channels > 1:
        _write_png16_colour(f, data, icc_profile=icc_profile, exif=exif, dpi=dpi)
        return
    # Pillow picks the mode from dtype and shape: uint16 (H, W) is I;16, uint8 (H, W, 2|3|4) is LA|RGB|RGBA.
    im = Image.fromarray(np.ascontiguousarray(data.squeeze(2) if channels == 1 else data))
    options: dict = {}
    if icc_profile and suffix not in (".bmp", ".ppm", ".pgm"):
        options["icc_profile"] = icc_profile
    if exif and suffix in (".png", ".jpg", ".jpeg", ".webp"):
        options["exif"] = exif
    if dpi and suffix in (".png", ".jpg", ".jpeg", ".bmp"):
        options["dpi"] = dpi
    if suffix == ".png":
        options["compress_level"] = PNG_COMPRESS_LEVEL
    if suffix in (".jpg", ".jpeg", ".webp"):
        options["quality"] = quality
        if suffix != ".webp" and im.mode in ("LA", "RGBA"):
            im = im.convert(im.mode[:-1])  # JPEG has no alpha channel
    im.save(f, format=_pillow_format(suffix), **options)


def _write_png16_colour(f: BinaryIO, data: np.ndarray, *, icc_profile: bytes | None, exif: bytes | None,
                        dpi: tuple[float, float] | None) -> None:
    """16-bit RGB(A) and grey+alpha PNGs, which Pillow cannot write, through pypng; metadata chunks added."""
    channels = data.shape[2]
    physical = {}
    if dpi:
        physical = {"x_pixels_per_unit": round(dpi[0] / 0.0254), "y_pixels_per_unit": round(dpi[1] / 0.0254),
                    "unit_is_meter": True}
    writer = png.Writer(data.shape[1], data.shape[0], greyscale=channels == 2, alpha=channels in (2, 4),
                        bitdepth=16, **physical)
    buffer = BytesIO()
    writer.write(buffer, data.reshape(data.shape[0], -1))
    extra = []
    if icc_profile:
        extra.append((b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc_profile)))
    if exif:
        extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    first_data = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    png.write_chunks(f, chunks[:first_data] + extra + chunks[first_data:])


def _pillow_format(suffix: str) -> str:
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP",
            ".ppm": "PPM", ".pgm": "PPM"}[suffix]


@dataclass(frozen=True)
class InMemoryKind:
    """How an image was handed over in memory, so that a result goes back in the same kind."""

    pil_mode: str | None  # the PIL image's mode; None for a numpy array
    dtype: np.dtype | None = None  # the numpy array's dtype
    squeezed: bool = False  # a numpy (H, W) array rather than (H, W, C)


def from_memory(image) -> tuple[np.ndarray, np.ndarray | None, InMemoryKind]:
    """(pixels, alpha, kind) of a PIL image or a numpy array (H, W) or (H, W, 1|2|3|4) of uint8, uint16 or float.

    Float arrays are taken as [0, 1]; 2 and 4 channels are grey and RGB with alpha last.
    """
    if isinstance(image, Image.Image):
        pixels, alpha, _ = _pillow_to_arrays("image", image)
        return pixels, alpha, InMemoryKind(image.mode)
    if not isinstance(image, np.ndarray):
        raise UserError(f"expected a PIL image or a numpy array, not {type(image).__name__}")
    arr = image[..., None] if image.ndim == 2 else image
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise UserError(f"array of shape {image.shape}: expected (H, W) or (H, W, C) with C = 1, 2, 3 or 4")
    if arr.dtype == np.uint8:
        scaled = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        scaled = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        scaled = arr.astype(np.float32)
        if not np.isfinite(scaled).all():
            raise UserError("the array holds NaN or infinite values")
        if scaled.max(initial=0) > 2 or scaled.min(initial=0) < -1:
            raise UserError(f"float arrays are read as [0, 1], but this one spans {scaled.min():g}..{scaled.max():g};"
                            " divide a 0..255 image by 255 first")
    else:
        raise UserError(f"arrays of {arr.dtype} are not supported; use uint8, uint16 or float in [0, 1]")
    colour = 1 if arr.shape[2] <= 2 else 3
    alpha = np.ascontiguousarray(scaled[..., colour]) if arr.shape[2] in (2, 4) else None
    return np.ascontiguousarray(scaled[..., :colour]), alpha, InMemoryKind(None, arr.dtype, image.ndim == 2)


def to_memory(pixels: np.ndarray, alpha: np.ndarray | None, kind: InMemoryKind):
    """The inverse of `from_memory`: values are clipped to [0, 1] (rounded for integer types).

    PIL images come back as L, LA, RGB or RGBA (8 bits), I;16 (16-bit grey) or F (float grey); palette,
    1-bit and CMYK images come back as the RGB(A) or L image they were enhanced as.
    """
    if kind.pil_mode is None:
        if kind.dtype in (np.uint8, np.uint16):
            bits = 8 if kind.dtype == np.uint8 else 16
            planes = [quantize(pixels, bits)] + ([quantize(alpha, bits)[..., None]] if alpha is not None else [])
        else:
            planes = [np.clip(pixels, 0, 1)] + ([np.clip(alpha, 0, 1)[..., None]] if alpha is not None else [])
            planes = [p.astype(kind.dtype) for p in planes]
        out = np.concatenate(planes, axis=2) if len(planes) > 1 else planes[0]
        return out[..., 0] if kind.squeezed else out
    if kind.pil_mode == "F":
        return Image.fromarray(np.clip(pixels[..., 0], 0, 1).astype(np.float32))
    if kind.pil_mode in ("I", "I;16", "I;16B", "I;16L"):
        return Image.fromarray(quantize(pixels[..., 0], 16))
    data = quantize(pixels, 8)
    if alpha is not None:
        data = np.concatenate([data, quantize(alpha, 8)[..., None]], axis=2)
    return Image.fromarray(data[..., 0] if data.shape[2] == 1 else data)
