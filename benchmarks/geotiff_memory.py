"""Peak memory and throughput of `enhance` on large single-band uint16 GeoTIFFs, streamed window by window.

    python benchmarks/geotiff_memory.py --size 5000 40000x2000 2000x40000 20000

For each size (N for N x N, or WIDTHxHEIGHT): writes a synthetic uint16 GeoTIFF of that size (tiled,
DEFLATE, UTM CRS, 10 m pixels, nodata 0 in one corner block), runs `sagan-restore enhance` on it in a fresh
process, and reports that process's peak RSS (ru_maxrss from wait4, through a small launcher: see
LAUNCHER) and megapixels per second; then checks the output's CRS, transform and nodata against the
input's. The model defaults to a tiny untrained 1-channel generator (memory and throughput of
the streaming, not restoration quality); --model takes any other. The section goes into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchdoc import git_commit, replace_section, script_command  # noqa: E402

NODATA = 0
CORNER = 1000  # a CORNER x CORNER block of nodata at the top left


def parse_size(text: str) -> tuple[int, int]:
    """"5000" -> (5000, 5000); "40000x2000" -> (40000, 2000): (width, height)."""
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def write_raster(path: Path, width: int, height: int) -> None:
    """A smooth field plus noise, written one strip at a time so the script itself stays small."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint16",
               "crs": "EPSG:32633", "transform": from_origin(500_000, 4_600_000, 10, 10), "nodata": NODATA,
               "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate", "bigtiff": "IF_SAFER"}
    x = np.arange(width, dtype=np.float32)
    with rasterio.open(path, "w", **profile) as dst:
        for y0 in range(0, height, 512):
            rows = np.arange(y0, min(height, y0 + 512), dtype=np.float32)[:, None]
            field = 2000 + 1500 * np.sin(x / 700.0) * np.cos(rows / 900.0)
            strip = np.clip(field + rng.normal(0, 60, field.shape), 1, 65535).astype(np.uint16)
            strip[: max(0, CORNER - y0), :CORNER] = NODATA
            dst.write(strip[None], window=Window(0, y0, width, len(rows)))


def tiny_model(path: Path) -> int:
    import torch

    from sagan_restore.checkpoint import save_generator
    from sagan_restore.config import GeneratorConfig
    from sagan_restore.models.generator import UNetGenerator

    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig(in_channels=1, out_channels=1, width=4, depth=2, attn_levels=()))
    save_generator(path, model, info={"task": "benchmark: untrained"})
    return sum(p.numel() for p in model.parameters())


# Started between this script and enhance, so enhance's peak RSS is its own: Linux carries the peak of the
# process that forked (and exec'd) a child into the child's ru_maxrss, and this script's peak, from writing
# a 40000-pixel-wide raster, is hundreds of MB. The launcher's own peak, about 10 MB, is the floor.
LAUNCHER = ("import os, subprocess, sys; process = subprocess.Popen(sys.argv[1:]); "
            "_, status, usage = os.wait4(process.pid, 0); print(f'maxrss_kb {usage.ru_maxrss}', flush=True); "
            "sys.exit(os.waitstatus_to_exitcode(status))")


def run_enhance(src: Path, out: Path, model: str, tile: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one enhance process."""
    command = [sys.executable, "-m", "sagan_restore", "enhance", str(src), "-o", str(out), "-n", model,
               "--device", "cpu", "--no-progress", "--overwrite", "-t", tile]
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", LAUNCHER, *command], stdout=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    *lines, last = done.stdout.splitlines()
    print("\n".join(lines), flush=True)
    if done.returncode != 0 or not last.startswith("maxrss_kb "):
        raise SystemExit(f"enhance failed: {' '.join(command)}")
    return seconds, int(last.split()[1]) / 1024  # kB on Linux


def check_metadata(src: Path, dst: Path) -> str:
    import rasterio

    with rasterio.open(src) as a, rasterio.open(dst) as b:
        same = a.crs == b.crs and a.transform == b.transform and a.nodata == b.nodata and a.dtypes == b.dtypes
        corner = b.read(1, window=((0, CORNER), (0, CORNER)))
        kept = bool((corner == NODATA).all())
    return "yes" if same and kept else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, nargs="+", help="N for N x N, or WIDTHxHEIGHT",
                        default=[(5000, 5000), (40000, 2000), (2000, 40000), (20000, 20000)])
    parser.add_argument("--model", help="model to enhance with (default: a tiny untrained 1-channel generator)")
    parser.add_argument("--tile", default="512", help="enhance --tile (default 512)")
    parser.add_argument("--work", type=Path, help="folder for the rasters (default: a temporary one)")
    parser.add_argument("--no-doc", action="store_true", help="print only, do not write docs/BENCHMARKS.md")
    args = parser.parse_args()
    import rasterio
    import torch

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        if args.model is None:
            params = tiny_model(work / "tiny.safetensors")
            model, model_text = str(work / "tiny.safetensors"), f"tiny untrained generator ({params:,} parameters)"
        else:
            model, model_text = args.model, args.model
        rows = []
        for width, height in args.size:
            src = work / f"raster_{width}x{height}.tif"
            write_raster(src, width, height)
            seconds, rss = run_enhance(src, work / "out", model, args.tile)
            ok = check_metadata(src, work / "out" / src.name)
            megapixels = width * height / 1e6
            row = (f"{width} x {height}", f"{megapixels:.0f}", f"{rss:.0f}", f"{seconds:.0f}",
                   f"{megapixels / seconds:.2f}", ok)
            print(" | ".join(row), flush=True)
            rows.append(row)
            src.unlink()
            (work / "out" / src.name).unlink()
    table = ["| raster | MP | peak RSS (MB) | seconds | MP/s | CRS, transform, nodata kept |",
             "|---|---:|---:|---:|---:|---|"] + [f"| {' | '.join(r)} |" for r in rows]
    body = "\n".join([
        "## Rasters larger than memory: uint16 GeoTIFF (`benchmarks/geotiff_memory.py`)",
        "",
        f"Command: `{script_command()}` at commit {git_commit()}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPU cores (shared with other work while measured), torch {torch.__version__}, "
        f"rasterio {rasterio.__version__} (GDAL {rasterio.__gdal_version__}).",
        "",
        f"One band, uint16, DEFLATE-tiled input with a {CORNER} x {CORNER} nodata corner; `enhance --device cpu "
        f"-t {args.tile}` with {model_text}, x1. Peak RSS is the enhance process's own (`wait4` in a small "
        "launcher, so the script's own memory is not counted in), imports and model included. It stays flat as "
        "the raster grows, in width as in height: only one strip of a column panel of tiles (8 tiles wide) and "
        "its blend accumulator are in memory (README, \"Rasters larger than memory\"); rasters wider than a "
        "panel run the tiles across panel edges twice. Throughput is that of this tiny model on a busy machine, "
        "not of a real one.",
        "",
        *table,
    ])
    print(body)
    if not args.no_doc:
        replace_section("geotiff_memory", body)


if __name__ == "__main__":
    main()
