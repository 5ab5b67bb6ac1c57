"""What a CPU budget buys: variants of the generator and its recipe, each trained for the same process CPU
time, scored on held-out photos as they go. Writes a plot (validation PSNR against CPU-seconds, one curve
per variant) and a table (steps/s, final PSNR, parameters, GFLOPs/MP, inference s/MP) into
docs/BENCHMARKS.md, in a section of its task's own.

    python recipes/build_corpus.py --out data/corpus
    python recipes/validation_photos.py --out data/val_photos
    python benchmarks/budget.py --variants res,unshuffle,naf --budget-minutes 20
    python benchmarks/budget.py --task sr --scale 2 --variants sr,sr-fine+naf-recipe --budget-minutes 10

Fairness: every variant is a real `sagan-restore train` run in its own process, and the runs take turns on
the machine in short slices (the others are paused with SIGSTOP), so load from outside falls on all of
them alike. The budget counts each process's own CPU time (all its threads, data loading included; the
`cpu_seconds` column of log.csv), not wall time. Each variant's schedule (its lr decay) is laid over the
number of steps its budget allows, from a short calibration run, as a run of that length would be.

Variants are named NAME or NAME+CHANGE+...: an architecture from ARCHITECTURES, then recipe changes from
CHANGES applied on top (later flags win), e.g. `unshuffle+fft+cosine`. Completed runs in --out are reused
and interrupted ones resumed, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchdoc import REPO, git_commit, replace_section, script_command  # noqa: E402
from PIL import Image  # noqa: E402

from sagan_restore.checkpoint import list_checkpoints  # noqa: E402
from sagan_restore.devices import uses_bf16  # noqa: E402
from sagan_restore.evaluation.machine import cpu_name  # noqa: E402
from sagan_restore.evaluation.protocol import Condition, bicubic_input, protocol_noisy, score  # noqa: E402
from sagan_restore.evaluation.report import markdown_table  # noqa: E402
from sagan_restore.infer.loading import load_model  # noqa: E402
from sagan_restore.metrics import psnr  # noqa: E402
from sagan_restore.models.generator import count_parameters, gflops_per_megapixel  # noqa: E402
from sagan_restore.train import load_run_config  # noqa: E402

# The data and degradations of recipes/denoise.sh; the variants change the network and the optimisation.
DENOISE_RECIPE = ["--task", "denoise", "--sigma", "0-55", "--quantize-share", "0.5", "--grey-share", "0.15",
                  "--dead-leaves", "0.15", "--crop", "96", "--batch", "8", "--adv-weight", "0", "--lr", "3e-4",
                  "--beta1", "0.9", "--lr-decay-from", "0.5", "--seed", "0", "--precision", "auto"]
# Those of recipes/sr2.sh and sr4.sh (clean bicubic downscaling, every LR input 8-bit); --scale is added.
SR_RECIPE = ["--task", "sr", "--dead-leaves", "0.1", "--quantize-share", "1", "--crop", "96", "--batch", "16",
             "--adv-weight", "0", "--lr", "4e-4", "--beta1", "0.9", "--lr-decay-from", "0.5", "--seed", "0",
             "--precision", "auto"]

ARCHITECTURES = {
    "res": ["--width", "32", "--depth", "3", "--blocks", "1"],  # the shipped body: one ResBlock per level
    "res-coarse": ["--width", "32", "--depth", "3", "--blocks", "1,1,2,4"],  # more blocks where they are cheap
    # NAFNet's blocks, trained as NAFNet is: lr 1e-3, betas (0.9, 0.9), cosine decay over the whole run.
    "naf": ["--block", "naf", "--width", "32", "--depth", "3", "--blocks", "1,1,2,4", "--lr", "1e-3",
            "--beta2", "0.9", "--lr-schedule", "cosine", "--lr-decay-from", "0"],
    # FFDNet's stem: the U-Net starts at half resolution with 64 channels.
    "unshuffle": ["--unshuffle", "2", "--width", "64", "--depth", "2", "--blocks", "1"],
    "unshuffle-coarse": ["--unshuffle", "2", "--width", "64", "--depth", "2", "--blocks", "1,2,4"],
    # The SR study's finding carried over to FFDNet's stem: extra blocks at the top level (here half the
    # input resolution), where a 3x3 convolution sees the finest detail the network keeps.
    "unshuffle-fine": ["--unshuffle", "2", "--width", "64", "--depth", "2", "--blocks", "2,1,1"],
    "unshuffle-fine48": ["--unshuffle", "2", "--width", "48", "--depth", "2", "--blocks", "4,1,1"],
    "naf-unshuffle": ["--block", "naf", "--unshuffle", "2", "--width", "64", "--depth", "2", "--blocks", "2,2,4",
                      "--lr", "1e-3", "--beta2", "0.9", "--lr-schedule", "cosine", "--lr-decay-from", "0"],
    # Super-resolution (--task sr). The shipped sr2/sr4 body: the U-Net at the LR resolution, one block a level.
    "sr": ["--width", "32", "--depth", "3", "--blocks", "1"],
    # Light SR networks (SPAN, RLFN, IMDN) spend their FLOPs at the input resolution, where each output
    # pixel's detail is decided: 4 blocks there in the encoder and 4 in the decoder, the coarse levels (and
    # the SAGAN block at the bottleneck) kept for context.
    "sr-fine": ["--width", "32", "--depth", "3", "--blocks", "4,1,1,1"],
    # Wider at the input resolution, one level fewer below it (attention at 1/4 of the LR resolution).
    "sr-fine48": ["--width", "48", "--depth", "2", "--blocks", "4,1,1"],
    "sr-naf": ["--block", "naf", "--width", "32", "--depth", "3", "--blocks", "4,1,1,1"],
}
CHANGES = {
    # NAFNet's optimisation (lr 1e-3, betas (0.9, 0.9), cosine over the whole run) on another body.
    "naf-recipe": ["--lr", "1e-3", "--beta2", "0.9", "--lr-schedule", "cosine", "--lr-decay-from", "0"],
    "charbonnier": ["--pixel-loss", "charbonnier"],
    "fft": ["--fft-weight", "0.05"],
    "cosine": ["--lr-schedule", "cosine", "--lr-decay-from", "0"],
    "lr1e-3": ["--lr", "1e-3"],
    "lr5e-4": ["--lr", "5e-4"],
    # Crops at equal pixels per step (96 x 96 x 8 = 73,728): 64 x 64 x 18; 128 x 128 x 4 is 65,536.
    "crop64": ["--crop", "64", "--batch", "18"],
    "crop128": ["--crop", "128", "--batch", "4"],
    "no-attention": ["--attn-levels", "none"],
    # SR: ESPCN's and SPAN's tail (one conv at the input resolution, one pixel shuffle) instead of EDSR's.
    "upsample-once": ["--upsampler", "once"],
    "noise-map": ["--noise-map"],
    "fp32": ["--precision", "fp32"],
}
CURVE_SIGMA = 25.0  # denoising curves are scored at this sigma, SR curves at the task's scale
FINAL_SIGMAS = (15.0, 25.0, 50.0)
VAL_CROP = 384  # the centre of each held-out photo: six of them, 0.9 megapixels in all
# CPU time per step is measured between these steps of a short run. The first steps decode images into the
# cache and build oneDNN's kernels: a 10..30 window overestimated a step's cost by 16-32%, so the runs
# used 75-86% of their budget (the table's CPU s column shows what each used).
CALIBRATION_STEPS = (30, 80)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("denoise", "sr"), default="denoise")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), default=2, help="the upscaling factor of --task sr")
    p.add_argument("--variants", default="res,res-coarse,naf,unshuffle",
                   help=f"comma-separated NAME[+CHANGE...]; names: {list(ARCHITECTURES)}, changes: {list(CHANGES)}")
    p.add_argument("--budget-minutes", type=float, default=20.0, help="process CPU minutes per variant")
    p.add_argument("--slice", type=float, default=30.0, help="wall seconds each run gets per turn")
    p.add_argument("--threads", type=int, default=2, help="torch threads of every run (the same for all)")
    p.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus", help="built by recipes/build_corpus.py")
    p.add_argument("--val", type=Path, default=REPO / "data" / "val_photos",
                   help="held-out photos (recipes/validation_photos.py); never the test sets")
    p.add_argument("--points", type=int, default=8, help="checkpoints per run, scored for the curve")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "budget")
    p.add_argument("--name", help="names the plot and the section in docs/BENCHMARKS.md (default: denoise, sr2...)")
    p.add_argument("--no-doc", action="store_true", help="print the section, leave docs/ alone")
    args = p.parse_args(argv)
    args.name = args.name or ("denoise" if args.task == "denoise" else f"sr{args.scale}")
    return args


def variant_flags(variant: str) -> list[str]:
    name, *changes = variant.split("+")
    if name not in ARCHITECTURES or any(c not in CHANGES for c in changes):
        sys.exit(f"budget.py: unknown variant {variant!r}; names: {list(ARCHITECTURES)}, changes: {list(CHANGES)}")
    return [*ARCHITECTURES[name], *(flag for c in changes for flag in CHANGES[c])]


def train_command(variant: str, args, *, out: Path, iters: int, every: int) -> list[str]:
    data = ["--clean", f"{args.corpus}/photos", "--clean", f"{args.corpus}/textures:0.3"]
    recipe = DENOISE_RECIPE if args.task == "denoise" else [*SR_RECIPE, "--scale", str(args.scale)]
    return ["sagan-restore", "train", *data, *recipe, *variant_flags(variant), "--iters", str(iters),
            "--save-every", str(every), "--keep", str(args.points + 2), "--sample-every", str(iters),
            "--log-every", "5" if iters < 100 else "20", "--no-progress", "--out", str(out)]


def run_env(args) -> dict:
    threads = str(args.threads)
    return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


def read_log(run: Path) -> list[dict]:
    path = run / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("cpu_seconds")]


def calibrate(variant: str, args) -> float:
    """CPU seconds per training step of the variant, from a short run (cached in OUT/calibration.json)."""
    cache = args.out / "calibration.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if variant not in known:
        run = args.out / "calibration" / variant.replace("+", "_")
        rows = read_log(run)
        if not rows or int(rows[-1]["step"]) < CALIBRATION_STEPS[1]:
            shutil.rmtree(run, ignore_errors=True)
            command = train_command(variant, args, out=run, iters=CALIBRATION_STEPS[1], every=10**6)
            subprocess.run(command, check=True, env=run_env(args), stdout=subprocess.DEVNULL)
        rows = {int(r["step"]): float(r["cpu_seconds"]) for r in read_log(run)}
        first, last = CALIBRATION_STEPS
        known[variant] = (rows[last] - rows[first]) / (last - first)
        cache.write_text(json.dumps(known, indent=2))
    return known[variant]


def run_dir(args, variant: str) -> Path:
    return args.out / "runs" / variant.replace("+", "_")


def finished(run: Path) -> bool:
    return (run / "generator.safetensors").exists()


def train_interleaved(variants: list[str], iters: dict[str, int], args) -> None:
    """Run every unfinished variant in its own process, one at a time in slices of --slice seconds, until
    each has finished its steps (or overrun its budget by 15%, which stops it with a checkpoint)."""
    budget = args.budget_minutes * 60
    procs: dict[str, subprocess.Popen] = {}
    for v in variants:
        run = run_dir(args, v)
        if finished(run):
            continue
        every = max(iters[v] // args.points, 1)
        command = (["sagan-restore", "train", "--resume", str(run), "--no-progress"] if (run / "config.json").exists()
                   else train_command(v, args, out=run, iters=iters[v], every=every))
        run.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out / f"{run.name}.out", "a") as log:  # the child keeps its own copy of the handle
            procs[v] = subprocess.Popen(command, env=run_env(args), stdout=log, stderr=subprocess.STDOUT)
        procs[v].send_signal(signal.SIGSTOP)  # each waits for its turn, start-up included
    while procs:
        for v, proc in list(procs.items()):
            proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout=args.slice)
            except subprocess.TimeoutExpired:
                rows = read_log(run_dir(args, v))
                if rows and float(rows[-1]["cpu_seconds"]) > 1.15 * budget:
                    proc.send_signal(signal.SIGTERM)  # saves a checkpoint and exits
                    proc.wait()
                else:
                    proc.send_signal(signal.SIGSTOP)
                    continue
            del procs[v]
            if proc.returncode not in (0, 128 + signal.SIGTERM):
                log = args.out / f"{run_dir(args, v).name}.out"
                sys.exit(f"budget.py: the run of {v} failed (exit {proc.returncode}); see {log}")
            print(f"{v}: done", flush=True)


def load_val(folder: Path) -> list[np.ndarray]:
    photos = sorted(folder.glob("*.png"))
    if not photos:
        sys.exit(f"budget.py: no held-out photos in {folder}; run recipes/validation_photos.py --out {folder}")
    crops = []
    for path in photos:
        img = np.asarray(Image.open(path).convert("RGB"))
        h, w = img.shape[:2]
        s = min(VAL_CROP, h, w) // 16 * 16
        top, left = (h - s) // 2, (w - s) // 2
        crops.append(img[top:top + s, left:left + s])
    return crops


@torch.no_grad()
def val_psnr(model, photos: list[np.ndarray], sigma: float, *, quantized: bool = False) -> float:
    """Mean PSNR over the held-out crops with protocol noise (image i: default_rng(i)); outputs rounded."""
    scores = []
    for i, clean in enumerate(photos):
        noisy = protocol_noisy(clean, sigma, i)
        if quantized:
            noisy = np.clip(np.round(noisy), 0, 255)
        x = torch.from_numpy((noisy / 255).astype(np.float32)).permute(2, 0, 1)[None]
        out = model(x)[0].permute(1, 2, 0).numpy()
        out = np.round(np.clip(out, 0, 1) * 255)
        scores.append(psnr(out, clean.astype(np.float64), data_range=255))
    return float(np.mean(scores))


@torch.no_grad()
def val_sr_psnr(model, photos: list[np.ndarray], scale: int) -> float:
    """Mean Y-PSNR over the held-out crops downscaled as the SR protocol does for sets without LR files
    (Pillow's antialiased bicubic, 8 bits), `scale` pixels shaved: Set5's scoring, on photos we may tune on."""
    scores = []
    for hr in photos:
        x = torch.from_numpy(bicubic_input(hr, scale)).permute(2, 0, 1)[None]
        out = model(x)[0].permute(1, 2, 0).numpy()
        scores.append(score(out, hr, Condition("sr", scale=scale))[0])
    return float(np.mean(scores))


def curve_score(model, photos: list[np.ndarray], args) -> float:
    if args.task == "sr":
        return val_sr_psnr(model, photos, args.scale)
    return val_psnr(model, photos, CURVE_SIGMA)


def curve_label(args) -> str:
    return f"x{args.scale}, Y" if args.task == "sr" else f"sigma {CURVE_SIGMA:g}"


def final_scores(model, photos: list[np.ndarray], args) -> dict[str, float]:
    """The table's PSNR columns, label -> dB."""
    if args.task == "sr":
        return {f"x{args.scale} Y-PSNR": val_sr_psnr(model, photos, args.scale)}
    return {**{f"sigma {s:g}": val_psnr(model, photos, s) for s in FINAL_SIGMAS},
            "sigma 25, 8-bit": val_psnr(model, photos, 25.0, quantized=True)}


@torch.no_grad()
def inference_seconds_per_mp(model, size: int = 512) -> float:
    x = torch.rand(1, model.cfg.in_channels, size, size)
    model(x)
    times = []
    for _ in range(3):
        began = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - began)
    return float(np.median(times)) / (size * size / 1e6)


