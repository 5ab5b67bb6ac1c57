"""Tiled enhance on this machine: speed, FLOP utilisation, seams and peak memory.

    python benchmarks/enhance_speed.py [--model RUN_OR_FILE] [--skip-50mp] [--compile]

Measures, in one run:
- the model's achieved GFLOP/s while enhancing a 4-megapixel photo, against a large dense convolution's
  GFLOP/s measured next to every tile, and where the time goes inside one tile;
- megapixels per second at several tile sizes (and with torch.compile when --compile is given);
- seams: tiled (tile 256, overlap 32) against untiled output on a 1-megapixel photo, max and mean abs
  difference, for the given model and for random weights with the attention gates opened to 0.5;
- ONNX export parity with PyTorch on a real photo;
- peak RSS (/usr/bin/time -v) of real `sagan-restore enhance` processes on generated 1, 12 and
  50-megapixel photos.

Without --model a real-size model (width 32, depth 3, attention at the bottleneck: the shipped
architecture) with random weights and attention gates at 0.5 is used; speed does not depend on weights.
Writes its section of docs/BENCHMARKS.md between the enhance_speed markers.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from benchdoc import DOC, git_commit, replace_section  # noqa: E402

from sagan_restore.checkpoint import save_generator  # noqa: E402
from sagan_restore.config import GeneratorConfig  # noqa: E402
from sagan_restore.errors import UserError  # noqa: E402
from sagan_restore.evaluation.machine import cpu_name  # noqa: E402
from sagan_restore.export import export_onnx, onnx_parity, parity_image  # noqa: E402
from sagan_restore.infer.enhance import Enhancer  # noqa: E402
from sagan_restore.infer.loading import load_model  # noqa: E402
from sagan_restore.infer.tiling import estimate_tile_bytes, plan_grid  # noqa: E402
from sagan_restore.models.attention import SelfAttention2d  # noqa: E402
from sagan_restore.models.generator import UNetGenerator, count_flops  # noqa: E402

SECTION = "enhance_speed"


def photo(width: int, height: int, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """scikit-image's astronaut resized to width x height, float32 (H, W, 3), Gaussian noise (0..1 scale)."""
    img = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if noise:
        arr += np.random.default_rng(seed).normal(0, noise, arr.shape).astype(np.float32)
    return arr


def write_photo_jpeg(path: Path, width: int, height: int, *, seed: int = 0) -> None:
    """A large noisy photo as a camera would save it (JPEG q95), noise added band by band to bound memory."""
    img = np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC))
    rng = np.random.default_rng(seed)
    out = np.empty_like(img)
    for y in range(0, height, 512):
        band = img[y: y + 512].astype(np.int16) + rng.normal(0, 10, img[y: y + 512].shape).astype(np.int16)
        out[y: y + 512] = np.clip(band, 0, 255)
    Image.fromarray(out).save(path, quality=95)


def random_real_size_model() -> UNetGenerator:
    torch.manual_seed(0)
    model = UNetGenerator(GeneratorConfig())  # width 32, depth 3, attention at the bottleneck
    for m in model.modules():
        if isinstance(m, SelfAttention2d):
            m.gamma.data.fill_(0.5)
    return model.eval()


class DenseConv:
    """A large dense 3x3 convolution (256 -> 256 channels on 128x128, NHWC): what this CPU's convolution
    kernels reach when arithmetic, not memory, limits them."""

    flops = 2 * 256 * 256 * 9 * 128 * 128

    def __init__(self):
        self.conv = nn.Conv2d(256, 256, 3, padding=1).eval().to(memory_format=torch.channels_last)
        self.x = torch.rand(1, 256, 128, 128).contiguous(memory_format=torch.channels_last)
        self.seconds()

    def seconds(self) -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            self.conv(self.x)
            return time.perf_counter() - start

    def gflops(self, reps: int = 5) -> float:
        return self.flops / statistics.median(self.seconds() for _ in range(reps)) / 1e9


class PairedTimer:
    """Times every tile forward of an Enhancer and runs the dense convolution right before each one.

    Other jobs share this machine and its speed drifts by 2x within minutes; a reference taken next to
    each tile, seconds apart, sees the same conditions as that tile does.
    """

    def __init__(self, enhancer: Enhancer, conv: DenseConv):
        self.enhancer, self.conv, self.run = enhancer, conv, enhancer.run_batch
        self.tiles: list[tuple[int, float, float]] = []  # (FLOPs, tile seconds, dense conv seconds)
        enhancer.run_batch = self

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        conv_seconds = self.conv.seconds()
        start = time.perf_counter()
        out = self.run(tiles)
        seconds = time.perf_counter() - start
        self.tiles.append((len(tiles) * count_flops(self.enhancer.model, *tiles.shape[2:]), seconds, conv_seconds))
        return out

    def enhance(self, pixels: np.ndarray) -> tuple[float, float]:
        """(wall seconds of the enhance, without the reference convolutions; the median over tiles of
        tile GFLOP/s / adjacent dense conv GFLOP/s)."""
        self.tiles.clear()
        start = time.perf_counter()
        self.enhancer.enhance_pixels(pixels)
        wall = time.perf_counter() - start - sum(conv for _, _, conv in self.tiles)
        ratios = [(flops / seconds) / (self.conv.flops / conv) for flops, seconds, conv in self.tiles]
        return wall, statistics.median(ratios)

    @property
    def conv_gflops(self) -> float:
        return statistics.median(self.conv.flops / conv for _, _, conv in self.tiles) / 1e9


