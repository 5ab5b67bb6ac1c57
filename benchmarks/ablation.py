"""Architecture ablation of the denoiser at one training budget: the U-Net with and without its
self-attention blocks (and any other variants named). Each variant is trained from scratch with the same
data, degradations, steps, batch, crop and seed, then scored on McMaster (sigma 25, the published protocol)
and on held-out scikit-image photos. Rewrites the `ablation` section of docs/BENCHMARKS.md.

    python recipes/validation_photos.py --out data/val_photos
    python benchmarks/ablation.py --corpus data/corpus --iters 2000 --val data/val_photos   # ~1 h, 1 core

Runs already complete in --out are reused, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from benchdoc import REPO, git_commit, replace_section, script_command

from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.report import markdown_table
from sagan_restore.infer.loading import load_model
from sagan_restore.models.attention import SelfAttention2d
from sagan_restore.models.generator import count_parameters, gflops_per_megapixel

# Variant name -> the train flags that differ from the shared recipe.
VARIANTS = {
    "attention": ["--attn-levels", "3"],  # the shipped design: attention at the bottleneck only
    "no-attention": ["--attn-levels", "none"],
    "attention-2-3": ["--attn-levels", "2,3"],  # also one level up (4x the tokens)
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="attention,no-attention", help=f"comma-separated, from {list(VARIANTS)}")
    p.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus", help="built by recipes/build_corpus.py")
    p.add_argument("--iters", type=int, default=2000)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--root", type=Path, default=REPO.parent / "shared" / "benchmarks", help="test sets")
    p.add_argument("--val", type=Path, help="also score on this folder of held-out clean photos")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "ablation")
    p.add_argument("--no-doc", action="store_true")
    return p.parse_args(argv)


def shared_recipe(args) -> list[str]:
    """recipes/denoise.sh at a smaller budget; bf16 autocast to halve CPU time."""
    return ["--clean", f"{args.corpus}/photos", "--clean", f"{args.corpus}/textures:0.3", "--dead-leaves", "0.15",
            "--task", "denoise", "--sigma", "0-55", "--quantize-share", "0.5", "--grey-share", "0.15",
            "--width", "32", "--depth", "3", "--blocks", "1", "--crop", str(args.crop), "--batch", str(args.batch),
            "--adv-weight", "0", "--lr", "3e-4", "--beta1", "0.9", "--lr-decay-from", "0.5",
            "--iters", str(args.iters), "--seed", "0", "--precision", "bf16", "--save-every", "500",
            "--sample-every", "500", "--no-progress"]


def train(variant: str, args) -> Path:
    run = args.out / variant
    done = (run / "generator.safetensors").exists() and _last_step(run) >= args.iters
    if not done:
        command = ["sagan-restore", "train", *(["--resume", str(run)] if (run / "checkpoints").exists() else
                                              ["--out", str(run), *shared_recipe(args), *VARIANTS[variant]])]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return run


def _last_step(run: Path) -> int:
    log = run / "log.csv"
    if not log.exists():
        return 0
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["step"]) if rows else 0


def train_seconds(run: Path) -> float:
    with open(run / "log.csv", newline="") as f:
        return float(list(csv.DictReader(f))[-1]["seconds"])


def score(run: Path, test_set: Path, out: Path) -> float:
    """Mean PSNR at sigma 25 (unclipped protocol input) from `sagan-restore evaluate`."""
    if not (out / "results.json").exists():
        subprocess.run(["sagan-restore", "evaluate", "--model", str(run), "--set", str(test_set), "--sigma", "25",
                        "--baselines", "none", "--threads", "1", "--no-progress", "--figure-images", "0",
                        "--out", str(out)], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                       stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["records"][0]["psnr"]


def gates(run: Path) -> str:
    """The learned attention gates (gamma, 0 at the start): how much attention output the model uses."""
    model, _ = load_model(run)
    values = [f"{m.gamma.item():+.3f}" for m in model.modules() if isinstance(m, SelfAttention2d)]
    return ", ".join(values) or "none"


def main(argv=None) -> None:
    args = parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"ablation.py: unknown variants {unknown}; choose from {list(VARIANTS)}")
    rows = []
    for variant in variants:
        run = train(variant, args)
        model, _ = load_model(run)
        row = [variant, f"{count_parameters(model) / 1e6:.3f} M", f"{gflops_per_megapixel(model):.1f}",
               f"{train_seconds(run):.0f}", gates(run),
               f"{score(run, args.root / 'McMaster', args.out / 'eval' / variant / 'McMaster'):.2f}"]
        if args.val:
            row.append(f"{score(run, args.val, args.out / 'eval' / variant / 'val'):.2f}")
        rows.append(row)
        print(row, flush=True)
    header = ["variant", "parameters", "GFLOPs/MP", "train s", "attention gates", "McMaster sigma 25 dB"]
    header += [f"{args.val.name} sigma 25 dB"] if args.val else []
    section = "\n".join([
        "## Ablation: self-attention in the denoiser",
        "",
        f"Generated by `benchmarks/ablation.py` on commit {git_commit()}: `{script_command()}`",
        "",
        f"Each variant trained from scratch with `recipes/denoise.sh`'s data and degradations (blind sigma "
        f"0..55, half the inputs 8-bit, 15% grey) at one budget: {args.iters} steps of batch {args.batch}, "
        f"{args.crop}-pixel crops, bf16, seed 0, one CPU thread of {cpu_name()} (train s is wall time with "
        "other jobs sharing the machine, so compare it only loosely). Scored with `sagan-restore evaluate`, "
        "unclipped protocol noise, mean PSNR.",
        "",
        markdown_table(header, rows),
    ])
    print(section)
    if not args.no_doc:
        replace_section("ablation", section)


if __name__ == "__main__":
    main()
