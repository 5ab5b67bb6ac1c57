"""GeoTIFF and DICOM: metadata kept field by field, nodata, bands, value ranges, streaming, training on them.

Every raster is made here, small; identity models (output = input, bicubic-upsampled for SR) make exact
value checks possible.
"""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import rasterio
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEGLSLossless, generate_uid
from rasterio.enums import ColorInterp
from safetensors import safe_open

from _infer_helpers import identity_generator, photo, save
from conftest import save_png
from sagan_restore.checkpoint import save_generator
from sagan_restore.cli import main
from sagan_restore.infer import enhance as enhance_module
from sagan_restore.infer import tiling
from sagan_restore.infer.tiling import tiled_apply, tiled_apply_strips

TINY_TRAIN = ["--width", "8", "--depth", "2", "--crop", "32", "--batch", "2", "--d-width", "8", "--no-progress",
              "--device", "cpu", "--iters", "2", "--save-every", "2", "--sample-every", "2", "--quantize-share", "0"]
UTM = "EPSG:32633"
TRANSFORM = rasterio.Affine(10, 0, 500_000, 0, -10, 4_600_000)  # 10 m pixels


def write_geotiff(path, bands: np.ndarray, *, nodata=None, transform=TRANSFORM, **band_metadata):
    """(count, H, W) samples with a UTM CRS and optional per-band metadata lists."""
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype.name,
                       crs=UTM, transform=transform, nodata=nodata) as dst:
        dst.write(bands)
        if "descriptions" in band_metadata:
            for i, text in enumerate(band_metadata["descriptions"], start=1):
                dst.set_band_description(i, text)
        if "colorinterp" in band_metadata:
            dst.colorinterp = band_metadata["colorinterp"]
        if "units" in band_metadata:
            for i, unit in enumerate(band_metadata["units"], start=1):
                dst.set_band_unit(i, unit)
        if "scales" in band_metadata:
            dst.scales, dst.offsets = band_metadata["scales"], band_metadata["offsets"]
        dst.update_tags(SENSOR="test-sat", ACQUIRED="2024-06-01")
        for i in range(1, count + 1):
            dst.update_tags(i, WAVELENGTH=str(400 + 100 * i))
    return path


def enhance(*args) -> int:
    return main(["enhance", *map(str, args), "--device", "cpu", "--no-progress"])


def model_file(tmp_path, *, channels: int, scale: int = 1, info: dict | None = None):
    path = tmp_path / f"identity_{channels}_x{scale}.safetensors"
    save_generator(path, identity_generator(channels=channels, scale=scale), info=info or {"task": "test"})
    return path


def metadata(path) -> dict:
    with rasterio.open(path) as ds:
        return {"crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata, "dtypes": ds.dtypes,
                "count": ds.count, "descriptions": ds.descriptions, "colorinterp": ds.colorinterp,
                "units": ds.units, "scales": ds.scales, "offsets": ds.offsets, "tags": ds.tags(),
                "band_tags": [ds.tags(i) for i in range(1, ds.count + 1)], "bounds": ds.bounds}


def four_band(rng, height=40, width=56) -> np.ndarray:
    bands = (rng.random((4, height, width)) * 3000 + 500).astype(np.uint16)
    bands[:, :6, :9] = 0  # a nodata corner
    return bands


RGBN = dict(descriptions=["red", "green", "blue", "nir"],
            colorinterp=[ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined],
            units=["DN"] * 4, scales=[1e-4] * 4, offsets=[-0.1] * 4)


def test_four_band_geotiff_comes_back_with_its_metadata_whole(tmp_path, rng):
    bands = four_band(rng)
    src = write_geotiff(tmp_path / "scene.tif", bands, nodata=0, **RGBN)
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=4)) == 0
    out = tmp_path / "out" / "scene.tif"
    before, after = metadata(src), metadata(out)
    for field, value in before.items():
        if field == "tags":  # GDAL adds its own keys (AREA_OR_POINT); every key of ours is kept
            assert value.items() <= after["tags"].items()
        else:
            assert after[field] == value, field
    with rasterio.open(out) as ds:
        assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
        np.testing.assert_array_equal(ds.read(), bands)  # identity model: every sample back, nodata too