def score_run(variant: str, args, photos: list[np.ndarray]) -> dict:
    """The curve (the task's PSNR at each checkpoint, against its CPU seconds) and the final scores."""
    run = run_dir(args, variant)
    cache = run / "budget_scores.json"
    if cache.exists() and "scores" in (cached := json.loads(cache.read_text())):
        return cached
    curve = []
    for path in list_checkpoints(run):
        state = torch.load(path, map_location="cpu", weights_only=True)
        model, _ = load_model(path)
        curve.append((float(state["cpu_seconds"]), int(state["step"]), curve_score(model, photos, args)))
    model, _ = load_model(list_checkpoints(run)[-1])
    cfg = load_run_config(run)
    rows = read_log(run)
    steps, cpu = int(rows[-1]["step"]), float(rows[-1]["cpu_seconds"])
    result = {
        "variant": variant, "flags": variant_flags(variant), "curve": sorted(curve),
        "steps": steps, "cpu_seconds": cpu, "steps_per_cpu_s": steps / cpu,
        "scores": final_scores(model, photos, args),
        "params": count_parameters(model), "gflops_per_mp": gflops_per_megapixel(model),
        "inference_s_per_mp": inference_seconds_per_mp(model),
        "bf16": uses_bf16(cfg.precision, torch.device("cpu")),
    }
    cache.write_text(json.dumps(result, indent=2))
    return result


