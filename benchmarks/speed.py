"""Speed and memory of a generator: inference megapixels per second and peak memory at 0.25, 1, 4 and 12
megapixels, training iterations per second at the default settings, parameters, GFLOPs per megapixel and
FLOP utilisation (achieved GFLOP/s over the rate of a large dense matrix product or convolution measured
in the same process right after). Rewrites the `speed` section of docs/BENCHMARKS.md.

    python benchmarks/speed.py --model runs/demo
    python benchmarks/speed.py                      # an untrained generator of the default architecture

Each image size and tile setting (`--tiles auto,0`: the Enhancer's automatic tiles, then whole images)
runs in a fresh child process, so its peak memory (RSS on CPU, CUDA max allocated on a GPU) is its own and
a size that runs out of time or memory is reported instead of taking the run down.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from benchdoc import git_commit, replace_section, script_command

from sagan_restore.checkpoint import save_generator
from sagan_restore.config import GeneratorConfig, TrainConfig
from sagan_restore.evaluation.machine import environment
from sagan_restore.evaluation.report import markdown_table
from sagan_restore.infer.enhance import Enhancer
from sagan_restore.infer.loading import load_model
from sagan_restore.models.generator import UNetGenerator, count_flops, count_parameters

# Output megapixels: (height, width). An SR model gets an input `scale` times smaller that upscales to this.
SIZES = {"0.25": (500, 500), "1": (1000, 1000), "4": (2000, 2000), "12": (3000, 4000)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="run folder, .safetensors or .pt (default: untrained default architecture)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--tiles", default="auto,0",
                   help="Enhancer tile settings to time, comma-separated: auto (its default), 0 (whole image at "
                        "once) or a size in pixels (default auto,0)")
    p.add_argument("--sizes", default=",".join(SIZES), help=f"megapixel sizes, from {', '.join(SIZES)}")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per size up to 1 MP (one above)")
    p.add_argument("--timeout", type=float, default=900, help="seconds allowed per image size")
    p.add_argument("--max-rss-gb", type=float, default=12.0,
                   help="stop a size whose process grows past this much memory (the machine is shared)")
    p.add_argument("--train-iters", type=int, default=20, help="iterations of the training-speed run")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/BENCHMARKS.md")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one image size, JSON job description
    return p.parse_args(argv)


def pick_device(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def parse_tiles(text: str) -> list[int | None]:
    try:
        return [None if t.strip() == "auto" else int(t) for t in text.split(",")]
    except ValueError:
        sys.exit(f"speed.py: --tiles {text}: expected auto, 0 or sizes in pixels")


def input_size(label: str, scale: int) -> tuple[int, int]:
    height, width = SIZES[label]
    return height // scale, width // scale


def attention_scores_gb(cfg: GeneratorConfig, height: int, width: int) -> float:
    """Size of the largest (tokens x tokens) float32 attention matrix of one forward, were it materialised."""
    multiple = 2**cfg.depth
    padded_h, padded_w = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    tokens = [(padded_h >> level) * (padded_w >> level) for level in cfg.attn_levels]
    return 4 * max(tokens, default=0) ** 2 / 1e9


def requested_tiles(tile: int | None) -> str:
    return "auto" if tile is None else "whole image" if tile == 0 else f"tiles {tile} px"


def describe_tiles(settings) -> str:
    if settings.tile == 0:
        return "whole image"
    return f"tiles {settings.tile} px, overlap {settings.overlap}, batch {settings.batch}"


# --- measured in a child process, one image size each ------------------------------------------------

def rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_inference(job: dict) -> dict:
    device = job["device"]
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    reference_before = peak_gflops(device)
    enhancer = Enhancer.load(job["model"], device=device, tile=job["tile"])
    enhancer.enhance_pixels(np.zeros((64, 64, 3), np.float32))  # one-off set-up outside the timing
    image = np.random.default_rng(0).random((job["height"], job["width"], 3), dtype=np.float32)
    forwards: list[torch.Size] = []  # input shapes the model saw: the work tiling really does
    enhancer.model.register_forward_pre_hook(lambda module, inputs: forwards.append(inputs[0].shape))
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before_mb = rss_mb()
    seconds = []
    for _ in range(job["repeats"]):
        forwards.clear()
        started = time.perf_counter()
        enhancer.enhance_pixels(image)  # returns a host array: includes the copy back, as users see it
        seconds.append(time.perf_counter() - started)
    cfg = enhancer.model.cfg
    result = {
        "seconds": statistics.median(seconds), "runs": len(seconds), "rss_before_mb": before_mb,
        "peak_rss_mb": rss_mb(), "tiles": describe_tiles(enhancer.settings), "forwards": len(forwards),
        "flops_run": sum(shape[0] * count_flops(enhancer.model, shape[2], shape[3]) for shape in forwards),
        "attention_gb": max(attention_scores_gb(cfg, shape[2], shape[3]) for shape in forwards),
    }
    if device == "cuda":
        result["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # The reference for utilisation, measured just before and just after the timing in the same process:
    # on a shared machine the attainable rate drifts with the load, so a peak measured minutes apart would
    # not be comparable; the better of the two is what the machine could give around the timing.
    reference_after = peak_gflops(device)
    return {**result, **{k: max(reference_before[k], reference_after[k]) for k in reference_after}}


def peak_gflops(device: str) -> dict:
    """GFLOP/s of a large dense matrix product and of a large 3x3 convolution, fp32, median of 5 runs."""
    def measure(fn, flops: float) -> float:
        fn()
        times = []
        for _ in range(5):
            if device == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return flops / statistics.median(times) / 1e9

    n = 4096 if device == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1).to(device)
    x = torch.randn(1, 128, 256, 256, device=device)
    with torch.inference_mode():
        return {
            "matmul": measure(lambda: a @ b, 2 * n**3),
            "conv3x3": measure(lambda: conv(x), 2 * 128 * 128 * 9 * 256 * 256),
        }


def run_size(args, model_spec: str, cfg: GeneratorConfig, device: str, label: str, tile: int | None) -> dict:
    """One output size and tile setting in a child process, watched for time and memory."""
    height, width = SIZES[label]
    in_height, in_width = input_size(label, cfg.scale)
    job = {"model": model_spec, "device": device, "height": in_height, "width": in_width, "tile": tile,
           "threads": args.threads, "repeats": args.repeats if height * width <= 1_000_000 else 1}
    result = {"label": label, "height": height, "width": width, "requested": requested_tiles(tile)}
    if tile == 0:
        result["attention_gb"] = attention_scores_gb(cfg, in_height, in_width)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, __file__, "--child", json.dumps(job)], stdout=out, stderr=err,
                                 text=True)
        started, limit_kb = time.monotonic(), args.max_rss_gb * 2**20
        stopped = None
        while child.poll() is None:
            if time.monotonic() - started > args.timeout:
                stopped = f"stopped after {args.timeout:.0f} s"
            elif _current_rss_kb(child.pid) > limit_kb:
                stopped = f"stopped at {args.max_rss_gb:g} GB resident memory"
            if stopped:
                child.kill()
                child.wait()
                break
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        output, errors = out.read(), err.read().strip()
    if stopped or child.returncode != 0:
        reason = errors.splitlines()[-1] if errors else ""
        return {**result, "failed": stopped or f"failed: {reason[:200]}"}
    return {**result, **json.loads(output.strip().splitlines()[-1])}


def _current_rss_kb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


# --- measured in the parent ---------------------------------------------------------------------------

def training_speed(iters: int, device: str) -> dict:
    """Iterations per second of `train` at the default TrainConfig (built-in corpus, batch 8, crop 96),
    data loading included, from the loop's own log: steps after the first few, before the final save."""
    from sagan_restore.train import train

    log_every = max(iters // 4, 1)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out=Path(tmp) / "run", iters=iters, log_every=log_every, save_every=10**9,
                          sample_every=10**9, device=device)
        train(cfg, progress=False)
        rows = [line.split(",") for line in (cfg.out / "log.csv").read_text().splitlines()[1:]]
    steps = {int(r[0]): float(r[1]) for r in rows}
    first, last = log_every, iters - log_every  # the last logged step includes the end-of-run samples
    return {"iters_per_s": (last - first) / (steps[last] - steps[first]), "batch": cfg.batch, "crop": cfg.crop,
            "timed_iters": last - first}