@pytest.mark.parametrize("dtype,nodata", [("uint8", 255), ("int16", -32768), ("float32", -9999.0)])
def test_sample_types_survive_a_round_trip(tmp_path, rng, dtype, nodata):
    low, high = {"uint8": (0, 254), "int16": (-3000, 3000), "float32": (-1.5, 40.0)}[dtype]
    band = rng.uniform(low, high, (1, 33, 47)).astype(dtype)
    band[0, -5:, -5:] = nodata
    src = write_geotiff(tmp_path / "band.tif", band, nodata=nodata)
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1)) == 0
    with rasterio.open(tmp_path / "out" / "band.tif") as ds:
        assert ds.dtypes == (dtype,) and ds.nodata == nodata
        np.testing.assert_allclose(ds.read(), band, rtol=1e-5, atol=1e-3 if dtype == "float32" else 0)


def test_super_resolution_scales_the_transform_and_keeps_nodata_out_of_the_network(tmp_path, rng, monkeypatch):
    band = rng.uniform(100, 200, (1, 32, 40)).astype(np.float32)
    band[0, 10:16, 20:30] = -9999.0
    src = write_geotiff(tmp_path / "dem.tif", band, nodata=-9999.0)
    seen = []
    real_run = enhance_module.Enhancer.run_batch
    monkeypatch.setattr(enhance_module.Enhancer, "run_batch",
                        lambda self, tiles: seen.append(tiles.min()) or real_run(self, tiles))
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1, scale=2)) == 0
    assert min(seen) >= 100  # the network never saw -9999: nodata was filled from valid neighbours
    with rasterio.open(src) as a, rasterio.open(tmp_path / "out" / "dem.tif") as b:
        assert (b.width, b.height) == (2 * a.width, 2 * a.height)
        assert b.transform == rasterio.Affine(5, 0, 500_000, 0, -5, 4_600_000)  # 5 m pixels, same origin
        assert b.bounds == a.bounds and b.crs == a.crs and b.nodata == -9999.0
        out = b.read(1)
    hole = np.zeros((64, 80), dtype=bool)
    hole[20:32, 40:60] = True
    assert (out[hole] == -9999.0).all() and (out[~hole] != -9999.0).all()


def test_three_channel_model_on_four_bands_needs_bands_and_then_writes_those(tmp_path, rng, capsys):
    bands = four_band(rng)
    src = write_geotiff(tmp_path / "scene.tif", bands, nodata=0, **RGBN)
    rgb_model = model_file(tmp_path, channels=3)
    assert enhance(src, "-o", tmp_path / "out", "-n", rgb_model) == 1
    out = capsys.readouterr().out
    assert f"{src}: 4 bands, and the model takes 3" in out and "--bands" in out and "Traceback" not in out
    assert not (tmp_path / "out" / "scene.tif").exists()
    assert enhance(src, "-o", tmp_path / "out", "-n", rgb_model, "--bands", "3,2,1") == 0
    after = metadata(tmp_path / "out" / "scene.tif")
    assert after["descriptions"] == ("blue", "green", "red")
    assert after["colorinterp"] == (ColorInterp.blue, ColorInterp.green, ColorInterp.red)
    with rasterio.open(tmp_path / "out" / "scene.tif") as ds:
        np.testing.assert_array_equal(ds.read(), bands[[2, 1, 0]])


def test_grey_model_goes_band_by_band_only_when_asked(tmp_path, rng, capsys):
    bands = four_band(rng)
    src = write_geotiff(tmp_path / "scene.tif", bands, nodata=0)
    grey = model_file(tmp_path, channels=1)
    assert enhance(src, "-o", tmp_path / "out", "-n", grey) == 1
    assert "--bands all" in capsys.readouterr().out
    assert enhance(src, "-o", tmp_path / "out", "-n", grey, "--bands", "all") == 0
    with rasterio.open(tmp_path / "out" / "scene.tif") as ds:
        np.testing.assert_array_equal(ds.read(), bands)
    assert enhance(src, "-o", tmp_path / "out5", "-n", grey, "--bands", "5") == 1
    assert "has bands 1..4, not 5" in capsys.readouterr().out


