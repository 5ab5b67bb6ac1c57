"""Files through `sagan-restore enhance`: bit depth, grey, alpha, palette, EXIF orientation, ICC, colour.

An identity generator (output = input, bicubic-upsampled for SR) isolates the file handling: whatever
differs between input and output was done by reading, tiling or writing.
"""

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image, ImageCms, ImageOps

from _infer_helpers import identity_generator, photo, save
from sagan_restore.cli import main
from sagan_restore.io import orient, read_image, write_image

FLAT = (201, 77, 13)


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return save(identity_generator(), tmp_path_factory.mktemp("models") / "identity.safetensors")


@pytest.fixture(scope="module")
def identity_sr(tmp_path_factory):
    return save(identity_generator(scale=2), tmp_path_factory.mktemp("models") / "identity_sr.safetensors")


def enhance(path, model, *extra):
    out = path.parent / "out"
    assert main(["enhance", str(path), "-o", str(out), "--model", str(model), "--no-progress", *extra]) == 0
    return out / path.name


@pytest.mark.parametrize("name,bits", [("flat.png", 8), ("flat16.png", 16), ("flat.tif", 8), ("flat16.tif", 16),
                                       ("flat.jpg", 8), ("flat.webp", 8), ("flat.bmp", 8)])
def test_a_flat_colour_comes_out_the_same_colour(tmp_path, identity, name, bits):
    colour = np.array(FLAT, dtype=np.float32) / 255
    pixels = np.broadcast_to(colour, (70, 90, 3)).copy()
    write_image(tmp_path / name, pixels, bit_depth=bits, quality=95)
    written = read_image(tmp_path / name)
    out = read_image(enhance(tmp_path / name, identity, "--tile", "32", "--overlap", "8"))
    assert out.bit_depth == written.bit_depth and out.pixels.shape == (70, 90, 3)
    assert np.abs(out.pixels - colour).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("name", ["grey.png", "grey.jpg"])
def test_eight_bit_grey_stays_grey(tmp_path, identity, name):
    write_image(tmp_path / name, np.full((30, 40, 1), 0.3, dtype=np.float32))
    with Image.open(enhance(tmp_path / name, identity)) as out:
        assert out.mode == "L" and np.abs(np.asarray(out).astype(int) - round(0.3 * 255)).max() <= 1


def test_sixteen_bit_rgb_png_keeps_all_sixteen_bits(tmp_path, identity):
    ramp = (np.linspace(0, 65535, 64 * 80 * 3).reshape(64, 80, 3)).round().astype(np.uint16)
    with open(tmp_path / "ramp.png", "wb") as f:
        png.Writer(80, 64, greyscale=False, bitdepth=16).write(f, ramp.reshape(64, -1))
    with open(enhance(tmp_path / "ramp.png", identity), "rb") as f:
        _, _, rows, info = png.Reader(file=f).asDirect()
        got = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(64, 80, 3)
    assert info["bitdepth"] == 16
    assert np.abs(got.astype(int) - ramp).max() <= 1  # 8 bits would be off by up to 128


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_grey_stays_sixteen_bit_grey(tmp_path, identity, suffix):
    grey = (np.linspace(0, 65535, 50 * 60).reshape(50, 60)).round().astype(np.uint16)
    path = tmp_path / f"grey{suffix}"
    Image.fromarray(grey).save(path) if suffix == ".png" else tifffile.imwrite(path, grey)
    out = enhance(path, identity)
    got = np.asarray(Image.open(out)) if suffix == ".png" else tifffile.imread(out)
    assert got.dtype == np.uint16 and got.shape == (50, 60)
    assert np.abs(got.astype(int) - grey).max() <= 1


def test_sixteen_bit_grey_with_alpha_png(tmp_path, identity):
    la = np.stack([np.full((20, 30), 40000), np.tile(np.linspace(0, 65535, 30), (20, 1))], axis=2).astype(np.uint16)
    with open(tmp_path / "la.png", "wb") as f:
        png.Writer(30, 20, greyscale=True, alpha=True, bitdepth=16).write(f, la.reshape(20, -1))
    image = read_image(enhance(tmp_path / "la.png", identity))
    assert image.bit_depth == 16 and image.is_grey and image.alpha is not None
    np.testing.assert_allclose(image.alpha, la[..., 1] / 65535, atol=1e-5)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
