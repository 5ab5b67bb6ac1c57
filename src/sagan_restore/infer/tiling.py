"""Tiled inference: the whole image stays in host memory, only tiles (in batches) go to the device; or, for
rasters larger than memory (`tiled_apply_strips`), not even the image: windows are read and written as the
tiles covering them are done.

Why tiles: the generator's memory grows with the pixels it sees, and its self-attention costs O(N^2) in the
tokens it sees (a 12-megapixel photo has 187k tokens at 1/8 resolution). With tiles both are bounded by the
tile size, whatever the image size.

How tiles stay invisible:
- Tiles start at multiples of the model's 2**depth, so each one sees the same stride-2 sampling grid the
  whole image would; the last tile of a row ends at the image's edge, where the model pads it (reflect)
  exactly as it pads a whole image.
- Neighbours overlap, and each tile's weight falls smoothly (raised cosine) to zero towards an edge where
  it was cut from the image, where it lacks context. Two ramps over the same overlap sum to one, so the
  blend is a weighted average, never a hard cut.
- Self-attention sees one tile at a time: a pixel attends to the pixels of its own tile (overlaps
  included), not to the whole image. Context farther than a tile is lost; the blending hides where one
  tile's context ends and the next one's begins.
- For super-resolution tiles are cut in the input and placed at `scale` times their position.

The tiler only needs a function from a batch of input tiles to a batch of output tiles, so it runs a torch
model, a compiled one or an onnxruntime session alike.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from tqdm import tqdm

from sagan_restore.config import GeneratorConfig
from sagan_restore.errors import UserError
from sagan_restore.models.generator import UPSAMPLING_STEPS

RunBatch = Callable[[np.ndarray], np.ndarray]  # (B, C, h, w) float32 -> (B, C_out, s*h, s*w) float32
OnTiles = Callable[[int, int], None]  # (tiles done, tiles in all), called after each batch
T = TypeVar("T")


@dataclass(frozen=True)
class AxisPlan:
    """Where tiles start and end along one axis, in input pixels."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]


def plan_axis(length: int, *, tile: int, overlap: int, multiple: int) -> AxisPlan:
    """Tiles of at most `tile` pixels starting at multiples of `multiple`, neighbours overlapping by >= `overlap`.

    As few tiles as `tile` allows, each then shrunk as far as that count still covers the axis, so little
    work goes into overlaps. The last tile ends at the image's edge and may be shorter: the model pads it
    itself, exactly as it pads the whole image, and its bicubic base for super-resolution sees the same
    border. An axis no longer than a tile is one segment.
    """
    if length <= tile:
        return AxisPlan((0,), (length,))
    assert tile % multiple == 0 and 2 * overlap < tile, (tile, overlap, multiple)
    count = len(_tile_starts(length, tile, overlap, multiple))
    while tile - multiple > 2 * overlap and len(_tile_starts(length, tile - multiple, overlap, multiple)) == count:
        tile -= multiple
    starts = _tile_starts(length, tile, overlap, multiple)
    return AxisPlan(starts, tuple(min(start + tile, length) for start in starts))


def _tile_starts(length: int, tile: int, overlap: int, multiple: int) -> tuple[int, ...]:
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    last = math.ceil(length / multiple) * multiple - tile
    return tuple(range(0, last, stride)) + (last,)


def raised_cosine_ramp(n: int) -> np.ndarray:
    """n weights rising from near 0 to near 1; ramp + reversed ramp == 1 (sin^2 + cos^2)."""
    return (np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2).astype(np.float32)