def plot(results: list[dict], out: Path, title: str, ylabel: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        cpu, _, db = zip(*r["curve"]) if r["curve"] else ((), (), ())
        ax.plot(np.array(cpu) / 60, db, marker="o", markersize=3, label=r["variant"])
    ax.set_xlabel("process CPU minutes")
    ax.set_ylabel(f"held-out PSNR, {ylabel} (dB)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def task_description(args) -> str:
    if args.task == "sr":
        return (f"`recipes/sr{args.scale}.sh`'s data and degradations (x{args.scale}, Pillow's antialiased "
                "bicubic, every LR input 8-bit; 96-pixel HR crops, batch 16)")
    return ("`recipes/denoise.sh`'s data and degradations (blind sigma 0..55, half the inputs 8-bit, 15% "
            "grey)")


def scoring_description(args) -> str:
    if args.task == "sr":
        return (f"downscaled x{args.scale} as the SR protocol does (bicubic, 8 bits), BT.601 Y-PSNR with "
                f"{args.scale} pixels shaved, outputs rounded to 8 bits")
    return "with protocol noise, outputs rounded to 8 bits; 8-bit = noisy input clipped and rounded"


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        variant_flags(v)
    args.out.mkdir(parents=True, exist_ok=True)
    photos = load_val(args.val)
    torch.set_num_threads(args.threads)
    budget = args.budget_minutes * 60
    iters = {}
    for v in variants:
        per_step = calibrate(v, args)
        iters[v] = max(int(budget / per_step), args.points)
        print(f"{v}: {per_step:.3f} CPU s/step -> {iters[v]} steps in {args.budget_minutes:g} CPU minutes", flush=True)
    train_interleaved(variants, iters, args)
    results = [score_run(v, args, photos) for v in variants]
    figure = REPO / "docs" / f"budget_{args.name}.png"
    plot(results, figure if not args.no_doc else args.out / figure.name,
         f"{args.name}: equal CPU budgets ({args.budget_minutes:g} CPU min each)", curve_label(args))
    header = ["variant", "bf16", "steps", "CPU s", "steps / CPU s", "params", "GFLOPs/MP", "inference s/MP",
              *results[0]["scores"]]
    rows = [[r["variant"], "yes" if r["bf16"] else "no", str(r["steps"]), f"{r['cpu_seconds']:.0f}",
             f"{r['steps_per_cpu_s']:.2f}",
             f"{r['params'] / 1e6:.2f} M", f"{r['gflops_per_mp']:.0f}", f"{r['inference_s_per_mp']:.2f}",
             *(f"{db:.2f}" for db in r["scores"].values())] for r in results]
    threads = f"{args.threads} thread" + ("s" if args.threads > 1 else "")
    section = "\n".join([
        f"## Equal CPU budgets: {args.name}",
        "",
        f"Generated by `benchmarks/budget.py` on commit {git_commit()}: `{script_command()}`",
        "",
        f"Each variant trained with {task_description(args)} for a budget of {args.budget_minutes:g} minutes "
        f"of its own process CPU time ({threads} of {cpu_name()}; the runs took turns in {args.slice:g}-second "
        "slices): the steps that budget allows, from a short calibration run, with the lr schedule laid over "
        "them. `CPU s` is what each run used in the end; the plot compares the variants at equal CPU "
        "time all along. Final PSNR (dB) on the centre crops of the "
        f"held-out photos in `{args.val.name}` (recipes/validation_photos.py), {scoring_description(args)}. "
        "Inference s/MP: one 512 x 512 float32 forward (seconds per input megapixel), median of 3, same "
        "threads. Variant flags are in `benchmarks/budget.py`. A process's CPU time per step "
        "grows when other work shares the cores (caches, memory bandwidth): variants run in different sessions "
        "(see their steps / CPU s) are compared less tightly than those run side by side.",
        "",
        f"![validation PSNR against CPU time]({figure.relative_to(REPO / 'docs')})",
        "",
        markdown_table(header, rows),
    ])
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(section)
    if not args.no_doc:
        replace_section(f"budget-{args.name}", section)


if __name__ == "__main__":
    main()
