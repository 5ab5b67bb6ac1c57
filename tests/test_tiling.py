"""Tiled inference: the grid, the blending windows, seams against untiled output, batching, OOM halving."""

import numpy as np
import pytest
import torch

from _infer_helpers import photo, random_generator
from sagan_restore.errors import UserError
from sagan_restore.infer import tiling
from sagan_restore.infer.tiling import (TileSettings, auto_tile_settings, axis_windows, estimate_tile_bytes,
                                        plan_axis, tiled_apply, tiled_apply_shrinking)


def torch_runner(model):
    def run(tiles):
        with torch.inference_mode():
            return model(torch.from_numpy(tiles)).numpy()
    return run


@pytest.mark.parametrize("length,tile,overlap,multiple", [(300, 64, 16, 4), (257, 128, 32, 8), (64, 64, 8, 8),
                                                          (1000, 96, 8, 8), (129, 128, 32, 8)])
def test_grid_starts_on_the_multiple_covers_the_axis_and_overlaps(length, tile, overlap, multiple):
    plan = plan_axis(length, tile=tile, overlap=overlap, multiple=multiple)
    if length <= tile:
        assert plan.starts == (0,) and plan.ends == (length,)
        return
    assert all(s % multiple == 0 for s in plan.starts)  # every tile sees the whole image's sampling grid
    assert plan.starts[0] == 0 and plan.ends[-1] == length
    sizes = {end - start for start, end in zip(plan.starts[:-1], plan.ends[:-1])}
    assert len(sizes) == 1 and sizes.pop() <= tile  # one size, so tiles batch together
    assert all(plan.ends[i] - plan.starts[i + 1] >= overlap for i in range(len(plan.starts) - 1))


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_windows_sum_to_one_and_ramp_smoothly(scale):
    plan = plan_axis(250, tile=64, overlap=16, multiple=4)
    windows = axis_windows(plan, scale=scale)
    total = np.zeros(250 * scale)
    for start, w in zip(plan.starts, windows):
        total[start * scale: start * scale + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    middle = windows[1]
    assert 0 < middle[0] < 0.05 and 0 < middle[-1] < 0.05  # fades out toward both cut edges...
    assert np.abs(np.diff(middle)).max() < 0.2 / scale  # ...gradually, no hard cut
    assert windows[0][0] == 1.0  # the image's own border is not faded


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_output_matches_untiled_within_four_levels(scale):
    # Random weights with attention at 0.5: attention sees one tile at a time, so this measures the seams
    # and the lost long-range context together.
    model = random_generator(scale=scale)
    pixels = photo(200, 264, noise=0.1)
    run = torch_runner(model)
    whole = run(pixels.transpose(2, 0, 1)[None].copy())[0].transpose(1, 2, 0)
    tiled = tiled_apply(pixels, run, tile=64, overlap=16, multiple=model.multiple, scale=scale, out_channels=3,
                        batch=3)
    assert tiled.shape == whole.shape == (200 * scale, 264 * scale, 3)
    diff = np.abs(np.clip(tiled, 0, 1) - np.clip(whole, 0, 1)) * 255
    assert diff.max() <= 4 and diff.mean() < 0.5
    assert np.abs(whole - np.repeat(np.repeat(pixels, scale, 0), scale, 1)).mean() * 255 > 10  # not trivial


def test_only_batches_of_tiles_reach_the_model():
    seen = []

    def run(tiles):
        seen.append(tiles.shape)
        return tiles

    pixels = photo(150, 230)
    out = tiled_apply(pixels, run, tile=64, overlap=16, multiple=4, scale=1, out_channels=3, batch=4)
    np.testing.assert_allclose(out, pixels, atol=1e-6)  # identity in, identity out: weights sum to one
    assert all(b <= 4 and h <= 64 and w <= 64 for b, _, h, w in seen)
    assert sum(b for b, *_ in seen) == len(plan_axis(150, tile=64, overlap=16, multiple=4).starts) * len(
        plan_axis(230, tile=64, overlap=16, multiple=4).starts)


def test_out_of_memory_halves_the_tile_and_goes_on():
    model = random_generator()
    run_model = torch_runner(model)
    sizes = []

    def run(tiles):  # a device that only fits 48-pixel tiles
        sizes.append(tiles.shape[-1])
        if tiles.shape[-1] > 48:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run_model(tiles)

    pixels = photo(120, 160)
    with pytest.warns(UserWarning, match="out of memory.*continuing with tile 48"):
        out, settings = tiled_apply_shrinking(pixels, run, TileSettings(96, 16, 2), device=torch.device("cpu"),
                                              multiple=4, scale=1, out_channels=3)
    assert settings == TileSettings(48, 12, 2)
    assert sizes[0] > 48 and max(sizes[1:]) <= 48  # one failed try, then the smaller tiles
    expected = tiled_apply(pixels, run_model, tile=48, overlap=12, multiple=4, scale=1, out_channels=3)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_out_of_memory_at_the_smallest_tile_is_a_user_error():
    def run(tiles):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.warns(UserWarning), pytest.raises(UserError, match="out of memory.*--device cpu"):
        tiled_apply_shrinking(photo(200, 200), run, TileSettings(128, 16, 1), device=torch.device("cpu"),
                              multiple=4, scale=1, out_channels=3)


def test_auto_tile_shrinks_with_the_memory_available(monkeypatch):
    cfg = random_generator(scale=1).cfg
    assert estimate_tile_bytes(cfg, 512) > estimate_tile_bytes(cfg, 256) > 0
    monkeypatch.setattr(tiling, "available_memory", lambda device: 1 << 40)
    assert auto_tile_settings(cfg, torch.device("cpu"), tile=None, overlap=32, batch=None).tile == 512
    monkeypatch.setattr(tiling, "available_memory", lambda device: 4 * estimate_tile_bytes(cfg, 256))
    assert auto_tile_settings(cfg, torch.device("cpu"), tile=None, overlap=32, batch=None) == TileSettings(256, 32, 1)
    # on a GPU, half the free memory: two 256 tiles per batch
    assert auto_tile_settings(cfg, torch.device("cuda"), tile=256, overlap=32, batch=None).batch == 2
