"""`sagan-restore enhance` over many files: folders, --recursive, globs, --suffix, --skip-existing,
--overwrite, failures that do not stop the batch, and the summary."""

import numpy as np
import pytest
import torch
from PIL import Image

from _infer_helpers import identity_generator, photo, save
from sagan_restore.cli import main
from sagan_restore.io import write_image


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(save(identity_generator(), tmp_path_factory.mktemp("models") / "identity.safetensors"))


@pytest.fixture
def album(tmp_path):
    root = tmp_path / "album"
    for rel in ["a.png", "b.jpg", "trip/c.png", "trip/deep/d.tif", ".hidden/e.png", "._f.png"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_image(root / rel, photo(24, 32, seed=len(rel)))
    (root / "notes.txt").write_text("not an image")
    return root


def enhance(*args):
    return main(["enhance", *map(str, args), "--no-progress"])


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_folder_without_recursive_takes_its_own_images_only(album, model, tmp_path):
    assert enhance(album, "-o", tmp_path / "out", "--model", model) == 0
    assert files_under(tmp_path / "out") == ["a.png", "b.jpg"]


def test_recursive_keeps_the_folder_structure_and_skips_hidden_files(album, model, tmp_path, capsys):
    assert enhance(album, "-o", tmp_path / "out", "--model", model, "--recursive", "--suffix", "_x") == 0
    assert files_under(tmp_path / "out") == ["a_x.png", "b_x.jpg", "trip/c_x.png", "trip/deep/d_x.tif"]
    assert "enhanced 4 image(s)" in capsys.readouterr().out


def test_output_folder_inside_the_input_folder_is_not_enhanced_again(album, model):
    assert enhance(album, "-o", album / "enhanced", "--model", model, "--recursive") == 0
    assert enhance(album, "-o", album / "enhanced", "--model", model, "--recursive", "--overwrite") == 0
    assert not (album / "enhanced" / "enhanced").exists()


def test_glob_patterns(album, model, tmp_path):
    assert enhance(album / "**" / "*.png", "-o", tmp_path / "out", "--model", model, "--recursive") == 0
    assert files_under(tmp_path / "out") == ["a.png", "c.png"]
    assert enhance(album / "*.xyz", "-o", tmp_path / "out2", "--model", model) == 2


def test_existing_outputs_refused_skipped_or_overwritten(album, model, tmp_path, capsys):
    out = tmp_path / "out"
    assert enhance(album / "a.png", "-o", out, "--model", model) == 0
    stamp = (out / "a.png").stat().st_mtime_ns
    assert enhance(album / "a.png", album / "b.jpg", "-o", out, "--model", model) == 2
    assert "--overwrite" in capsys.readouterr().err and not (out / "b.jpg").exists()
    assert enhance(album / "a.png", album / "b.jpg", "-o", out, "--model", model, "--skip-existing") == 0
    assert "skipped 1" in capsys.readouterr().out
    assert (out / "a.png").stat().st_mtime_ns == stamp and (out / "b.jpg").exists()
    assert enhance(album / "a.png", "-o", out, "--model", model, "--overwrite") == 0
    assert (out / "a.png").stat().st_mtime_ns != stamp
    assert enhance(album / "a.png", "-o", out, "--model", model, "--overwrite", "--skip-existing") == 2


def test_a_failing_file_is_reported_and_the_rest_go_on(album, model, tmp_path, capsys):
    (album / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code = enhance(album, "-o", tmp_path / "out", "--model", model)
    captured = capsys.readouterr()
    assert code == 1
    assert files_under(tmp_path / "out") == ["a.png", "b.jpg"]
    assert "FAILED 1" in captured.out and "broken.png" in captured.out and "not a readable image" in captured.out


def test_two_inputs_with_one_output_name_are_refused(album, model, tmp_path, capsys):
    write_image(album / "trip" / "a.png", photo(24, 32))
    assert enhance(album / "a.png", album / "trip" / "a.png", "-o", tmp_path / "out", "--model", model) == 2
    assert "both be written to" in capsys.readouterr().err


@pytest.mark.parametrize("flags,message", [(["--tile", "40", "--overlap", "32"], "more than twice the overlap"),
                                           (["--quality", "0"], "between 1 and 100"),
                                           (["--batch", "0"], "at least 1")])
def test_bad_options_are_one_line_errors(album, model, tmp_path, capsys, flags, message):
    assert enhance(album / "a.png", "-o", tmp_path / "out", "--model", model, *flags) == 2
    assert message in capsys.readouterr().err


def test_tiled_and_untiled_cli_outputs_agree(album, model, tmp_path):
    write_image(album / "big.png", photo(150, 200, noise=0.05))
    assert enhance(album / "big.png", "-o", tmp_path / "whole", "--model", model, "--tile", "0") == 0
    assert enhance(album / "big.png", "-o", tmp_path / "tiled", "--model", model, "--tile", "64",
                   "--overlap", "16", "--batch", "3") == 0
    from PIL import Image

    whole = np.asarray(Image.open(tmp_path / "whole" / "big.png"), dtype=int)
    tiled = np.asarray(Image.open(tmp_path / "tiled" / "big.png"), dtype=int)
    assert np.abs(whole - tiled).max() == 0


def test_real_esrgan_style_flags(tmp_path, capsys):
    """-n, -s/--outscale (any factor: the model's scale, then a Lanczos resize), -t, --ext, --device cuda:N."""
    from sagan_restore.checkpoint import save_generator
    from sagan_restore.cli import main
    from sagan_restore.config import GeneratorConfig
    from sagan_restore.models.generator import UNetGenerator

    torch.manual_seed(0)
    model = tmp_path / "x2.safetensors"
    save_generator(model, UNetGenerator(GeneratorConfig(width=8, depth=1, scale=2, attn_levels=())))
    rgba = np.random.default_rng(0).integers(0, 255, (30, 40, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "in.png")
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-n", str(model), "-s", "3",
                 "-t", "128", "--ext", "tif", "--no-progress"]) == 0
    with Image.open(tmp_path / "out" / "in.tif") as out:
        assert out.size == (120, 90) and out.mode == "RGBA"  # x2 model, resized to x3; alpha kept
    assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "out"), "-n", str(model), "-s", "1.5",
                 "--ext", "jpg", "--no-progress"]) == 0
    with Image.open(tmp_path / "out" / "in.jpg") as out:
        assert out.size == (60, 45) and out.format == "JPEG"
    with pytest.raises(SystemExit):
        main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "o"), "--device", "gpu0"])
    assert "cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["enhance", str(tmp_path / "in.png"), "-o", str(tmp_path / "o"), "-n", str(model),
                     "--device", "cuda:1"]) == 2
        assert "--device cuda:1: no CUDA GPU" in capsys.readouterr().err


