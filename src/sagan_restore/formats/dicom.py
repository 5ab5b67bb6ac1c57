"""DICOM through pydicom: grey images of 8 to 16 bits, every tag kept.

Reading gives modality values (stored values x RescaleSlope + RescaleIntercept, e.g. Hounsfield units)
turned so that bright means more signal: a MONOCHROME1 image (white = low values) is mirrored within the
range of its stored bits, and mirrored back on writing. Multi-frame images are enhanced frame by frame.

An output keeps every tag of its input except: a new SOP Instance UID and Series Instance UID (derived
from the old ones and the derivation, so the slices of one series enhanced together stay one new series),
a Derivation Description saying what was done, the pixel data (same bits allocated and stored, same
signedness, values rounded and clipped to the stored range), and for super-resolution Rows, Columns and
every Pixel Spacing / Imager Pixel Spacing divided by the scale. Smallest/Largest Image Pixel Value, where
present, are recomputed. A compressed input is written uncompressed (Explicit VR Little Endian): recompressing
lossily would undo the restoration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sagan_restore.errors import UserError, first_line
from sagan_restore.io import atomic_path

SPACING_TAGS = ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing")
MAX_DESCRIPTION = 1024  # Derivation Description is a Short Text (ST) element
# What pydicom's decoders raise for pixel data they cannot decode, or a damaged file.
PIXEL_ERRORS = (NotImplementedError, RuntimeError, ValueError, AttributeError, KeyError, TypeError, EOFError, OSError)


def _pydicom(path: Path):
    try:
        import pydicom
    except ModuleNotFoundError:
        raise UserError(f"{path}: reading DICOM needs the medical extra: pip install 'sagan-restore[medical]'") from None
    return pydicom


@dataclass
class DicomImage:
    dataset: object  # the pydicom Dataset, every tag as read
    frames: np.ndarray  # (F, H, W) float32 modality values, bright = more signal
    low: float  # modality value of the lowest stored value (after any MONOCHROME1 mirroring, still the lowest)
    high: float  # ... and of the highest
    slope: float
    intercept: float
    stored_range: tuple[int, int]  # what BitsStored and PixelRepresentation allow
    dtype: np.dtype  # of the stored samples: BitsAllocated and PixelRepresentation
    inverted: bool  # MONOCHROME1

    @property
    def multi_frame(self) -> bool:
        return self.frames.shape[0] > 1


def read_dicom(path: Path, *, max_pixels: int) -> DicomImage:
    pydicom = _pydicom(path)
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, *PIXEL_ERRORS) as err:
        raise UserError(f"{path}: not a readable DICOM file ({first_line(err)})") from None
    if "PixelData" not in ds:
        raise UserError(f"{path}: a DICOM without an image (no Pixel Data element)")
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise UserError(f"{path}: a {photometric or 'colour'} DICOM; only grey (MONOCHROME1/2) images are "
                        "supported")
    bits_allocated, bits_stored = int(ds.get("BitsAllocated", 0)), int(ds.get("BitsStored", 0))
    if bits_allocated not in (8, 16) or not 1 <= bits_stored <= bits_allocated:
        raise UserError(f"{path}: {bits_stored} bits stored in {bits_allocated}; only 8- to 16-bit images are "
                        "supported")
    frames, rows, columns = int(ds.get("NumberOfFrames", 1) or 1), int(ds.Rows), int(ds.Columns)
    if frames * rows * columns > max_pixels:
        raise UserError(f"{path}: {frames} frame(s) of {columns}x{rows} are over --max-pixels {max_pixels:g}; "
                        "raise it if the file is trusted")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    try:
        stored = ds.pixel_array
    except PIXEL_ERRORS as err:
        if syntax is not None and syntax.is_compressed:
            raise UserError(f"{path}: its pixel data is compressed as {syntax.name} ({syntax}), which the installed "
                            "decoders cannot read; install one (pip install pylibjpeg pylibjpeg-libjpeg "
                            "pylibjpeg-openjpeg, or python-gdcm) or decompress the file first (gdcmconv --raw)") from None
        raise UserError(f"{path}: its pixel data does not decode ({first_line(err)})") from None
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    stored_range = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else (0, 2**bits_stored - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    low, high = sorted(v * slope + intercept for v in stored_range)
    values = stored.reshape(frames, rows, columns).astype(np.float32) * np.float32(slope) + np.float32(intercept)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        values = np.float32(low + high) - values
    dtype = np.dtype(f"{'i' if signed else 'u'}{bits_allocated // 8}")
    return DicomImage(ds, values, low, high, slope, intercept, stored_range, dtype, inverted)


def size(path: Path) -> tuple[int, int]:
    """(height, width) of a frame, from the header."""
    pydicom = _pydicom(path)
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except (InvalidDicomError, *PIXEL_ERRORS) as err:
        raise UserError(f"{path}: not a readable DICOM file ({first_line(err)})") from None


def write_dicom(path: Path, image: DicomImage, frames: np.ndarray, *, scale: int, derivation: str) -> None:
    """Write (F, s*H, s*W) modality values as a derived copy of `image` (see the module docstring)."""
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = image.dataset
    values = np.float32(image.low + image.high) - frames if image.inverted else frames
    stored = np.clip(np.round((values - image.intercept) / image.slope), *image.stored_range).astype(image.dtype)
    data = stored.astype(image.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)  # DICOM values have even lengths
    ds["PixelData"].VR = "OB" if image.dtype.itemsize == 1 else "OW"
    ds["PixelData"].is_undefined_length = False
    ds.Rows, ds.Columns = stored.shape[1], stored.shape[2]
    if scale > 1:
        ds.walk(lambda _, element: _scale_spacing(element, scale))
    for keyword, value in (("SmallestImagePixelValue", stored.min()), ("LargestImagePixelValue", stored.max())):
        if keyword in ds:
            ds[keyword].value = int(value)
    # Derived from the old UIDs and what was done: enhancing the slices of one series with the same model
    # gives them one new series, and enhancing the same file again gives the same UIDs, not a duplicate.
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[str(ds.SOPInstanceUID), derivation])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[str(ds.get("SeriesInstanceUID", "")), derivation])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    before = str(ds.get("DerivationDescription", ""))
    ds.DerivationDescription = (f"{before}; {derivation}" if before else derivation)[:MAX_DESCRIPTION]
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if syntax is None or syntax.is_compressed or not syntax.is_little_endian:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    with atomic_path(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)


def _scale_spacing(element, scale: int) -> None:
    """Pixel spacings (mm between pixel centres) shrink with super-resolution: the same field of view."""
    if element.keyword in SPACING_TAGS and element.value:
        element.value = [f"{float(v) / scale:.10g}" for v in element.value]
