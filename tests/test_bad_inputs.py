"""Every input a user can get wrong gives one clear message naming the file and the problem, exit status 2,
no traceback, and loses nothing: no run folder is started, no output is half-written, no input changes."""

import errno
import os
import struct
import zlib

import numpy as np
import pytest
import tifffile
import torch

import sagan_restore.io as image_io
from sagan_restore import checkpoint
from sagan_restore.cli import main
from sagan_restore.config import GeneratorConfig
from sagan_restore.models.generator import UNetGenerator

from robust_helpers import TINY, clean_folder, files_digest, one_torch_thread, photo, save_png  # noqa: F401


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (the pixel data is a stub): a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def truncated(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def bad_file(kind: str, folder) -> tuple:
    """Write one bad image of `kind` into `folder`: (its path, a phrase its error message must hold)."""
    rng = np.random.default_rng(0)
    if kind == "empty":
        path = folder / "empty.png"
        path.write_bytes(b"")
        return path, "empty (0 bytes)"
    if kind == "truncated-jpeg":
        path = folder / "cut.jpg"
        data = np.round(photo(rng, 64, 64) * 255).astype(np.uint8)
        from PIL import Image

        Image.fromarray(data).save(path, quality=90)
        return truncated(path), "not a readable image"
    if kind == "truncated-png":
        return truncated(save_png(folder / "cut.png", photo(rng, 64, 64))), "not a readable image"
    if kind == "text":
        path = folder / "notes.png"
        path.write_text("shopping list: eggs, milk\n")
        return path, "not a readable image"
    if kind == "bomb":
        path = folder / "bomb.png"
        path.write_bytes(png_header_only(20_000, 20_000))
        return path, "400 megapixels, over the limit of 200"
    if kind == "int32-tiff":
        path = folder / "deep.tif"
        tifffile.imwrite(path, np.zeros((40, 40), np.int32))
        return path, "not supported"
    if kind == "nan-tiff":
        path = folder / "nan.tif"
        img = np.full((40, 40), 0.5, np.float32)
        img[3, 4] = np.nan
        tifffile.imwrite(path, img)
        return path, "NaN"
    raise ValueError(kind)


BAD_KINDS = ["empty", "truncated-jpeg", "truncated-png", "text", "bomb", "int32-tiff", "nan-tiff"]


def enhance_failure(capsys, code: int, *must_hold: str) -> str:
    """enhance reports a file that fails and goes on with the rest; the run ends with a non-zero status."""
    assert code != 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text, text
    for needle in must_hold:
        assert needle in text, (needle, text)
    return text


def one_line_error(capsys, *must_hold: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("sagan-restore: ") and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for text in must_hold:
        assert text in err, (text, err)
    return err


# ---- train ----------------------------------------------------------------------------------------------


def train_args(run, *data):
    return ["train", *data, "--out", str(run), "--iters", "2", "--sample-every", "1000", *TINY]


@pytest.mark.parametrize("option", ["--clean", "--data", "--aligned"])
def test_train_data_folder_that_does_not_exist(tmp_path, capsys, option):
    missing = tmp_path / "nowhere"
    assert main(train_args(tmp_path / "run", option, str(missing))) == 2
    one_line_error(capsys, str(missing), "no such folder")
    assert not (tmp_path / "run").exists()


def test_resume_folder_that_does_not_exist(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    one_line_error(capsys, "nowhere", "no such folder")


def test_train_folder_without_images(tmp_path, capsys):
    folder = tmp_path / "clean"
    folder.mkdir()
    (folder / "README.txt").write_text("photos go here")
    assert main(train_args(tmp_path / "run", "--clean", str(folder))) == 2
    one_line_error(capsys, str(folder), "no images found")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_train_on_a_bad_image(tmp_path, capsys, kind):
    folder = clean_folder(tmp_path / "clean", count=2)
    path, problem = bad_file(kind, folder)
    before = files_digest(folder)
    assert main(train_args(tmp_path / "run", "--clean", str(folder))) == 2
    err = capsys.readouterr().err
    assert str(path) in err and problem in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # nothing was started, so nothing is left half-done
    assert files_digest(folder) == before


def test_every_bad_training_image_is_listed_at_once(tmp_path, capsys):
    folder = clean_folder(tmp_path / "clean", count=2)
    bad = [bad_file(kind, folder) for kind in BAD_KINDS]
    assert main(train_args(tmp_path / "run", "--clean", str(folder))) == 2
    err = capsys.readouterr().err
    assert f"{len(bad)} problem(s)" in err and "Traceback" not in err
    for path, problem in bad:
        assert any(str(path) in line and problem in line for line in err.splitlines()), (path, err)


def test_max_pixels_can_be_lowered_and_raised(tmp_path, capsys):
    folder = clean_folder(tmp_path / "clean", count=1, size=48)  # 48 x 56 = 2688 pixels
    assert main(train_args(tmp_path / "run", "--clean", str(folder), "--max-pixels", "2000")) == 2
    assert "raise --max-pixels" in capsys.readouterr().err
    assert main(train_args(tmp_path / "run", "--clean", str(folder), "--max-pixels", "3000")) == 0


def test_paired_folder_problems_are_all_listed_before_training(tmp_path, capsys):
    root = tmp_path / "pairs"
    (root / "lr").mkdir(parents=True)
    (root / "hr").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        hr = photo(rng, 64, 64)
        save_png(root / "hr" / f"{name}.png", hr)
        save_png(root / "lr" / f"{name}.png", hr[::2, ::2])
    save_png(root / "lr" / "orphan_lr.png", photo(rng, 32, 32))
    save_png(root / "hr" / "orphan_hr.png", photo(rng, 64, 64))
    save_png(root / "lr" / "b.png", photo(rng, 30, 32))  # 64x64 is not 2x 32x30
    truncated(root / "hr" / "c.png")
    assert main(train_args(tmp_path / "run", "--data", str(root))) == 2
    err = capsys.readouterr().err
    assert "4 problem(s)" in err and "Traceback" not in err, err
    for text in ("orphan_lr.png has no partner", "orphan_hr.png has no partner",
                 f"{root / 'hr' / 'b.png'} is 64x64, not 2x the size", f"{root / 'hr' / 'c.png'}: not a readable"):
        assert text in err, (text, err)
    assert not (tmp_path / "run").exists()


def test_images_smaller_than_the_crop_are_padded_with_one_warning(tmp_path):
    folder = clean_folder(tmp_path / "clean", count=2, size=48)
    save_png(folder / "small.png", photo(np.random.default_rng(1), 20, 24))
    with pytest.warns(UserWarning, match=r"1 training image\(s\) smaller than the 32-pixel crop .*small.png \(24x20\)"):
        assert main(train_args(tmp_path / "run", "--clean", str(folder))) == 0
    assert checkpoint.list_checkpoints(tmp_path / "run")


def test_train_output_folder_that_cannot_be_created(tmp_path, capsys):
    folder = clean_folder(tmp_path / "clean", count=1)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(train_args(blocker / "run", "--clean", str(folder))) == 2
    one_line_error(capsys, str(blocker / "run"), "cannot create the run folder")


def test_training_never_changes_its_inputs(tmp_path):
    folder = clean_folder(tmp_path / "clean", count=3)
    before = files_digest(folder)
    assert main(train_args(tmp_path / "run", "--clean", str(folder))) == 0
    assert files_digest(folder) == before


# ---- enhance --------------------------------------------------------------------------------------------


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.manual_seed(0)
    checkpoint.save_generator(path, UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(2,))))
    return path


def enhance(*inputs, out, model, extra=()):
    return main(["enhance", *map(str, inputs), "-o", str(out), "--model", str(model), "--no-progress", *extra])


def test_enhance_input_that_does_not_exist(tmp_path, capsys, model):
    assert enhance(tmp_path / "nope.png", out=tmp_path / "out", model=model) == 2
    one_line_error(capsys, "nope.png", "no such file")


def test_enhance_folder_without_images(tmp_path, capsys, model):
    (tmp_path / "in").mkdir()
    assert enhance(tmp_path / "in", out=tmp_path / "out", model=model) == 2
    one_line_error(capsys, str(tmp_path / "in"), "no images")


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_enhance_a_bad_image(tmp_path, capsys, model, kind):
    (tmp_path / "in").mkdir()
    path, problem = bad_file(kind, tmp_path / "in")
    before = files_digest(tmp_path / "in")
    text = enhance_failure(capsys, enhance(path, out=tmp_path / "out", model=model))
    assert [line for line in text.splitlines() if str(path) in line] == [f"  {path}: {line.split(': ', 1)[1]}"
                                                                         for line in text.splitlines()
                                                                         if str(path) in line][:1], text
    assert sum(f"{path}: " in line and problem in line for line in text.splitlines()) == 1, text  # said once
    assert files_digest(tmp_path / "in") == before
    assert not any((tmp_path / "out").iterdir())


def test_enhance_max_pixels(tmp_path, capsys, model):
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 30, 40))
    code = enhance(image, out=tmp_path / "out", model=model, extra=["--max-pixels", "1000"])
    enhance_failure(capsys, code, f"{image}: 40x30 is 0.0012 megapixels, over the limit of 0.001")


