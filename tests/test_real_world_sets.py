"""recipes/real_world_sets.py makes lr/ + hr/ sets with fixed seeds, and `evaluate` scores them with blockiness."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from sagan_restore.cli import main
from sagan_restore.io import read_image

from conftest import save_png, smooth_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import real_world_sets  # noqa: E402


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name, (h, w) in (("a", (70, 90)), ("b", (64, 66))):  # sizes off every scale's multiple
        save_png(folder / f"{name}.png", smooth_image(rng, h, w, texture=0.03))
    return folder


def test_sets_are_exact_pairs_and_the_same_on_every_run(tmp_path, photos):
    real_world_sets.main(["--photos", str(photos), "--out", str(tmp_path / "one")])
    real_world_sets.main(["--photos", str(photos), "--out", str(tmp_path / "two")])
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert set(manifest["sets"]) == {f"x{s}_{v}" for s in (4, 2, 1) for v in ("light", "medium", "heavy")} | \
        {"x4_web", "x2_web"}
    assert all(record["downscale_filter"] in ("bicubic", "lanczos", "box", "bilinear")
               for record in manifest["sets"]["x4_web"].values())
    for name in manifest["sets"]:
        scale = int(name[1])
        for stem in ("a", "b"):
            lr, hr, again = (read_image(tmp_path / run / name / sub / f"{stem}.png").pixels
                             for run, sub in (("one", "lr"), ("one", "hr"), ("two", "lr")))
            assert hr.shape == (lr.shape[0] * scale, lr.shape[1] * scale, 3)
            assert np.array_equal(lr, again)
    heavy, light = manifest["sets"]["x1_heavy"]["a"], manifest["sets"]["x1_light"]["a"]
    assert heavy["shot"] > light["shot"] and heavy["jpeg_quality"] < light["jpeg_quality"]
    assert manifest["sets"]["x4_light"]["a"]["second"]["kernel"] is None  # one mild stage


def test_benchmark_folders_are_refused(tmp_path):
    with pytest.raises(SystemExit):
        real_world_sets.main(["--photos", str(tmp_path / "shared" / "benchmarks" / "Set5"), "--out", str(tmp_path)])


def test_evaluate_reports_blockiness_of_outputs_and_ground_truth(tmp_path, photos, capsys):
    real_world_sets.main(["--photos", str(photos), "--out", str(tmp_path / "sets")])
    out = tmp_path / "results"
    assert main(["evaluate", "--task", "sr", "--set", str(tmp_path / "sets" / "x2_heavy"), "--out", str(out),
                 "--no-progress"]) == 0
    record, = json.loads((out / "results.json").read_text())["records"]
    assert record["method"] == "bicubic" and record["scale"] == 2 and record["input"] == "paired"
    assert record["blockiness"] > 0 and record["target_blockiness"] > 0
    assert all("blockiness" in image for image in record["images"])
    shown = capsys.readouterr().out
    assert "JPEG blockiness" in shown and "ground truth" in shown
    out1 = tmp_path / "results1"
    assert main(["evaluate", "--set", str(tmp_path / "sets" / "x1_heavy"), "--out", str(out1), "--no-progress"]) == 0
    record, = json.loads((out1 / "results.json").read_text())["records"]
    assert record["method"] == "noisy" and record["blockiness"] > record["target_blockiness"]  # JPEG 30-60
