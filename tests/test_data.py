import dataclasses

import numpy as np
import pytest
import torch

from sagan_restore.config import DegradationConfig, GeneratorConfig, TrainConfig
from sagan_restore.data import datasets
from sagan_restore.errors import UserError

from conftest import save_png, smooth_image


def make_pairs(root, names, *, scale=1, lr_name="lr", hr_name="hr", size=32):
    rng = np.random.default_rng(1)
    (root / lr_name).mkdir(parents=True)
    (root / hr_name).mkdir()
    for name in names:
        hr = smooth_image(rng, size, size)
        save_png(root / hr_name / f"{name}.png", hr)
        save_png(root / lr_name / f"{name}.png", hr[::scale, ::scale])
    return root


def cfg_for(tmp_path, **kw):
    gen = kw.pop("generator", GeneratorConfig(width=8, depth=2))
    return TrainConfig(out=tmp_path / "run", generator=gen, crop=16, **kw)


@pytest.mark.parametrize("names", [("lr", "hr"), ("input", "target"), ("A", "B")])
def test_paired_folder_names(tmp_path, names):
    make_pairs(tmp_path / "d", ["a", "b"], lr_name=names[0], hr_name=names[1])
    lr_dir, hr_dir = datasets.find_paired_folders(tmp_path / "d")
    assert (lr_dir.name, hr_dir.name) == names


def test_unmatched_pairs_are_all_listed(tmp_path):
    root = make_pairs(tmp_path / "d", ["a", "b"])
    save_png(root / "lr" / "only_lr.png", np.zeros((8, 8, 3)))
    save_png(root / "hr" / "only_hr.png", np.zeros((8, 8, 3)))
    with pytest.raises(UserError) as err:
        datasets.match_pairs(root / "lr", root / "hr")
    assert "only_lr.png" in str(err.value) and "only_hr.png" in str(err.value)


def test_scale_is_detected_and_mismatches_reported(tmp_path):
    root = make_pairs(tmp_path / "d", ["a", "b"], scale=2)
    assert datasets.pair_scale(datasets.match_pairs(root / "lr", root / "hr")) == 2
    save_png(root / "lr" / "b.png", np.zeros((10, 10, 3)))
    with pytest.raises(UserError, match="b.png"):
        datasets.pair_scale(datasets.match_pairs(root / "lr", root / "hr"))


def test_sr_pairs_are_cropped_at_the_same_place(tmp_path):
    root = make_pairs(tmp_path / "d", ["a"], scale=2, size=64)
    cfg = cfg_for(tmp_path, data=root, generator=GeneratorConfig(width=8, depth=2, scale=2), augment=False)
    samples = datasets.TrainingSamples(datasets.build_source(cfg), cfg)
    lr, hr = samples[5]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 16, 16)
    assert torch.allclose(lr, hr[:, ::2, ::2], atol=1 / 255 + 1e-6)


def test_aligned_images_are_split_in_halves(tmp_path):
    folder = tmp_path / "aligned"
    folder.mkdir()
    left, right = np.zeros((32, 32, 3)), np.ones((32, 32, 3))
    save_png(folder / "x.png", np.concatenate([left, right], axis=1))
    cfg = cfg_for(tmp_path, aligned=folder)
    inp, target = datasets.TrainingSamples(datasets.build_source(cfg), cfg)[0]
    assert inp.max() == 0 and target.min() == 1


def test_samples_are_a_function_of_seed_and_index(tmp_path):
    cfg = cfg_for(tmp_path, degradation=DegradationConfig(sigma=(0, 50)))
    a = datasets.TrainingSamples(datasets.build_source(cfg), cfg)
    b = datasets.TrainingSamples(datasets.build_source(cfg), cfg)
    assert torch.equal(a[17][0], b[17][0]) and torch.equal(a[17][1], b[17][1])
    assert not torch.equal(a[17][0], a[18][0])


def test_builtin_corpus_holds_photos_and_dead_leaves_without_the_validation_photo(tmp_path):
    cfg = cfg_for(tmp_path)
    source = datasets.build_source(cfg)
    assert any(n.startswith("dead_leaves") for n in source.names)
    assert any(n.endswith((".png", ".jpg")) for n in source.names)
    assert "chelsea.png" not in source.names
    [(noisy, clean)] = datasets.validation_pairs(cfg)
    assert noisy.shape == clean.shape and abs((noisy - clean).std() * 255 - 25) < 1


