"""Which GAN end for `real-restore`: the discriminators and losses of recipes/real_restore_gan.sh, each
fine-tuned from the shipped fidelity model for the same steps, then scored on the held-out x1 real-world
sets beside the fidelity model and the input: PSNR, SSIM, the sharpness ratio (the realism end should
bring it towards 1.0 at no more than 2 dB below the fidelity end), JPEG blockiness, CPU time. Rewrites
the `gan-ends-real-restore` section of docs/BENCHMARKS.md and writes docs/gan_ends_real_restore.png.

    python recipes/real_world_sets.py --photos data/val_photos --out data/real_world
    python benchmarks/gan_ends.py --variants patch-hp,patch,patch-hp+fm,unet-hp --iters 1400

Runs already finished in --out are reused, so an interrupted study continues.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
from pathlib import Path

from benchdoc import REPO, git_commit, replace_section, script_command

from sagan_restore.config import EvaluateConfig
from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.methods import baseline_method, model_method
from sagan_restore.evaluation.report import figure_name, markdown_table, write_report
from sagan_restore.evaluation.runner import evaluate

# name -> flags laid over recipes/real_restore_gan.sh's (a PatchGAN with instance norm judging the output's
# 1-pixel high-pass, unconditional, after a D-only warm-up).
VARIANTS = {
    "patch-hp": [],
    "patch": ["--d-highpass", "0"],  # the same D on whole images
    "patch-hp+fm": ["--fm-weight", "10"],  # plus feature matching at pix2pixHD's weight
    "unet-hp": ["--d-arch", "unet", "--d-norm", "none"],  # Real-ESRGAN's U-Net D with spectral norm
}
SEVERITIES = ("light", "medium", "heavy")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="patch-hp,patch,patch-hp+fm,unet-hp",
                   help=f"comma-separated, of {list(VARIANTS)}")
    p.add_argument("--iters", type=int, default=1400, help="steps of every variant, D-only warm-up included")
    p.add_argument("--d-warmup", type=int, default=400, help="D-only steps at the start")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--corpus", type=Path, default=REPO / "data" / "corpus")
    p.add_argument("--sets", type=Path, default=REPO / "data" / "real_world")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gan_ends")
    p.add_argument("--no-doc", action="store_true", help="print the section, leave docs/ alone")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}; choose from {list(VARIANTS)}")
    return args


def run_folder(args, variant: str) -> Path:
    return args.out / variant.replace("+", "_")


def train(variant: str, args) -> None:
    run = run_folder(args, variant)
    if (run / "generator.safetensors").exists():
        return
    shutil.rmtree(run, ignore_errors=True)  # an interrupted fine-tune this short is cheaper to redo
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"{run.name}.out", "w") as log:
        subprocess.run(["bash", str(REPO / "recipes" / "real_restore_gan.sh"), str(run), str(args.corpus),
                        str(args.sets), str(args.iters), str(args.d_warmup), "20", *VARIANTS[variant]],
                       check=True, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)


def cpu_seconds(run: Path) -> float:
    with open(run / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("cpu_seconds")]
    return float(rows[-1]["cpu_seconds"])


def main(argv=None) -> None:
    args = parse_args(argv)
    for v in args.variants:
        train(v, args)
        print(f"{v}: trained", flush=True)
    sets = tuple(args.sets / f"x1_{s}" for s in SEVERITIES)
    cfg = EvaluateConfig(sets=sets, task="denoise", threads=args.threads, figure_images=3)
    methods = [baseline_method("noisy", "denoise"), model_method("real-restore", "real-restore (fidelity)",
                                                                 device="cpu", realism=0)]
    methods += [model_method(str(run_folder(args, v) / "generator.safetensors"), f"GAN: {v}", device="cpu")
                for v in args.variants]
    report = evaluate(cfg, progress=True, methods=methods)
    written_to = args.out / "eval"
    write_report(report, written_to, overwrite=True)
    by = {(r.method, r.set): r for r in report.records}
    names = list(dict.fromkeys(r.method for r in report.records))
    set_names = [s.name for s in sets]
    cpu = {f"GAN: {v}": f"{cpu_seconds(run_folder(args, v)) / 60:.0f}" for v in args.variants}
    rows = [[m, cpu.get(m, ""), *(f"{by[m, s].psnr:.2f}" for s in set_names),
             *(f"{by[m, s].sharpness:.2f}" for s in set_names), *(f"{by[m, s].blockiness:.2f}" for s in set_names)]
            for m in names]
    rows.append(["ground truth", "", *("" for _ in set_names), *("1.00" for _ in set_names),
                 *(f"{by[names[0], s].target_blockiness:.2f}" for s in set_names)])
    header = ["method", "CPU min", *(f"{s} PSNR" for s in SEVERITIES), *(f"{s} sharpness" for s in SEVERITIES),
              *(f"{s} blockiness" for s in SEVERITIES)]
    shown = next(c for c in report.comparisons if c.set == "x1_medium" and c.rows)
    figure = REPO / "docs" / "gan_ends_real_restore.png"
    section = "\n".join([
        "## GAN ends of `real-restore`: which discriminator",
        "",
        f"Generated by `benchmarks/gan_ends.py` on commit {git_commit()} ({cpu_name()}): `{script_command()}`",
        "",
        f"Each variant is `recipes/real_restore_gan.sh` with its discriminator flags, {args.iters} steps from "
        f"the shipped `real-restore`, the first {args.d_warmup} D alone (batch 8, 96-pixel crops, L1 weight 20, "
        f"BCE weight 1, G lr 1e-4, D lr 2e-4; {args.threads} thread(s), CPU minutes of the training process). "
        "Scored on the held-out x1 real-world sets (camera noise + JPEG, recipes/real_world_sets.py), all "
        "channels; sharpness ratio: the output's high-frequency energy over the ground truth's (1.0 = as "
        "detailed); blockiness: 1.0 = no JPEG blocks. `patch`: pix2pix's PatchGAN with instance norm, "
        "unconditional; `-hp`: judging the image minus its 1-pixel Gaussian blur (`--d-highpass 1`); `unet`: "
        "Real-ESRGAN's U-Net discriminator with spectral norm; `+fm`: feature matching on D's features, "
        "weight 10.",
        "",
        markdown_table(header, rows),
        "",
        f"Crops of the `medium` set (input | each method | ground truth): ![GAN ends]({figure.name})",
    ])
    print(section)
    if not args.no_doc:
        shutil.copyfile(written_to / figure_name(shown), figure)
        replace_section("gan-ends-real-restore", section)


if __name__ == "__main__":
    main()