def axis_windows(plan: AxisPlan, *, scale: int) -> list[np.ndarray]:
    """One blending window per tile, in output pixels; the windows sum to one at every output pixel."""
    windows = []
    count = len(plan.starts)
    for i, (start, end) in enumerate(zip(plan.starts, plan.ends)):
        window = np.ones((end - start) * scale, dtype=np.float32)
        if i > 0:
            shared = (plan.ends[i - 1] - start) * scale
            window[:shared] *= raised_cosine_ramp(shared)
        if i < count - 1:
            shared = (end - plan.starts[i + 1]) * scale
            window[len(window) - shared:] *= raised_cosine_ramp(shared)[::-1]
        windows.append(window)
    # Where three tiles overlap (a short last stride) the ramps alone would not sum to one.
    total = np.zeros(plan.ends[-1] * scale, dtype=np.float32)
    for start, window in zip(plan.starts, windows):
        total[start * scale: start * scale + len(window)] += window
    return [window / total[start * scale: start * scale + len(window)]
            for start, window in zip(plan.starts, windows)]


@dataclass(frozen=True)
class TileGrid:
    rows: AxisPlan
    cols: AxisPlan

    @property
    def count(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    def tiles(self) -> list[tuple[int, int, slice, slice]]:
        """(row index, column index, rows, columns) of every tile, grouped by shape so batches stack."""
        found = [(i, j, slice(y0, y1), slice(x0, x1))
                 for i, (y0, y1) in enumerate(zip(self.rows.starts, self.rows.ends))
                 for j, (x0, x1) in enumerate(zip(self.cols.starts, self.cols.ends))]
        return sorted(found, key=lambda t: (t[2].stop - t[2].start, t[3].stop - t[3].start), reverse=True)


def plan_grid(height: int, width: int, *, tile: int, overlap: int, multiple: int) -> TileGrid:
    """tile = 0: the whole image in one piece."""
    if tile == 0:
        return TileGrid(AxisPlan((0,), (height,)), AxisPlan((0,), (width,)))
    return TileGrid(plan_axis(height, tile=tile, overlap=overlap, multiple=multiple),
                    plan_axis(width, tile=tile, overlap=overlap, multiple=multiple))


def batches(tiles: list, size: int) -> Iterator[list]:
    """Consecutive runs of at most `size` tiles of one shape."""
    group: list = []
    for tile in tiles:
        if group and (len(group) == size or _shape(group[0]) != _shape(tile)):
            yield group
            group = []
        group.append(tile)
    if group:
        yield group


def _shape(tile) -> tuple[int, int]:
    _, _, rows, cols = tile
    return rows.stop - rows.start, cols.stop - cols.start


def tiled_apply(pixels: np.ndarray, run: RunBatch, *, tile: int, overlap: int, multiple: int, scale: int,
                out_channels: int, batch: int = 1, progress: bool = False,
                on_tiles: OnTiles | None = None) -> np.ndarray:
    """Apply `run` to (H, W, C) float32 pixels tile by tile; returns the blended (s*H, s*W, C_out) result.

    `multiple` is the model's padding multiple (2**depth); `tile` and `overlap` are in input pixels.
    progress: a tqdm bar on the terminal; on_tiles: told (done, total) after each batch, e.g. for a web page.
    """
    h, w = pixels.shape[:2]
    grid = plan_grid(h, w, tile=tile, overlap=overlap, multiple=multiple)
    row_windows = axis_windows(grid.rows, scale=scale)
    col_windows = axis_windows(grid.cols, scale=scale)
    out = np.zeros((h * scale, w * scale, out_channels), dtype=np.float32)
    bar = tqdm(total=grid.count, unit="tile", leave=False, disable=not progress or grid.count < 2)
    done = 0
    for group in batches(grid.tiles(), batch):
        stack = np.stack([pixels[rows, cols].transpose(2, 0, 1) for _, _, rows, cols in group])
        results = run(np.ascontiguousarray(stack, dtype=np.float32))  # (B, C_out, s*th, s*tw)
        for (i, j, rows, cols), result in zip(group, results):
            weight = row_windows[i][:, None] * col_windows[j][None, :]
            target = out[rows.start * scale: rows.stop * scale, cols.start * scale: cols.stop * scale]
            target += result.transpose(1, 2, 0) * weight[..., None]
        bar.update(len(group))
        done += len(group)
        if on_tiles is not None:
            on_tiles(done, grid.count)
    bar.close()
    return out


ReadWindow = Callable[[int, int, int, int], np.ndarray]  # (y0, y1, x0, x1) -> input [y0:y1, x0:x1], (h, w, C) float32
WriteWindow = Callable[[int, int, np.ndarray], None]  # (output row, output column, (h, w, C_out) float32 finished)

# A panel owns PANEL_TILES tiles' width of columns, so a strip of it holds a bounded number of tiles whatever
# the raster's width. Its edges fall on multiples of PANEL_ALIGN input columns: output blocks of GeoTIFF's
# usual 256 pixels then never straddle two panels (a block GDAL flushes half-written is rewritten, and
# grows a compressed file).
PANEL_TILES = 8
PANEL_ALIGN = 256


def panel_width(tile: int, width: int) -> int:
    """Input columns one panel owns: PANEL_TILES tiles rounded up to PANEL_ALIGN; tile = 0, the whole width."""
    if tile == 0:
        return width
    return math.ceil(PANEL_TILES * tile / PANEL_ALIGN) * PANEL_ALIGN


def overlapping(plan: AxisPlan, start: int, stop: int) -> range:
    """Indexes of the tiles that cover any of the pixels start..stop-1 (a run: starts and ends both rise)."""
    first = next(j for j, end in enumerate(plan.ends) if end > start)
    last = max(j for j, begin in enumerate(plan.starts) if begin < stop)
    return range(first, last + 1)


def tiled_apply_strips(read_window: ReadWindow, write_window: WriteWindow, run: RunBatch, *, height: int,
                       width: int, tile: int, overlap: int, multiple: int, scale: int, out_channels: int,
                       batch: int = 1, panel: int | None = None, progress: bool = False,
                       on_tiles: OnTiles | None = None) -> None:
    """`tiled_apply` for images larger than memory, in both directions: the same grid and blending windows,
    taken in column panels of `panel` input columns (default `panel_width`), each panel one strip of tiles
    at a time from the top.

    A panel owns its columns of the output. It runs every tile that covers any of them, so tiles across a
    panel edge run once for each side (one or two tile columns more per panel: 10-18% more tiles at tile
    512), and each owned pixel gets the very sum of weighted tiles `tiled_apply` gives it. Each strip's
    input window is read through `read_window`, its tiles are blended into an accumulator of the output
    rows they touch, and every owned output pixel no later strip reaches is handed to `write_window` (each
    pixel once; within a panel, top to bottom) and dropped.

    Memory holds one input strip of a panel (tile x (panel + 2 tile) x C) and at most one strip of its
    output (s*tile x s*(panel + 2 tile) x C_out), whatever the image's height and width; the result equals
    `tiled_apply`'s up to float rounding. tile = 0 makes the whole image one strip of one panel.
    """
    grid = plan_grid(height, width, tile=tile, overlap=overlap, multiple=multiple)
    row_windows = axis_windows(grid.rows, scale=scale)
    col_windows = axis_windows(grid.cols, scale=scale)
    panel = panel or panel_width(tile, width)
    panels = [(x0, min(x0 + panel, width)) for x0 in range(0, width, panel)]
    spans = [overlapping(grid.cols, x0, x1) for x0, x1 in panels]
    total = len(grid.rows.starts) * sum(len(span) for span in spans)
    bar = tqdm(total=total, unit="tile", leave=False, disable=not progress or total < 2)
    done = 0

    def tiles_done(count: int) -> None:
        nonlocal done
        bar.update(count)
        done += count
        if on_tiles is not None:
            on_tiles(done, total)

    for (x0, x1), span in zip(panels, spans):
        _panel_strips(read_window, write_window, run, grid=grid, row_windows=row_windows, col_windows=col_windows,
                      owned=(x0, x1), span=span, height=height, scale=scale, out_channels=out_channels,
                      batch=batch, tiles_done=tiles_done)
    bar.close()


def _panel_strips(read_window: ReadWindow, write_window: WriteWindow, run: RunBatch, *, grid: TileGrid,
                  row_windows: list[np.ndarray], col_windows: list[np.ndarray], owned: tuple[int, int],
                  span: range, height: int, scale: int, out_channels: int, batch: int,
                  tiles_done: Callable[[int], None]) -> None:
    """One panel of `tiled_apply_strips`: the tile columns `span`, output columns `owned` (input pixels)."""
    left, right = grid.cols.starts[span[0]], grid.cols.ends[span[-1]]  # the input columns its tiles read
    keep = slice((owned[0] - left) * scale, (owned[1] - left) * scale)  # its own columns in the accumulator
    columns = [(j, slice(grid.cols.starts[j] - left, grid.cols.ends[j] - left)) for j in span]
    written = 0  # output rows handed to write_window so far; the accumulator starts at this row
    pending = np.zeros((0, (right - left) * scale, out_channels), dtype=np.float32)
    for i, (y0, y1) in enumerate(zip(grid.rows.starts, grid.rows.ends)):
        strip = read_window(y0, y1, left, right)
        grow = y1 * scale - written - len(pending)
        if grow > 0:
            pending = np.concatenate([pending, np.zeros((grow, *pending.shape[1:]), np.float32)])
        top = y0 * scale - written  # this strip's first output row in the accumulator
        tiles = [(i, j, slice(0, y1 - y0), cols) for j, cols in columns]
        for group in batches(tiles, batch):
            stack = np.stack([strip[rows, cols].transpose(2, 0, 1) for _, _, rows, cols in group])
            results = run(np.ascontiguousarray(stack, dtype=np.float32))  # (B, C_out, s*th, s*tw)
            for (_, j, _, cols), result in zip(group, results):
                weight = row_windows[i][:, None] * col_windows[j][None, :]
                target = pending[top: top + result.shape[1], cols.start * scale: cols.stop * scale]
                target += result.transpose(1, 2, 0) * weight[..., None]
            tiles_done(len(group))
        del strip
        # Rows above the next strip's first row get no more contributions: they are finished.
        finished = (grid.rows.starts[i + 1] if i + 1 < len(grid.rows.starts) else height) * scale - written
        if finished > 0:
            write_window(written, owned[0] * scale, pending[:finished, keep])
            pending = pending[finished:].copy()  # a copy, so the finished rows' memory is freed
            written += finished
    assert written == height * scale and len(pending) == 0, (written, len(pending))


@dataclass(frozen=True)
class TileSettings:
    tile: int  # input pixels per tile side, a multiple of the model's 2**depth; 0 = the whole image at once
    overlap: int  # input pixels neighbouring tiles share
    batch: int  # tiles per forward pass


# Automatic tiles are at most 512 pixels: above that, attention's quadratic cost and memory outgrow the
# convolutions' (at 1024 it adds half again to a width-32 model's FLOPs, and 1.1 GB for its matrix). On CPU
# (docs/BENCHMARKS.md, "Tile size"), the trained models ran 256-512 tiles within 20% of each other (384
# fastest), 768 at 1.1-1.3x and whole images at 1.8-2.6x the time of 512, and every tile size gave PSNR
# within 0.03 dB of the whole image's: bigger is not better past 512, and 512 keeps GPU batches few.
AUTO_TILES = (512, 384, 256, 192, 128)
MAX_AUTO_BATCH = 16


def estimate_tile_bytes(cfg: GeneratorConfig, tile: int, *, bytes_per_value: int = 4) -> int:
    """Peak activation memory of one forward on a tile x tile input, from the architecture.

    Linear part: about 6 * width values per pixel live at once (skips plus a block's temporaries), more for
    the upsampling tail; NAFNet blocks expand to twice the width inside, and an unshuffle stem puts level 0
    at 1/unshuffle**2 of the pixels. Quadratic part: the attention matrix (tokens^2) and its softmax.
    Calibrated on CPU against peak RSS (width 32: 272 MB measured vs 350 MB estimated at tile 512), erring
    high.
    """
    pixels = tile * tile
    level0 = 6 * cfg.width * (2 if cfg.block == "naf" else 1) // cfg.unshuffle**2
    per_pixel = level0 + 2 * cfg.in_channels + 3 * cfg.out_channels * cfg.scale**2
    resolution = 1
    for factor in UPSAMPLING_STEPS[cfg.scale]:
        per_pixel += 2 * cfg.width * factor**2 * resolution**2
        resolution *= factor
    values = per_pixel * pixels
    for level in cfg.attn_levels:
        tokens = pixels // (4**level * cfg.unshuffle**2)
        values += 2 * tokens**2 + 3 * cfg.width * 2**level * tokens
    return values * bytes_per_value


def available_memory(device: torch.device) -> int:
    """Bytes free for activations: the GPU's free memory, or the host's available memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_tile_settings(cfg: GeneratorConfig, device: torch.device, *, tile: int | None, overlap: int,
                       batch: int | None, bytes_per_value: int = 4) -> TileSettings:
    """Fill in what the user left automatic (None): the tile, the largest of AUTO_TILES whose activations
    fit a share of the free memory; the batch, on a GPU as many such tiles as fit (on CPU one tile already
    keeps every core busy, and batching would only raise the memory peak). The share is half the GPU's
    free memory (the rest is cuDNN workspace and fragmentation) or a quarter of the host's, which other
    programs share. tile = 0 (whole images) stays 0."""
    budget = available_memory(device) // (2 if device.type == "cuda" else 4)

    def cost(t: int) -> int:
        return estimate_tile_bytes(cfg, t, bytes_per_value=bytes_per_value)

    if tile is None:
        tile = next((t for t in AUTO_TILES if cost(t) <= budget), AUTO_TILES[-1])
        overlap = min(overlap, tile // 4)
    if batch is None:
        batch = max(1, min(MAX_AUTO_BATCH, budget // cost(tile))) if device.type == "cuda" and tile else 1
    return TileSettings(tile, overlap, batch)


def halved(settings: TileSettings, *, height: int, width: int, multiple: int, smallest: int = 32) -> TileSettings | None:
    """Settings with half the tile (tile 0 counts as the whole image), or None below `smallest` pixels."""
    tile = settings.tile or math.ceil(max(height, width) / multiple) * multiple
    smaller = tile // 2 // multiple * multiple
    if smaller < max(smallest, multiple):
        return None
    return TileSettings(smaller, min(settings.overlap, smaller // 4), settings.batch)


def shrinking(attempt: Callable[[TileSettings], T], settings: TileSettings, *, device: torch.device, height: int,
              width: int, multiple: int) -> tuple[T, TileSettings]:
    """`attempt(settings)`, tried again from the start with half the tile size whenever the GPU runs out of
    memory. Returns its result and the settings that worked, for the next image. (Host memory running out
    is a plain RuntimeError, or the kernel's OOM killer, and is not retried.)"""
    while True:
        try:
            return attempt(settings), settings
        except torch.cuda.OutOfMemoryError:
            smaller = halved(settings, height=height, width=width, multiple=multiple)
            if smaller is None:
                raise UserError(f"out of memory on {device} even with {settings.tile or 'whole-image'} tiles; "
                                "free memory on the device or use --device cpu")
            warnings.warn(f"out of memory on {device} with tile {settings.tile or 'none'}; "
                          f"continuing with tile {smaller.tile}, overlap {smaller.overlap}")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            settings = smaller


def tiled_apply_shrinking(pixels: np.ndarray, run: RunBatch, settings: TileSettings, *, device: torch.device,
                          multiple: int, scale: int, out_channels: int, progress: bool = False,
                          on_tiles: OnTiles | None = None) -> tuple[np.ndarray, TileSettings]:
    """`tiled_apply` under `shrinking`: the image starts again with half the tile whenever the GPU runs out."""
    def attempt(s: TileSettings) -> np.ndarray:
        return tiled_apply(pixels, run, tile=s.tile, overlap=s.overlap, multiple=multiple, scale=scale,
                           out_channels=out_channels, batch=s.batch, progress=progress, on_tiles=on_tiles)

    return shrinking(attempt, settings, device=device, height=pixels.shape[0], width=pixels.shape[1],
                     multiple=multiple)