def test_val_folder_of_clean_images_or_pairs_gives_fixed_validation_pairs(tmp_path):
    rng = np.random.default_rng(0)
    clean_dir = tmp_path / "val"
    clean_dir.mkdir()
    for name in ("a.png", "b.png"):
        save_png(clean_dir / name, smooth_image(rng, 500, 420))
    cfg = cfg_for(tmp_path, clean=(clean_dir,), clean_weights=(1.0,))
    assert datasets.validation_pairs(cfg) == []  # user data: no validation unless asked
    cfg = dataclasses.replace(cfg, val=clean_dir)
    first, again = datasets.validation_pairs(cfg), datasets.validation_pairs(cfg)
    assert len(first) == 2 and all(np.array_equal(a[0], b[0]) for a, b in zip(first, again))  # fixed seeds
    noisy, clean = first[0]
    assert clean.shape == (384, 384, 3)  # centre crops bound the cost
    pairs = tmp_path / "pairs"
    (pairs / "lr").mkdir(parents=True)
    (pairs / "hr").mkdir()
    hr = smooth_image(rng, 64, 96)
    save_png(pairs / "hr" / "p.png", hr)
    save_png(pairs / "lr" / "p.png", hr[::2, ::2])
    cfg = dataclasses.replace(cfg, val=pairs)
    [(lr, target)] = datasets.validation_pairs(cfg)
    assert lr.shape == (32, 48, 3) and target.shape == (64, 96, 3)
    with pytest.raises(UserError, match="--val"):
        datasets.validation_pairs(dataclasses.replace(cfg, val=tmp_path / "missing"))


def test_small_images_are_padded_with_a_warning(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    save_png(folder / "tiny.png", smooth_image(np.random.default_rng(0), 10, 12))
    cfg = cfg_for(tmp_path, clean=(folder,), clean_weights=(1.0,))
    with pytest.warns(UserWarning, match="tiny.png"):
        inp, target = datasets.TrainingSamples(datasets.build_source(cfg), cfg)[0]
    assert target.shape == (3, 16, 16)


def test_load_size_resizes_the_shorter_side(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    save_png(folder / "a.png", smooth_image(np.random.default_rng(0), 40, 80))
    cfg = cfg_for(tmp_path, clean=(folder,), clean_weights=(1.0,), load_size=20)
    assert datasets.build_source(cfg).get(0).shape == (20, 40, 3)


def test_one_data_source_only(tmp_path):
    with pytest.raises(UserError, match="choose one"):
        datasets.build_source(cfg_for(tmp_path, data=tmp_path, clean=(tmp_path,), clean_weights=(1.0,)))


def test_grey_and_rgba_are_converted_explicitly(tmp_path):
    folder = tmp_path / "clean"
    folder.mkdir()
    rng = np.random.default_rng(0)
    save_png(folder / "grey.png", smooth_image(rng, 20, 20, channels=1))
    rgba = np.concatenate([smooth_image(rng, 20, 20), np.full((20, 20, 1), 0.5)], axis=2)
    save_png(folder / "rgba.png", rgba)
    source = datasets.build_source(cfg_for(tmp_path, clean=(folder,), clean_weights=(1.0,)))
    grey, colour = source.get(0), source.get(1)
    assert grey.shape == (20, 20, 3) and np.array_equal(grey[..., 0], grey[..., 2])
    assert colour.shape == (20, 20, 3)  # alpha dropped for training


def test_clean_folders_are_drawn_with_their_weights(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        save_png(tmp_path / name / "x.png", smooth_image(rng, 20, 20))
    cfg = cfg_for(tmp_path, clean=(tmp_path / "a", tmp_path / "b"), clean_weights=(1.0, 3.0), dead_leaves=1.0)
    source = datasets.build_source(cfg)
    assert np.allclose(source.weights[:2], [0.2, 0.6]) and np.isclose(source.weights.sum(), 1)
    draws = [source.draw(np.random.default_rng(i)) for i in range(2000)]
    assert abs(np.mean(np.array(draws) == 1) - 0.6) < 0.04
