#!/usr/bin/env python3
"""Package a trained generator as a shipped model: src/sagan_restore/weights/NAME.safetensors.

    python recipes/package_model.py RUN_DIR --name denoise --recipe recipes/denoise.sh \
        [--scores eval/results.json] [--hardware "2-core CPU"] [--gan | --light | --delta-of BASE]

--gan packages a GAN fine-tune of the model as its realism variant, NAME_gan.safetensors, which
`enhance --realism` interpolates towards; --light a fine-tune that removes less as NAME_light.safetensors,
which `enhance --strength` blends with. Either is stored as its difference from the shipped NAME model in
4 bits per weight (28% of float16's size; all shipped weights must stay under 32 MB); its check allows
0.05 dB, since such a variant is not there for its PSNR, and its scores are measured on the stored weights.
--delta-of BASE stores a fine-tune of another shipped model (real-sr4 of sr4, real-sr2 of sr2) the same
way, as its difference from BASE.safetensors beside it, checked to the fidelity models' 0.01 dB; 4-bit codes
with groups of 32 values per scale are tried first, then 16 and 8, then 8-bit codes (53% of float16's size,
for a fine-tune that moved far, as real-restore from denoise).

Weights are stored in float16 (half the size); the script checks that this moves the output by less than
0.01 dB on scikit-image's held-out photo before writing. The metadata records the recipe, the steps,
the training wall time (from the run's log.csv), parameter count, GFLOPs per megapixel and, if given,
the scores measured by `sagan-restore evaluate` (its results.json), so `sagan-restore models` and the
model card can show them.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sagan_restore import baselines, checkpoint
from sagan_restore.data.corpus import validation_photo_path
from sagan_restore.data.degradations import downscale, gaussian_noise
from sagan_restore.infer.loading import load_model
from sagan_restore.io import read_image
from sagan_restore.metrics import psnr
from sagan_restore.models import zoo
from sagan_restore.models.generator import count_parameters, gflops_per_megapixel


def training_seconds(run: Path) -> float | None:
    log = run / "log.csv"
    if not log.exists():
        return None
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["seconds"]) if rows else None


def storage_loss_db(model, stored_model) -> float:
    """PSNR on the held-out photo (noisy at sigma 25, or downscaled for SR) lost by compressed storage."""
    clean = read_image(validation_photo_path()).pixels
    scale = model.cfg.scale
    if scale > 1:
        clean = clean[: clean.shape[0] // scale * scale, : clean.shape[1] // scale * scale]
        degraded = downscale(clean, scale)
    else:
        degraded = gaussian_noise(clean, 25, np.random.default_rng(0))
    x = torch.from_numpy(degraded.transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        exact = model(x)[0].numpy().transpose(1, 2, 0)
        stored = stored_model(x)[0].numpy().transpose(1, 2, 0)
    return psnr(np.clip(exact, 0, 1), clean) - psnr(np.clip(stored, 0, 1), clean)


# What load_model adds to a model's info when it blends a variant in at load time: facts about that load
# (with file paths on the packaging machine), not about the weights, so they stay out of the metadata.
LOAD_TIME_KEYS = ("strength", "strength_model", "realism", "realism_model")
# (bits per value, values per float16 scale) of a difference file, tried in this order: smallest first
DELTA_STORAGE = ((4, 32), (4, 16), (4, 8), (8, 32))
BASELINES = {*baselines.DENOISERS, *baselines.UPSCALERS}  # every method of `evaluate --baselines`


def summarise_scores(results_json: Path) -> list[dict]:
    """The model's own records of an evaluate run (the baselines stay in the model card)."""
    records = json.loads(results_json.read_text())
    records = records["records"] if isinstance(records, dict) else records
    keep = ("set", "task", "sigma", "scale", "realism", "psnr", "ssim", "sharpness", "sec_per_mp", "n_images",
            "input")
    return [{k: r[k] for k in keep if r.get(k) is not None} for r in records if r["method"] not in BASELINES]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder, .safetensors or .pt checkpoint")
    parser.add_argument("--name", required=True, choices=sorted(zoo.PRETRAINED))
    parser.add_argument("--recipe", required=True, help="the committed recipe that trained it")
    parser.add_argument("--scores", type=Path, help="results.json from sagan-restore evaluate")
    parser.add_argument("--hardware", default="2-core CPU (AMD EPYC), no GPU")
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--gan", action="store_true", help="package the realism (GAN) variant of --name")
    variant.add_argument("--light", action="store_true",
                         help="package the light variant of --name that --strength blends with")
    parser.add_argument("--delta-of", choices=sorted(zoo.PRETRAINED),
                        help="store as the 4-bit difference from this shipped model, which it was fine-tuned from")
    parser.add_argument("--bits", type=int, choices=[4, 8],
                        help="codes of a difference file, where the check's one photo is not the model's task "
                             "(real-restore: camera noise, checked at Gaussian sigma 25); default: the smallest "
                             "storage that passes the check")
    parser.add_argument("--train-seconds", type=float,
                        help="total training wall time, where the run's log.csv clock restarted on a resume "
                             "(checkpoints from before the robustness work did not store it)")
    args = parser.parse_args(argv)

    model, info = load_model(args.run, realism=0)
    pretrained = zoo.PRETRAINED[args.name]
    suffix = "_gan" if args.gan else "_light" if args.light else ""
    out = pretrained.path.with_name(f"{args.name}{suffix}.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    run_dir = args.run if args.run.is_dir() else args.run.parent.parent
    info = {
        **{k: v for k, v in info.items() if k not in LOAD_TIME_KEYS},
        "name": args.name + suffix,
        "steps": info.get("steps", info.get("step")),
        "recipe": args.recipe,
        "hardware": args.hardware,
        "train_seconds": args.train_seconds or training_seconds(run_dir) or info.get("train_seconds"),
        "parameters": count_parameters(model),
        "gflops_per_mp": round(gflops_per_megapixel(model), 1),
        "scores": summarise_scores(args.scores) if args.scores else info.get("scores", []),
    }
    allowed = 0.05 if suffix else 0.01
    if suffix or args.delta_of:
        base = pretrained.path if suffix else zoo.PRETRAINED[args.delta_of].path
        storage = [(bits, group) for bits, group in DELTA_STORAGE if args.bits in (None, bits)]
        for bits, group in storage:  # the smallest storage that keeps PSNR within `allowed`
            checkpoint.save_generator_delta(out, model, base, info=info, group=group, bits=bits)
            loss = storage_loss_db(model, checkpoint.load_generator(out)[0])
            if abs(loss) < allowed:
                break
    else:
        checkpoint.save_generator(out, model, info=info, half=True)
        loss = storage_loss_db(model, checkpoint.load_generator(out)[0])
    if abs(loss) >= allowed:
        out.unlink()
        print(f"compressed storage moves PSNR by {loss:.3f} dB: not packaged", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, storage changes PSNR by {loss:+.4f} dB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