def test_outscale_picks_the_shipped_model_that_reaches_it():
    from sagan_restore.cli import enhance_model

    assert enhance_model(None, None, 1.0) == "real-restore"  # the real-photo models where shipped
    assert enhance_model(None, None, 1.5) == "real-sr2" and enhance_model(None, None, 2) == "real-sr2"
    assert enhance_model(None, None, 3) == "real-sr4" and enhance_model(None, None, 8) == "real-sr4"
    assert enhance_model("mine", None, 3) == "mine"


def test_models_prints_a_compact_table_and_verbose_every_score(capsys):
    from sagan_restore.cli import main

    assert main(["models"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["name", "task", "params", "headline", "score", "s/MP", "realism"]
    denoise = next(line for line in table if line.startswith("denoise"))
    assert "McMaster sigma 25" in denoise and "dB" in denoise
    assert main(["models", "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert verbose.count("dB PSNR") > len(table) - 3


@pytest.mark.parametrize("native, flags, precision", [(True, [], "bfloat16"),
                                                      (True, ["--precision", "fp32"], "float32"),
                                                      (True, ["--half"], "bfloat16"), (False, [], "float32")])
def test_precision_is_bf16_by_default_only_where_the_cpu_runs_it_natively(album, model, tmp_path, capsys,
                                                                          monkeypatch, native, flags, precision):
    from sagan_restore import devices

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native)
    assert enhance(album / "a.png", "-o", tmp_path / "out", "--model", model, *flags) == 0
    assert f"MP/s, {precision})" in capsys.readouterr().out
    assert (tmp_path / "out" / "a.png").exists()


def test_self_ensemble_from_the_command_line_takes_out_more_noise_across_tiles(tmp_path):
    clean = photo(96, 128)
    noisy = clean + np.random.default_rng(3).normal(0, 25 / 255, clean.shape).astype(np.float32)
    write_image(tmp_path / "noisy.png", np.clip(noisy, 0, 1))
    errors = {}
    for flags in ((), ("--self-ensemble",)):
        out = tmp_path / ("x8" if flags else "plain")
        assert enhance(tmp_path / "noisy.png", "-o", out, "--model", "denoise", "--tile", "64", "--overlap", "16",
                       *flags) == 0
        restored = np.asarray(Image.open(out / "noisy.png"), dtype=np.float64) / 255
        errors[bool(flags)] = float(np.mean((restored - clean) ** 2))
    assert errors[True] < 0.99 * errors[False], errors