def test_bands_on_a_photo_and_ext_on_a_geotiff_are_refused(tmp_path, rng, capsys):
    png = tmp_path / "p.png"
    save_png(png, photo(16, 16))
    assert enhance(png, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=3), "--bands", "1,2,3") == 1
    assert "--bands" in capsys.readouterr().out
    src = write_geotiff(tmp_path / "one.tif", four_band(rng)[:1], nodata=0)
    assert enhance(src, "-o", tmp_path / "o2", "-n", model_file(tmp_path, channels=1), "--ext", "png") == 1
    assert "lose its georeferencing" in capsys.readouterr().out


def test_a_models_value_range_is_what_enhance_normalises_by(tmp_path, rng, monkeypatch):
    band = rng.uniform(1000, 3000, (1, 24, 24)).astype(np.uint16)
    src = write_geotiff(tmp_path / "b.tif", band)
    info = {"task": "test", "value_range": {"low": [1000.0], "high": [3000.0], "measured": "test"}}
    seen = []
    real_run = enhance_module.Enhancer.run_batch
    monkeypatch.setattr(enhance_module.Enhancer, "run_batch",
                        lambda self, tiles: seen.append((tiles.min(), tiles.max())) or real_run(self, tiles))
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1, info=info)) == 0
    assert 0 <= min(s[0] for s in seen) < 0.01 and 0.99 < max(s[1] for s in seen) <= 1
    with rasterio.open(tmp_path / "out" / "b.tif") as ds:
        np.testing.assert_array_equal(ds.read(), band)  # and the inverse maps the output back


@pytest.mark.parametrize("panel", [None, 32])  # one panel, then panels narrower than the raster
def test_strips_blend_as_the_whole_image_tiler_and_write_each_pixel_once(panel):
    rng = np.random.default_rng(1)
    pixels = rng.random((150, 97, 2), dtype=np.float32)
    conv = torch.nn.Sequential(torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.PixelShuffle(2))

    def run(tiles):
        with torch.no_grad():
            return conv(torch.from_numpy(tiles)).numpy()

    options = dict(tile=48, overlap=12, multiple=8, scale=2, out_channels=2, batch=2)
    whole = tiled_apply(pixels, run, **options)
    out, times_written, reads, writes = np.full_like(whole, np.nan), np.zeros(whole.shape[:2], int), [], []

    def read_window(y0, y1, x0, x1):
        reads.append((y1 - y0, x1 - x0))
        return pixels[y0:y1, x0:x1]

    def write_window(y0, x0, block):
        writes.append((x0, y0, len(block)))
        out[y0:y0 + len(block), x0:x0 + block.shape[1]] = block
        times_written[y0:y0 + len(block), x0:x0 + block.shape[1]] += 1

    tiled_apply_strips(read_window, write_window, run, height=150, width=97, panel=panel, **options)
    np.testing.assert_allclose(out, whole, atol=1e-5)
    assert (times_written == 1).all()
    assert max(h for h, _ in reads) <= 48  # one strip of tiles at a time, never the image...
    if panel:  # ...and, in panels, never the raster's width either
        assert max(w for _, w in reads) <= panel + 2 * 48 < 97 + 2 * 48 and len({x0 for x0, *_ in writes}) == 4
    for x0 in {x0 for x0, *_ in writes}:  # each panel top to bottom, row after row
        rows = [(y0, n) for x, y0, n in writes if x == x0]
        assert [y0 for y0, _ in rows] == list(np.cumsum([0] + [n for _, n in rows[:-1]]))


def test_a_geotiff_wider_than_a_panel_keeps_every_sample_and_its_nodata(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(tiling, "PANEL_TILES", 1)
    monkeypatch.setattr(tiling, "PANEL_ALIGN", 8)  # panels of 16 columns over a 56-column raster
    bands = four_band(rng)
    bands[:, 20:30, 14:20] = 0  # nodata across a panel edge
    src = write_geotiff(tmp_path / "wide.tif", bands, nodata=0)
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=4), "-t", "16",
                   "--overlap", "4") == 0
    with rasterio.open(tmp_path / "out" / "wide.tif") as ds:
        np.testing.assert_array_equal(ds.read(), bands)