def test_enhance_output_folder_that_cannot_be_created(tmp_path, capsys, model):
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 16, 16))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert enhance(image, out=blocker / "out", model=model) == 2
    one_line_error(capsys, str(blocker / "out"), "cannot create the output folder")


def test_full_disk_while_writing_an_output_leaves_no_partial_file(tmp_path, capsys, model, monkeypatch):
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 16, 16))

    def encode_until_the_disk_fills(f, suffix, data, **options):
        f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(image_io, "_encode", encode_until_the_disk_fills)
    code = enhance(image, out=tmp_path / "out", model=model)
    enhance_failure(capsys, code, str(tmp_path / "out" / "a.png"), "No space left on device")
    assert list((tmp_path / "out").iterdir()) == []


def test_existing_output_is_replaced_only_with_overwrite(tmp_path, capsys, model):
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 16, 16))
    (tmp_path / "out").mkdir()
    existing = tmp_path / "out" / "a.png"
    existing.write_bytes(b"precious")
    assert enhance(image, out=tmp_path / "out", model=model) == 2
    one_line_error(capsys, str(existing), "--overwrite")
    assert existing.read_bytes() == b"precious"
    assert enhance(image, out=tmp_path / "out", model=model, extra=["--overwrite"]) == 0
    assert image_io.read_image(existing).pixels.shape == (16, 16, 3)


def test_enhance_never_changes_its_inputs(tmp_path, model):
    folder = clean_folder(tmp_path / "in", count=2)
    before = files_digest(folder)
    assert enhance(folder, out=tmp_path / "out", model=model) == 0
    assert files_digest(folder) == before and len(list((tmp_path / "out").iterdir())) == 2


def test_crafted_pickle_model_is_refused_without_running_it(tmp_path, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"step": 1, "config": {}, "generator": Payload(), "opt_g": {}}, evil)
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 16, 16))
    assert enhance(image, out=tmp_path / "out", model=evil) == 2
    one_line_error(capsys, str(evil), "refused to load")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_model_file(tmp_path, capsys, model, damage):
    if damage == "truncate":
        truncated(model)
    else:
        model.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + b"\0" * 64)
    image = save_png(tmp_path / "a.png", photo(np.random.default_rng(0), 16, 16))
    assert enhance(image, out=tmp_path / "out", model=model) == 2
    one_line_error(capsys, str(model))