# --- report -------------------------------------------------------------------------------------------

def section(env: dict, model_label: str, cfg: GeneratorConfig, params: int, whole_flops: dict,
            runs: list[dict], training: dict) -> str:
    device = env["device"]
    memory_head = "peak CUDA allocated MB" if device == "cuda" else "peak RSS MB (before the call)"
    rows = []
    for r in runs:
        attention = f"{r['attention_gb']:.3g}" if "attention_gb" in r else ""
        head = [r["label"], f"{r['width']}x{r['height']}"]
        if "failed" in r:
            rows.append(head + [r["requested"], attention, r["failed"], "", "", "", "", ""])
            continue
        used = f"auto: {r['tiles']}" if r["requested"] == "auto" else r["tiles"]
        gflop = r["flops_run"] / 1e9
        achieved = gflop / r["seconds"]
        peak = max(r["matmul"], r["conv3x3"])
        memory = f"{r['cuda_max_allocated_mb']:.0f}" if device == "cuda" else \
            f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f})"
        rows.append(head + [used, attention, f"{r['seconds']:.2f} (median of {r['runs']})",
                            f"{r['height'] * r['width'] / 1e6 / r['seconds']:.3g}", memory,
                            f"{gflop:.0f} in {r['forwards']} forward(s)", f"{r['matmul']:.1f} / {r['conv3x3']:.1f}",
                            f"{achieved:.1f} ({100 * achieved / peak:.0f}%)"])
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    return "\n".join([
        "## Speed and memory",
        "",
        f"Generated by `benchmarks/speed.py` on {env['date']}: `{env['command']}`",
        "",
        f"- machine: {env['machine']}; device {device}; torch threads {env['torch_threads']}; 1-minute load "
        f"average at start {env['load_average_1min']} (other work shares the machine and slows every timing)",
        f"- versions: Python {env['python']}, {versions}; commit {env['commit']}",
        f"- model: {model_label}; {params:,} parameters; architecture {cfg}",
        "- utilisation: achieved GFLOP/s (the FLOPs of the forwards the model really ran, tiles and their "
        "overlap included, over the seconds) divided by the larger of two dense fp32 references, a square "
        f"matrix product ({'4096' if device == 'cuda' else '2048'}^2) and a 3x3 convolution 128->128 on 256x256 "
        "(median of 5 each, the better of a measurement just before and one just after each timing, in the "
        "same process); other work on the machine changes both within seconds, so a value above 100% means "
        "the load shifted during the timing",
        "",
        "Inference through `Enhancer.load(model, tile=...)` and `Enhancer.enhance_pixels` (float RGB input, "
        "output copied back to the host), each row in a fresh process. MP and size are of the output (an SR "
        "model gets an input `scale` times smaller). \"attention GB\" is the float32 tokens x tokens score "
        "matrix of the largest attention level in one forward: torch's CPU `scaled_dot_product_attention` "
        "materialises it when the value width differs from the query width, as with SAGAN's C/8 queries and C "
        "values, so whole-image inference needs it in memory.",
        "",
        markdown_table(["MP", "size", "tiles", "attention GB", "seconds", "MP/s", memory_head, "GFLOP run",
                        "dense GFLOP/s matmul / conv", "GFLOP/s (utilisation)"], rows),
        "",
        "GFLOP per output megapixel of one whole-image forward (2 x multiply-adds of convolutions and "
        "attention; attention grows with the square of the pixel count): " + ", ".join(
            f"{label} MP: {flops / 1e9 / (SIZES[label][0] * SIZES[label][1] / 1e6):.0f}"
            for label, flops in whole_flops.items()),
        "",
        f"Training at the default settings (built-in corpus, batch {training['batch']}, crop {training['crop']}, "
        f"generator + PatchGAN discriminator, data loading in the loop): {training['iters_per_s']:.3f} iterations/s "
        f"({1 / training['iters_per_s']:.2f} s per iteration, over {training['timed_iters']} timed iterations).",
    ])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(time_inference(json.loads(args.child))))
        return
    labels = [s.strip() for s in args.sizes.split(",")]
    if any(label not in SIZES for label in labels):
        sys.exit(f"speed.py: --sizes must come from {', '.join(SIZES)}")
    if args.train_iters < 8:
        sys.exit("speed.py: --train-iters must be at least 8 (the first and last quarter are not timed)")
    tiles = parse_tiles(args.tiles)
    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    env = {**environment(device), "command": script_command(), "commit": git_commit()}
    with tempfile.TemporaryDirectory() as tmp:
        model_spec = args.model
        if model_spec is None:
            model_spec = str(Path(tmp) / "untrained.safetensors")
            save_generator(Path(model_spec), UNetGenerator(GeneratorConfig()))
        model, _ = load_model(model_spec)
        whole_flops = {label: count_flops(model, *input_size(label, model.cfg.scale)) for label in labels}
        runs = []
        for tile in tiles:
            for label in labels:
                runs.append(run_size(args, model_spec, model.cfg, device, label, tile))
                print(f"{label} MP, {requested_tiles(tile)}: {runs[-1]}", flush=True)
    training = training_speed(args.train_iters, device)
    print(f"training: {training}", flush=True)
    model_label = f"`{args.model}`" if args.model else "untrained generator, default architecture"
    text = section(env, model_label, model.cfg, count_parameters(model), whole_flops, runs, training)
    print(text)
    if not args.no_doc:
        replace_section("speed", text)


if __name__ == "__main__":
    main()
