"""The real-world models on the synthetic real-world sets: PSNR, SSIM, sharpness and JPEG blockiness of
`real-sr4`, `real-sr2` and `real-restore` beside bicubic and the clean-data models they replace, every set
its own severity, and a crops figure per scale (input | each method | ground truth). At x4 Real-ESRGAN
x4plus, the GAN model people run on such photos, is scored beside them where the `peers-sr` extra is
installed. Rewrites the `real-world` section of docs/BENCHMARKS.md and writes docs/real_world_x4.png, _x2.png
and _x1.png.

    python recipes/validation_photos.py --out data/val_photos
    python recipes/real_world_sets.py --photos data/val_photos --out data/real_world
    python benchmarks/real_world.py --threads 1

The sets are made from held-out photos, never from the shared test sets. A model with a GAN variant is
scored at realism 0 and 1, so the table shows both ends of its slider.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchdoc import REPO, git_commit, replace_section, runnable, script_command

from sagan_restore.config import EvaluateConfig
from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.methods import baseline_method, model_methods
from sagan_restore.evaluation.report import figure_name, markdown_table, method_notes, write_report
from sagan_restore.evaluation.runner import evaluate
from sagan_restore.models import zoo


@dataclass(frozen=True)
class Study:
    scale: int
    severities: tuple[str, ...]  # set folders are x{scale}_{severity}
    baseline: str  # what a user would get without us: plain bicubic, or the input itself
    models: tuple[str, ...]  # the model that handles this clean-data-only, then the real-world one
    figure_set: str  # the severity whose crops go in docs/
    peers: tuple[str, ...] = ()  # learned peers made for this case, scored where their packages are installed


STUDIES = (
    Study(4, ("web", "light", "medium", "heavy"), "bicubic", ("sr4", "real-sr4"), "web", ("realesrgan",)),
    Study(2, ("web", "light", "medium", "heavy"), "bicubic", ("sr2", "real-sr2"), "web"),
    Study(1, ("light", "medium", "heavy"), "noisy", ("denoise", "real-restore"), "medium"),
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", type=Path, default=REPO / "data" / "real_world",
                   help="made by recipes/real_world_sets.py from held-out photos")
    p.add_argument("--scales", default="4,2,1", help="which studies to run")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "real_world")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-doc", action="store_true", help="print the section, leave docs/ alone")
    return p.parse_args(argv)


def realism_points(name: str) -> tuple[float, ...]:
    """Both ends of the slider where the model has a GAN variant; its one point otherwise."""
    return (0.0, 1.0) if zoo.PRETRAINED[name].has_realism else ()


def run_study(study: Study, args) -> list[str]:
    """The study's tables as markdown lines; its crops figure is copied into docs/ unless --no-doc."""
    sets = tuple(args.sets / f"x{study.scale}_{s}" for s in study.severities)
    missing = [str(s) for s in sets if not s.is_dir()]
    if missing:
        raise SystemExit(f"real_world.py: no set {missing[0]}; make them with recipes/real_world_sets.py "
                         f"--photos data/val_photos --out {args.sets}")
    task = "sr" if study.scale > 1 else "denoise"
    cfg = EvaluateConfig(sets=sets, task=task, scales=(study.scale,), threads=args.threads, figure_images=3)
    methods = [baseline_method(study.baseline, task)]
    for name in study.models:
        methods += model_methods((name,), device="cpu", realism=realism_points(name))
    methods += [baseline_method(peer, task) for peer in study.peers if runnable(peer)]
    report = evaluate(cfg, progress=True, methods=methods)
    out = args.out / f"x{study.scale}"
    write_report(report, out, overwrite=True)
    header = ["method", *(f"{s} PSNR / SSIM" for s in study.severities), *(f"{s} blockiness"
                                                                              for s in study.severities)]
    by = {(r.method, r.set): r for r in report.records}
    names = list(dict.fromkeys(r.method for r in report.records))
    set_names = [s.name for s in sets]
    rows = [[m, *(f"{by[m, s].psnr:.2f} / {by[m, s].ssim:.4f}" for s in set_names),
             *(f"{by[m, s].blockiness:.2f}" for s in set_names)] for m in names]
    rows.append(["ground truth", *("" for _ in set_names),
                 *(f"{by[names[0], s].target_blockiness:.2f}" for s in set_names)])
    sharp = [[m, *(f"{by[m, s].sharpness:.2f}" for s in set_names)] for m in names]
    shown = next((c for c in report.comparisons if c.set == f"x{study.scale}_{study.figure_set}" and c.rows), None)
    figure = None
    if shown is not None:
        figure = REPO / "docs" / f"real_world_x{study.scale}.png"
        if not args.no_doc:
            shutil.copyfile(out / figure_name(shown), figure)
    title = f"x{study.scale} super-resolution" if study.scale > 1 else "restoration at scale 1"
    lines = [
        f"### {title}",
        "",
        "PSNR (dB) / SSIM" + (" on the Y channel, border shaved" if study.scale > 1 else ", all channels")
        + "; blockiness: gradient energy on the 8-pixel JPEG block boundaries of the input over that inside "
        "blocks (1.0 = no blocks; compare with the ground truth's row).",
        "",
        markdown_table(header, rows),
        "",
        "Sharpness ratio (high-frequency energy of the output over the ground truth's; 1.0 = as detailed):",
        "",
        markdown_table(["method", *study.severities], sharp),
        "",
        *method_notes(report.records),
    ]
    if figure is not None:
        lines += ["", f"Crops of the `{study.figure_set}` set where the ground truth has most detail "
                  f"(input | each method | ground truth): ![x{study.scale} crops]({figure.name})"]
    return lines


def main(argv=None) -> None:
    args = parse_args(argv)
    scales = {int(s) for s in args.scales.split(",")}
    body = []
    for study in STUDIES:
        if study.scale in scales:
            body += [*run_study(study, args), ""]
    section = "\n".join([
        "## Real photos and web images: the synthetic real-world sets",
        "",
        f"Generated by `benchmarks/real_world.py` on commit {git_commit()} ({cpu_name()}): `{script_command()}`",
        "",
        "Sets made by `recipes/real_world_sets.py` from the held-out photos (fixed seeds; every range in that "
        "script). Scale 4 and 2: `web` is the `web` pipeline (a little blur, an antialiased downscale, mild "
        "noise, JPEG 50-95 or none), `light` one mild stage of Real-ESRGAN's, `medium` Real-ESRGAN's published "
        "second-order ranges, `heavy` their upper parts. Scale 1: camera noise in linear light, then JPEG, "
        "from a phone in daylight (`light`) to a small sensor at high ISO with JPEG 30-60 (`heavy`). Models "
        "at realism 0, and at 0 and 1 where they have a GAN variant.",
        "",
        *body,
    ]).rstrip() + "\n"
    print(section)
    if not args.no_doc:
        replace_section("real-world", section)


if __name__ == "__main__":
    main()
