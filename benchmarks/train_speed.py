"""Training speed: iterations and images per second of the real training loop at the default settings,
the share of each step spent waiting for data, and what the DataLoader alone can deliver, for a few
variants (DataLoader workers, bf16 autocast, channels-last, torch.compile, glibc's own malloc settings). On a
GPU also peak memory and utilisation. Rewrites the `train-speed` section of docs/BENCHMARKS.md.

    python benchmarks/train_speed.py                          # CPU: fp32, workers, bf16, channels-last, glibc-malloc
    python benchmarks/train_speed.py --variants default,compile
    python benchmarks/train_speed.py --device cuda --variants default,bf16,bf16+compile,bf16+channels-last

Each variant is `sagan-restore train` run in a child process on the same data (the photos of the built-in
corpus as a --clean folder, decoded before training starts), with a log row per step. A run's numbers are
medians over the steps after the warm-up; the variants run in interleaved rounds, each round in an order
turned by one, and the table gives the median over rounds with the lowest and highest round beside it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from benchdoc import GLIBC_MALLOC_DEFAULTS, git_commit, replace_section, script_command

from sagan_restore.config import TrainConfig
from sagan_restore.data import corpus
from sagan_restore.data.datasets import TrainingSamples, build_source
from sagan_restore.distributed import Rank
from sagan_restore.train import make_loader

DEFAULT_THREADS = torch.get_num_threads()
VARIANTS = {
    "default": [],
    "workers2": ["--workers", "2"],
    "bf16": ["--precision", "bf16"],
    "channels-last": ["--channels-last"],
    "compile": ["--compile"],
    "bf16+compile": ["--precision", "bf16", "--compile"],
    "bf16+channels-last": ["--precision", "bf16", "--channels-last"],
    "glibc-malloc": [],
}
# Variants set by the environment instead: glibc's own malloc settings, to show what keeping freed memory
# saves (sagan_restore.allocator).
VARIANT_ENV = {"glibc-malloc": GLIBC_MALLOC_DEFAULTS}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--variants", default="default,workers2,bf16,channels-last,glibc-malloc", help=", ".join(VARIANTS))
    p.add_argument("--iters", type=int, default=40, help="training steps per variant and round")
    p.add_argument("--rounds", type=int, default=2,
                   help="run all variants this many times, interleaved, so that a change in the machine's "
                        "load shows as spread instead of as a difference between variants")
    p.add_argument("--warmup", type=int, default=10, help="first steps left out of the medians")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch CPU threads per run")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/BENCHMARKS.md")
    p.add_argument("--child", help=argparse.SUPPRESS)  # internal: one variant, JSON job description
    return p.parse_args(argv)


def prepare_data(folder: Path) -> Path:
    """The built-in corpus's photos as a --clean folder: real photos, no procedural images to generate."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in corpus.builtin_photo_paths():
        shutil.copy(path, folder / path.name)
    return folder


def loader_capacity(data: Path, *, workers: int, batches: int = 30) -> float:
    """Images per second the DataLoader alone delivers (default crop, batch and noise; images decoded)."""
    cfg = TrainConfig(out=Path("unused"), clean=(data,), clean_weights=(1.0,), workers=workers,
                      iters=batches + 5)
    samples = TrainingSamples(build_source(cfg), cfg)  # build_source decodes every image first
    loader = iter(make_loader(samples, cfg, 0, rank=Rank(), micro_batch=cfg.batch, device=torch.device("cpu")))
    for _ in range(5):  # worker start-up
        next(loader)
    began = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * cfg.batch / (time.perf_counter() - began)


# --- one variant, in a child process ------------------------------------------------------------------

def gpu_utilisation_sampler(samples: list, stop: threading.Event) -> None:
    """nvidia-smi's utilisation every half second while training runs."""
    while not stop.wait(0.5):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True, timeout=5).stdout
            samples.append(float(out.strip().splitlines()[0]))
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return