def executed_flops(model: UNetGenerator, height: int, width: int, *, tile: int, overlap: int) -> int:
    """FLOPs the tiled enhance runs, overlaps included: each tile's forward counted at its own shape."""
    grid = plan_grid(height, width, tile=tile, overlap=overlap, multiple=model.multiple)
    per_shape: dict[tuple[int, int], int] = {}
    total = 0
    for _, _, rows, cols in grid.tiles():
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        if shape not in per_shape:
            per_shape[shape] = count_flops(model, *shape)
        total += per_shape[shape]
    return total


def time_enhance(enhancer: Enhancer, pixels: np.ndarray) -> float:
    start = time.perf_counter()
    enhancer.enhance_pixels(pixels)
    return time.perf_counter() - start


def profile_tile(enhancer: Enhancer, tile: int) -> dict[str, float]:
    """Share of one tile's CPU time in convolutions, attention and everything else (elementwise, copies)."""
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    with torch.inference_mode():
        enhancer.run_batch(x)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            enhancer.run_batch(x)
    shares = {"convolution": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        name = event.key
        if name.startswith("aten::") and event.self_cpu_time_total > 0:
            if "convolution" in name:
                shares["convolution"] += event.self_cpu_time_total
            elif any(k in name for k in ("bmm", "softmax", "attention", "baddbmm", "isneginf", "where", "aten::all")):
                shares["attention"] += event.self_cpu_time_total
            else:
                shares["other"] += event.self_cpu_time_total
    total = sum(shares.values())
    return {k: v / total for k, v in shares.items()}


def conv_layer_rates(enhancer: Enhancer, tile: int, reps: int = 3) -> list[tuple[str, float, float]]:
    """(layer kind, share of the convolutions' time, GFLOP/s) in one tile's forward, slowest kind first."""
    stats: dict[str, list[float]] = {}

    def before(module, inputs):
        module.started = time.perf_counter()

    def after(module, inputs, output):
        kh, kw = module.kernel_size
        key = f"{module.in_channels}->{module.out_channels} {kh}x{kw} at {output.shape[-1]}px"
        entry = stats.setdefault(key, [0.0, 0.0])
        entry[0] += time.perf_counter() - module.started
        entry[1] += 2 * output.numel() * module.in_channels // module.groups * kh * kw

    convs = [m for m in enhancer.model.modules() if isinstance(m, nn.Conv2d)]
    handles = [h for m in convs for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    x = np.random.default_rng(0).random((1, 3, tile, tile), dtype=np.float32)
    with torch.inference_mode():
        enhancer.run_batch(x)
        stats.clear()
        for _ in range(reps):
            enhancer.run_batch(x)
    for handle in handles:
        handle.remove()
    total = sum(seconds for seconds, _ in stats.values())
    rows = [(key, seconds / total, flops / seconds / 1e9) for key, (seconds, flops) in stats.items()]
    return sorted(rows, key=lambda row: -row[1])


def seam_difference(model_spec, pixels: np.ndarray, *, tile: int = 256, overlap: int = 32) -> tuple[float, float]:
    """Max and mean abs difference (on the 0..255 scale, outputs clipped to [0, 1]) tiled vs untiled."""
    whole = Enhancer.load(model_spec, tile=0).enhance_pixels(pixels)
    tiled = Enhancer.load(model_spec, tile=tile, overlap=overlap).enhance_pixels(pixels)
    diff = np.abs(np.clip(tiled, 0, 1) - np.clip(whole, 0, 1)) * 255
    return float(diff.max()), float(diff.mean())


def peak_rss(image: Path, model_spec: str, out_dir: Path, *extra: str) -> tuple[float, float]:
    """(peak RSS in GB, wall seconds) of `sagan-restore enhance` in its own process, from /usr/bin/time -v."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "sagan_restore", "enhance", str(image), "-o",
               str(out_dir), "--model", model_spec, "--device", "cpu", "--no-progress", "--overwrite", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{result.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", result.stderr).group(1)
    seconds = sum(float(part) * 60**i for i, part in enumerate(reversed(wall.split(":"))))
    return rss_kb / 1024**2, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="run folder, .safetensors or .pt (default: random real-size model)")
    parser.add_argument("--skip-50mp", action="store_true", help="skip the 50-megapixel RSS run (minutes on CPU)")
    parser.add_argument("--compile", action="store_true", help="also time enhance with torch.compile")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="enhance_speed_"))
    random_spec = str(work / "random_real_size.safetensors")
    save_generator(Path(random_spec), random_real_size_model(), info={"note": "random weights, gates 0.5"})
    model_spec = args.model or random_spec
    model, info = load_model(model_spec)
    model_name = args.model or "random weights, width 32, depth 3, attention gates 0.5"
    lines: list[str] = []

    def report(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    report("## Tiled enhance (`benchmarks/enhance_speed.py`)")
    report()
    report(f"Command: `{shlex.join(['python', 'benchmarks/enhance_speed.py', *sys.argv[1:]])}` at commit "
           f"{git_commit()}, {time.strftime('%Y-%m-%d')}; torch {torch.__version__}, {torch.get_num_threads()} "
           f"threads on {os.cpu_count()} cores of {cpu_name()} (shared with other jobs while measured); "
           f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none in this session'}.")
    trained = f", {info['step']} training steps" if "step" in info else ""
    report(f"Model: {model_name} (width {model.cfg.width}, depth {model.cfg.depth}, attention at levels "
           f"{list(model.cfg.attn_levels)}{trained}).")
    report()

    # 1. FLOP utilisation on a 4-megapixel photo
    conv = DenseConv()
    enhancer = Enhancer.load(model_spec, device="cpu")
    settings = enhancer.settings
    pixels = photo(2304, 1728, noise=0.08)
    enhancer.enhance_pixels(photo(512, 512))  # one-off set-up (oneDNN kernel choice) outside the timing
    shares = profile_tile(enhancer, settings.tile)
    layers = conv_layer_rates(enhancer, settings.tile)
    timer = PairedTimer(enhancer, conv)
    seconds, utilisation = timer.enhance(pixels)
    flops = executed_flops(model, 1728, 2304, tile=settings.tile, overlap=settings.overlap)
    useful = count_flops(model, 512, 512) / (512 * 512) * 1728 * 2304  # per-pixel cost of a 512 tile, no overlaps
    achieved = flops / seconds / 1e9
    report("### FLOP utilisation, 4-megapixel photo (2304x1728), CPU")
    report()
    report("Each tile's forward is timed, and the dense convolution is timed right before it: utilisation is")
    report("the median over tiles of (tile GFLOP/s) / (dense conv GFLOP/s), so both see the same share of")
    report("this shared machine.")
    report()
    report("| measurement | value |")
    report("|---|---|")
    report(f"| automatic tiles | {settings.tile} px, overlap {settings.overlap}, batch {settings.batch} |")
    report(f"| enhance wall time | {seconds:.1f} s ({pixels.shape[0] * pixels.shape[1] / 1e6 / seconds:.3f} MP/s) |")
    report(f"| FLOPs executed (tiles incl. overlaps) | {flops / 1e12:.2f} TFLOP ({flops / useful:.2f}x the image's own) |")
    report(f"| model's achieved rate (FLOPs / wall time) | {achieved:.1f} GFLOP/s |")
    report(f"| dense 3x3 conv 256->256 on 128x128 (median next to the tiles) | {timer.conv_gflops:.1f} GFLOP/s |")
    report(f"| **utilisation** (median over {len(timer.tiles)} tiles) | **{utilisation:.0%}** (target >= 40%) |")
    report(f"| achieved / dense conv, whole run | {achieved / timer.conv_gflops:.0%}; counting only the image's "
           f"own FLOPs (not overlaps): {useful / seconds / 1e9 / timer.conv_gflops:.0%} |")
    if args.compile:
        compiled = Enhancer.load(model_spec, device="cpu", compile=True)
        start = time.perf_counter()
        compiled.enhance_pixels(pixels)  # compiles each tile shape once
        first = time.perf_counter() - start
        compiled_timer = PairedTimer(compiled, conv)
        took, compiled_utilisation = compiled_timer.enhance(pixels)
        report(f"| with `--compile` (torch.compile, inductor, frozen weights) | {took:.1f} s, "
               f"{flops / took / 1e9:.1f} GFLOP/s, utilisation **{compiled_utilisation:.0%}** "
               f"(dense conv {compiled_timer.conv_gflops:.1f} GFLOP/s); first call {first:.0f} s, compiling |")
    report(f"| one {settings.tile} tile's CPU time | convolutions {shares['convolution']:.0%}, attention "
           f"{shares['attention']:.0%}, other (elementwise, pixel shuffle, copies) {shares['other']:.0%} |")
    report()
    report(f"Where a {settings.tile}-pixel tile's convolution time goes (the eight largest kinds; forward hooks):")
    report()
    report("| convolution | share of conv time | GFLOP/s |")
    report("|---|---|---|")
    for key, share, rate in layers[:8]:
        report(f"| {key} | {share:.0%} | {rate:.1f} |")
    report()

    if torch.cuda.is_available():
        report(f"### GPU: {torch.cuda.get_device_name()}, 4-megapixel photo")
        report()
        report("| precision | tiles | MP/s |")
        report("|---|---|---|")
        for half in (False, True):
            runner = Enhancer.load(model_spec, device="cuda", half=half)
            runner.enhance_pixels(photo(512, 512))
            torch.cuda.synchronize()
            took = time_enhance(runner, pixels)
            s = runner.settings
            report(f"| {'bf16/fp16 autocast' if half else 'float32'} | {s.tile} px, batch {s.batch} | "
                   f"{pixels.shape[0] * pixels.shape[1] / 1e6 / took:.2f} |")
        report()

    # 2. Speed against tile size
    report("### Speed against tile size, 1-megapixel photo (1152x864), CPU")
    report()
    report("| tile | overlap | tiles | MP/s | GFLOP executed | est. activation memory per tile |")
    report("|---|---|---|---|---|---|")
    mp_pixels = photo(1152, 864, noise=0.08)
    for tile in (256, 384, 512, 768):
        overlap = 32
        runner = Enhancer.load(model_spec, tile=tile, overlap=overlap)
        runner.enhance_pixels(photo(tile, tile))
        took = time_enhance(runner, mp_pixels)
        count = plan_grid(864, 1152, tile=tile, overlap=overlap, multiple=model.multiple).count
        report(f"| {tile} | {overlap} | {count} | {864 * 1152 / 1e6 / took:.3f} | "
               f"{executed_flops(model, 864, 1152, tile=tile, overlap=overlap) / 1e9:.0f} | "
               f"{estimate_tile_bytes(model.cfg, tile) / 1e6:.0f} MB |")
    report()

    # 3. Seams
    report("### Seams: tiled (tile 256, overlap 32) against untiled, 1-megapixel photo (1152x864)")
    report()
    report("| model | max abs diff | mean abs diff |")
    report("|---|---|---|")
    seam_models = [(model_name, model_spec)] + ([("random weights, attention gates 0.5", random_spec)]
                                                if args.model else [])
    for name, spec in seam_models:
        worst, mean = seam_difference(spec, mp_pixels)
        report(f"| {name} | {worst:.2f}/255 | {mean:.3f}/255 |")
    report()
    report("Targets: max <= 4/255, mean < 0.5/255. Outputs clipped to [0, 1], compared before rounding.")
    report()

    # 4. ONNX parity on a real photo
    try:
        onnx_file = work / "model.onnx"
        export_onnx(model_spec, onnx_file)
        image = parity_image(model.cfg, height=384, width=515)
        report(f"### ONNX export: onnxruntime against PyTorch, astronaut photo 515x384: max abs difference "
               f"{onnx_parity(onnx_file, model_spec, image=image):.1e} on [0, 1] images (target <= 1e-3)")
    except UserError as err:  # onnx or onnxruntime missing
        report(f"### ONNX export: not measured ({err})")
    report()

    # 5. Peak memory of real enhance processes
    report("### Peak memory (RSS, `/usr/bin/time -v`) of `sagan-restore enhance --device cpu` processes")
    report()
    report("| input | tiles | peak RSS | wall time |")
    report("|---|---|---|---|")
    sizes = [("1 MP (1152x864)", 1152, 864, ["--tile", "0"]), ("1 MP (1152x864)", 1152, 864, []),
             ("12 MP (4000x3000)", 4000, 3000, [])]
    if not args.skip_50mp:
        sizes.append(("50 MP (8160x6120)", 8160, 6120, []))
    for label, width, height, extra in sizes:
        image = work / f"photo_{width}x{height}.jpg"
        if not image.exists():
            write_photo_jpeg(image, width, height)
        gb, wall = peak_rss(image, model_spec, work / "out", *extra)
        tiles = "none (--tile 0)" if extra else "automatic"
        report(f"| {label} JPEG | {tiles} | {gb:.2f} GB | {wall:.0f} s |")
        (work / "out" / image.name).unlink(missing_ok=True)
    tokens = 4000 * 3000 // 64
    report()
    report(f"Untiled, a 12 MP photo would give the bottleneck attention {tokens:,} tokens, and its attention "
           f"matrix alone would take {tokens**2 * 4 / 1e9:.0f} GB in float32: that is why enhance tiles by "
           "default. Target: 12 MP under 3 GB.")
    replace_section(SECTION, "\n".join(lines))
    shutil.rmtree(work)
    print(f"\nwrote the {SECTION} section of {DOC}")


if __name__ == "__main__":
    main()