def test_geotiff_out_of_gpu_memory_starts_again_with_half_the_tile(tmp_path, rng, monkeypatch):
    bands = four_band(rng)[:1]
    src = write_geotiff(tmp_path / "g.tif", bands, nodata=0)
    real_run = enhance_module.Enhancer.run_batch

    def small_device(self, tiles):  # fits tiles of 32 pixels, not 64
        if tiles.shape[-1] > 32:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(self, tiles)

    monkeypatch.setattr(enhance_module.Enhancer, "run_batch", small_device)
    with pytest.warns(UserWarning, match="out of memory.*continuing with tile 32"):
        assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1), "-t", "64",
                       "--overlap", "8") == 0
    with rasterio.open(tmp_path / "out" / "g.tif") as ds:
        np.testing.assert_array_equal(ds.read(), bands)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["g.tif"]  # the failed try left no file behind


# DICOM --------------------------------------------------------------------------------------------------


def write_dicom(path, frames: np.ndarray, *, bits_stored=12, signed=True, slope=1.0, intercept=-1024.0,
                photometric="MONOCHROME2", syntax=ExplicitVRLittleEndian, pixel_data: bytes | None = None):
    """A CT-like DICOM of (F, H, W) stored values, with the tags a scanner writes."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality, ds.StudyDate = "Phantom^Test", "P-001", "CT", "20240601"
    ds.SeriesDescription, ds.ImageType = "test series", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelSpacing, ds.SliceThickness, ds.WindowCenter, ds.WindowWidth = [0.5, 0.5], 1.0, 40, 400
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    count, ds.Rows, ds.Columns = frames.shape
    if count > 1:
        ds.NumberOfFrames = count
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = frames.dtype.itemsize * 8, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = pixel_data if pixel_data is not None else frames.astype(frames.dtype.newbyteorder("<")).tobytes()
    if pixel_data is not None:
        ds["PixelData"].VR, ds["PixelData"].is_undefined_length = "OB", True
    ds.save_as(path, enforce_file_format=True)
    return path


NEW_TAGS = {"SOPInstanceUID", "SeriesInstanceUID", "DerivationDescription"}


def test_sixteen_bit_dicom_keeps_every_tag_but_the_new_uids(tmp_path, rng):
    frames = rng.integers(-1024, 2047, (1, 30, 36)).astype(np.int16)
    src = write_dicom(tmp_path / "ct.dcm", frames, bits_stored=12, slope=1.0, intercept=-1024.0)
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1)) == 0
    before, after = pydicom.dcmread(src), pydicom.dcmread(tmp_path / "out" / "ct.dcm")
    for element in before:
        if element.keyword not in NEW_TAGS | {"PixelData"}:
            assert after[element.tag].value == element.value, element.keyword
    assert after.SOPInstanceUID != before.SOPInstanceUID and after.SeriesInstanceUID != before.SeriesInstanceUID
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.StudyInstanceUID == before.StudyInstanceUID
    assert "denoised by sagan-restore" in after.DerivationDescription
    np.testing.assert_array_equal(after.pixel_array, before.pixel_array)  # identity model, same bits


def test_monochrome1_multiframe_dicom_upscaled_frame_by_frame(tmp_path, rng, monkeypatch):
    frames = rng.integers(0, 4095, (3, 16, 20)).astype(np.uint16)
    frames[:, :8] = 4000  # high stored values: dark on a MONOCHROME1 display
    src = write_dicom(tmp_path / "xr.dcm", frames, signed=False, slope=2.0, intercept=0.0, photometric="MONOCHROME1")
    seen = []
    real_run = enhance_module.Enhancer.run_batch
    monkeypatch.setattr(enhance_module.Enhancer, "run_batch",
                        lambda self, tiles: seen.append(tiles[0, 0, :8].mean()) or real_run(self, tiles))
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1, scale=2)) == 0
    assert len(seen) == 3 and max(seen) < 0.05  # the dark rows reach the model as dark: MONOCHROME1 inverted
    after = pydicom.dcmread(tmp_path / "out" / "xr.dcm")
    assert after.pixel_array.shape == (3, 32, 40) and after.PhotometricInterpretation == "MONOCHROME1"
    assert [float(v) for v in after.PixelSpacing] == [0.25, 0.25] and after.BitsStored == 12
    assert "upscaled x2" in after.DerivationDescription
    assert (after.pixel_array[:, :14] >= 3900).all()  # and back to high stored values


def test_compressed_dicom_without_a_decoder_names_the_transfer_syntax(tmp_path, capsys):
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    frames = np.zeros((1, 8, 8), dtype=np.uint16)
    src = write_dicom(tmp_path / "ls.dcm", frames, syntax=JPEGLSLossless, pixel_data=encapsulate([b"\xff\xd8" * 8]))
    assert enhance(src, "-o", tmp_path / "out", "-n", model_file(tmp_path, channels=1)) == 1
    out = capsys.readouterr().out
    assert "JPEG-LS Lossless Image Compression" in out and "decoders cannot read" in out
    assert not (tmp_path / "out" / "ls.dcm").exists()


# Training -----------------------------------------------------------------------------------------------


def test_train_channels_4_on_geotiffs_stores_the_value_range_enhance_uses(tmp_path, rng):
    clean = tmp_path / "clean"
    clean.mkdir()
    for i in range(2):
        write_geotiff(clean / f"tile{i}.tif", four_band(rng, 48, 48), nodata=0, **RGBN)
    run = tmp_path / "run"
    assert main(["train", "--clean", str(clean), "--out", str(run), "--channels", "4", "--sigma", "10",
                 *TINY_TRAIN]) == 0
    with safe_open(str(run / "generator.safetensors"), framework="pt") as f:
        stored = json.loads(f.metadata()["info"])["value_range"]
    assert len(stored["low"]) == 4 and all(500 <= lo < hi <= 3500 for lo, hi in zip(stored["low"], stored["high"]))
    assert json.loads((run / "config.json").read_text())["value_range"] == stored
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    for model in (run, checkpoint):  # the final file and a checkpoint carry the same normalisation
        out = tmp_path / f"out_{model.name}"
        assert enhance(clean / "tile0.tif", "-o", out, "-n", model) == 0
        assert metadata(out / "tile0.tif")["descriptions"] == tuple(RGBN["descriptions"])


def test_train_on_dicom_pairs_and_refuse_mixed_photos(tmp_path, rng, capsys):
    for sub in ("lr", "hr"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for i in range(2):
        clean = rng.integers(0, 3000, (1, 40, 40)).astype(np.int16)
        noisy = np.clip(clean + rng.normal(0, 50, clean.shape), -2048, 2047).astype(np.int16)
        write_dicom(tmp_path / "pairs" / "hr" / f"s{i}.dcm", clean)
        write_dicom(tmp_path / "pairs" / "lr" / f"s{i}.dcm", noisy)
    base = [opt for opt in TINY_TRAIN if opt != "--quantize-share" and opt != "0"]
    assert main(["train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "run"), "--channels", "1",
                 *base]) == 0
    save_png(tmp_path / "pairs" / "hr" / "extra.png", photo(40, 40)[..., :1])
    save_png(tmp_path / "pairs" / "lr" / "extra.png", photo(40, 40)[..., :1])
    assert main(["train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "run2"), "--channels", "1",
                 *base]) == 2
    assert "mixes 2 raster(s)" in capsys.readouterr().err


def test_a_geotiff_without_the_geo_extra_is_refused_not_flattened(tmp_path, rng, capsys, monkeypatch):
    import builtins

    src = write_geotiff(tmp_path / "g.tif", four_band(rng)[:1], nodata=0)
    real_import = builtins.__import__

    def no_rasterio(name, *args, **kwargs):
        if name == "rasterio" or name.startswith("rasterio."):
            raise ModuleNotFoundError(name)
        return real_import(name, *args, **kwargs)

    model = model_file(tmp_path, channels=1)
    monkeypatch.setattr(builtins, "__import__", no_rasterio)
    assert enhance(src, "-o", tmp_path / "out", "-n", model) == 1
    assert "pip install 'sagan-restore[geo]'" in capsys.readouterr().out