def run_child(job: dict) -> None:
    from sagan_restore.cli import main

    torch.set_num_threads(job["threads"])
    util, stop = [], threading.Event()
    sampler = threading.Thread(target=gpu_utilisation_sampler, args=(util, stop), daemon=True)
    if job["device"] == "cuda":
        sampler.start()
    began = time.perf_counter()
    code = main(["train", "--clean", job["data"], "--out", job["out"], "--iters", str(job["iters"]),
                 "--log-every", "1", "--sample-every", "100000", "--save-every", "100000", "--no-progress",
                 "--device", job["device"], *job["flags"]])
    stop.set()
    result = {"code": code, "wall_s": time.perf_counter() - began,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if job["device"] == "cuda":
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        result["gpu_util_median"] = statistics.median(util[len(util) // 4:]) if util else None
    print("RESULT " + json.dumps(result), flush=True)


def run_variant(name: str, args, data: Path, work: Path) -> dict:
    out = work / name
    work.mkdir(parents=True, exist_ok=True)
    job = {"device": args.device, "data": str(data), "out": str(out), "iters": args.iters,
           "flags": VARIANTS[name], "threads": args.threads}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True,
                          env={**os.environ, **VARIANT_ENV.get(name, {})})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    with open(out / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) > args.warmup]
    images = statistics.median(float(r["images_per_s"]) for r in rows)
    result |= {"images_per_s": images, "it_per_s": images / TrainConfig(out=out).batch,
               "data_wait": statistics.median(float(r["data_wait"]) for r in rows), "steps": len(rows)}
    return result


def combine(runs: list[dict]) -> dict:
    """The median over rounds of each number, and the range of images per second."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and all(r.get(k) is not None for r in runs)]
    combined = {k: statistics.median(r[k] for r in runs) for k in keys}
    combined["images_range"] = (min(r["images_per_s"] for r in runs), max(r["images_per_s"] for r in runs))
    return combined


# --- report -------------------------------------------------------------------------------------------

def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} logical cores, {DEFAULT_THREADS} torch threads by default"


def report(args, results: dict, capacity: dict, *, commit: str, load_before: float, load_after: float) -> str:
    cfg = TrainConfig(out=Path("unused"))
    g = cfg.generator
    lines = [
        f"Command: `{script_command()}` (commit {commit})",
        "",
        f"Device: {device_name(args.device)}; torch {torch.__version__}, Python {platform.python_version()}; "
        f"runs use {args.threads} torch thread(s). Load average before/after: {load_before:.1f}/{load_after:.1f} "
        "(other work on a shared machine slows every number).",
        "",
        f"Default configuration: generator width {g.width}, depth {g.depth}, attention at level(s) "
        f"{list(g.attn_levels)}; PatchGAN width {cfg.d_width}, {cfg.d_layers} layers; crop {cfg.crop}, "
        f"batch {cfg.batch}, denoising at sigma {cfg.degradation.sigma[0]:g}; data: the "
        f"{len(corpus.builtin_photo_paths())} photos of the built-in corpus as `--clean`. Per run, medians over "
        f"steps {args.warmup + 1}-{args.iters}; {args.rounds} interleaved round(s) of all variants, each "
        "starting one variant later than the one before, median over rounds, with the slowest and fastest round "
        "beside it. Speed-ups are taken against the default run of the same round (median, and range over "
        "rounds), since the machine's load drifts between rounds.",
        "",
        "| variant | flags | it/s | images/s | images/s, rounds | vs default, same round | waiting for data | " +
        ("GPU peak memory | GPU utilisation |" if args.device == "cuda" else "peak RSS |"),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | " + ("---: | ---: |" if args.device == "cuda" else "---: |"),
    ]
    base = results.get("default")
    for name, r in results.items():
        low, high = r["images_range"]
        ratios = r.get("ratios")
        versus = (f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
                  if ratios and name != "default" else "-")
        flags = " ".join([*(f"{k}={v}" for k, v in VARIANT_ENV.get(name, {}).items()), *VARIANTS[name]])
        row = (f"| {name} | `{flags or '-'}` | {r['it_per_s']:.2f} | "
               f"{r['images_per_s']:.1f} | {low:.1f}-{high:.1f} | {versus} | {100 * r['data_wait']:.1f}% | ")
        if args.device == "cuda":
            util = r.get("gpu_util_median")
            row += f"{r['gpu_peak_mb']:.0f} MB | {'-' if util is None else f'{util:.0f}%'} |"
        else:
            row += f"{r['peak_rss_mb']:.0f} MB |"
        lines.append(row)
    lines += [
        "",
        "DataLoader alone (same crops, noise and batch; images already decoded): " +
        ", ".join(f"{capacity[w]:.0f} images/s with {w} worker(s)" for w in sorted(capacity)) +
        f". The default training step consumes {base['images_per_s']:.1f} images/s, so data loading "
        f"{'is not' if base and min(capacity.values()) > 3 * base['images_per_s'] else 'may be'} the bottleneck "
        f"(the loop waits for data {100 * base['data_wait']:.1f}% of the time with workers=0)."
        if base else "",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        run_child(json.loads(args.child))
        return
    names = [n.strip() for n in args.variants.split(",")]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    commit, load_before = git_commit(), os.getloadavg()[0]  # the code measured, before anything changes
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_data(Path(tmp) / "photos")
        torch.set_num_threads(args.threads)
        capacity = {w: loader_capacity(data, workers=w) for w in (0, 2)}
        print(f"loader alone: {capacity}", flush=True)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            # Each round starts one variant later, so that no variant always runs first (or after the same one).
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                runs[name].append(run_variant(name, args, data, Path(tmp) / f"round{round_}"))
                print(f"round {round_ + 1}, {name}: {runs[name][-1]}", flush=True)
        results = {name: combine(found) for name, found in runs.items()}
        if "default" in runs:  # each variant against the default of its own round: load drifts between rounds
            for name, found in runs.items():
                results[name]["ratios"] = [r["images_per_s"] / d["images_per_s"] for r, d in zip(found, runs["default"])]
    text = report(args, results, capacity, commit=commit, load_before=load_before, load_after=os.getloadavg()[0])
    print(text)
    if not args.no_doc:
        replace_section(f"train-speed-{args.device}", "## Training speed (" + args.device + ")\n\n" + text)


if __name__ == "__main__":
    main()