def test_rgba_keeps_alpha_and_super_resolution_upscales_it(tmp_path, identity_sr, suffix):
    rgba = np.zeros((40, 50, 4), dtype=np.uint8)
    rgba[..., :3] = FLAT
    rgba[:20, :, 3] = 255
    Image.fromarray(rgba).save(tmp_path / f"a{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    out = Image.open(enhance(tmp_path / f"a{suffix}", identity_sr))
    arr = np.asarray(out)
    assert out.mode == "RGBA" and out.size == (100, 80)
    assert (arr[:36, :, 3] == 255).all() and (arr[44:, :, 3] == 0).all()


def test_palette_image_comes_out_as_rgb(tmp_path, identity):
    im = Image.fromarray((photo(40, 60) * 255).astype(np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE)
    im.save(tmp_path / "pal.png")
    out = Image.open(enhance(tmp_path / "pal.png", identity))
    assert out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - np.asarray(im.convert("RGB"))).max() <= 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow(orientation):
    im = Image.fromarray(np.arange(3 * 5 * 3, dtype=np.uint8).reshape(3, 5, 3))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(orient(np.asarray(im), orientation), expected)


@pytest.mark.parametrize("name", ["o.jpg", "o.png", "o16.png"])
def test_exif_orientation_is_applied_and_other_exif_kept(tmp_path, identity, name):
    pixels = photo(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "TestCam"
    write_image(tmp_path / name, pixels, bit_depth=16 if "16" in name else 8, exif=exif.tobytes())
    out = enhance(tmp_path / name, identity)
    image = read_image(out)
    assert image.pixels.shape[:2] == (50, 30)  # turned upright
    with Image.open(out) as im:
        assert im.getexif().get(0x0112) is None and im.getexif().get(0x010F) == "TestCam"
    if "16" in name:
        assert image.bit_depth == 16


@pytest.mark.parametrize("name", ["icc.png", "icc16.png", "icc.jpg", "icc.tif", "icc.webp"])
def test_icc_profile_is_kept(tmp_path, identity, name):
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    write_image(tmp_path / name, photo(20, 30), bit_depth=16 if "16" in name else 8, icc_profile=profile)
    assert read_image(tmp_path / name).icc_profile == profile
    assert read_image(enhance(tmp_path / name, identity)).icc_profile == profile


def test_dpi_is_kept_and_scaled_with_super_resolution(tmp_path, identity_sr):
    write_image(tmp_path / "d.png", photo(20, 30), dpi=(300.0, 300.0))
    assert read_image(enhance(tmp_path / "d.png", identity_sr)).dpi == pytest.approx((600.0, 600.0), abs=0.1)


def test_jpeg_quality_option(tmp_path, identity):
    write_image(tmp_path / "q.jpg", photo(96, 128, noise=0.05), quality=95)
    low = tmp_path / "low"
    assert main(["enhance", str(tmp_path / "q.jpg"), "-o", str(low), "--model", str(identity), "--quality", "30",
                 "--no-progress"]) == 0
    high = enhance(tmp_path / "q.jpg", identity)
    assert (low / "q.jpg").stat().st_size < 0.6 * high.stat().st_size


# --- odd layouts: each either handled or refused in one line that names it -----------------------------

def _enhance(tmp_path, name, capsys):
    code = main(["enhance", str(tmp_path / name), "-o", str(tmp_path / "out"), "--model", str(_tiny_model(tmp_path)),
                 "--no-progress"])
    return code, capsys.readouterr()


def _tiny_model(tmp_path):
    from sagan_restore.checkpoint import save_generator
    from sagan_restore.config import GeneratorConfig
    from sagan_restore.models.generator import UNetGenerator

    path = tmp_path / "tiny.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        save_generator(path, UNetGenerator(GeneratorConfig(width=8, depth=1, attn_levels=())))
    return path


def test_animated_gif_uses_its_first_frame_and_is_written_as_png(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning) as warned:
        code, out = _enhance(tmp_path, "anim.gif", capsys)
    assert code == 0
    said = " | ".join(str(w.message) for w in warned)
    assert "3 frames; only the first" in said and "written as PNG" in said
    with Image.open(tmp_path / "out" / "anim.png") as result:
        assert result.size == (20, 24) and result.mode == "RGB"
    assert not (tmp_path / "out" / "anim.gif").exists()


@pytest.mark.parametrize("array, words", [
    (np.zeros((64, 64, 5), np.uint8), "a stack of 64 TIFF pages"),  # tifffile's layout for 5 channels
    (np.zeros((64, 64), np.int32), "32-bit signed integer"),
    (np.zeros((64, 64), np.uint32), "32-bit unsigned integer"),
    (np.zeros((4, 16, 16, 3), np.uint8), "a stack of 4 TIFF pages"),
])
def test_tiff_layouts_we_cannot_enhance_are_refused_in_one_line(tmp_path, capsys, array, words):
    import tifffile

    tifffile.imwrite(tmp_path / "odd.tif", array)
    code, out = _enhance(tmp_path, "odd.tif", capsys)
    assert code == 1 and words in out.out
    assert out.out.count("odd.tif:") == 1  # the reason once, in the summary
    assert not (tmp_path / "out" / "odd.tif").exists()


def test_five_contiguous_channels_are_a_raster_that_needs_bands(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "odd.tif", np.zeros((16, 16, 5), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    code, out = _enhance(tmp_path, "odd.tif", capsys)  # read as a 5-band raster (tests/test_rasters.py)
    assert code == 1 and "5 bands, and the model takes 3" in out.out and "--bands" in out.out


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_planar_and_float64_tiffs_are_read_the_right_way_round(tmp_path, dtype):
    import tifffile

    from sagan_restore.io import read_image

    rng = np.random.default_rng(1)
    rgb = rng.random((12, 20, 3))
    top = {np.uint8: 255, np.uint16: 65535, np.float64: 1}[dtype]
    stored = (rgb * top).astype(dtype) if top > 1 else rgb
    tifffile.imwrite(tmp_path / "p.tif", np.moveaxis(stored, -1, 0), planarconfig="separate", photometric="rgb")
    image = read_image(tmp_path / "p.tif")
    assert image.pixels.shape == (12, 20, 3)
    assert np.allclose(image.pixels, stored / top, atol=1e-6)


def test_a_bug_in_our_array_code_is_not_reported_as_an_unreadable_file(tmp_path, monkeypatch):
    from sagan_restore import io

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")

    def buggy(name, im):
        raise IndexError("a bug of ours")

    monkeypatch.setattr(io, "_pillow_to_arrays", buggy)
    with pytest.raises(IndexError, match="a bug of ours"):
        io.read_image(tmp_path / "ok.png")
