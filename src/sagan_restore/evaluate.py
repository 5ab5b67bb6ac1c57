"""Scoring models and classical baselines side by side, with the protocol of the published tables.

The protocol (../shared/benchmarks/README.md), followed exactly so numbers compare with papers:
- Denoising: the i-th clean image of the set (files sorted by name, i = 0, 1, ...) gets white Gaussian
  noise from `numpy.random.default_rng(i).normal(0, sigma, shape)` on the 0..255 scale, NOT clipped. Every
  method receives that same float input (with `quantized_input`: clipped and rounded to 8 bits, as a saved
  file would be). PSNR over all channels and SSIM with scikit-image's defaults, data range 255.
- Super-resolution: a `HR/` + `LR_bicubic/X{s}/` set (Set5's layout) uses the provided low-resolution
  files; a set with high-resolution images only is downscaled here with Pillow's antialiased bicubic
  (float precision, then rounded to 8 bits as a file would be). PSNR and SSIM (Wang et al.'s Gaussian
  window) on the BT.601 luma, `scale` pixels shaved from every border.
- Paired sets (`lr/` + `hr/`): inputs as they are; the size ratio decides between the two scorings.
- Every output is clipped to [0, 1] and rounded to 8 bits before it is scored.
- JPEG blockiness (metrics.blockiness) of every output and of its ground truth, on the input's block grid
  (8 x scale output pixels, from the top-left corner): how much of an input's JPEG tiling survives.
Speed is seconds per megapixel of output, the median over images, of the method call alone.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from tqdm import tqdm

from sagan_restore import baselines
from sagan_restore.config import EvaluateConfig
from sagan_restore.data.datasets import match_pairs, pair_scale, paired_subfolders
from sagan_restore.data.degradations import downscale, quantize_8bit
from sagan_restore.devices import pick_device
from sagan_restore.errors import UserError
from sagan_restore.io import list_images, quantize, read_image
from sagan_restore.metrics import blockiness, psnr, rgb_to_y, sharpness_ratio, shave, ssim

PROTOCOL_INPUT = "unclipped"  # the noisy float image as the protocol defines it
QUANTIZED_INPUT = "8bit"  # clipped and rounded to 8 bits, like a file a user brings
FIGURE_CROP = 128  # side of the comparison crops, in output pixels


@dataclass(frozen=True)
class Condition:
    """One column of a results table: a noise level, an upscaling factor or a set's own pairs."""

    task: str  # "denoise" or "sr"
    sigma: float | None = None  # protocol noise level; None for paired sets
    scale: int = 1

    @property
    def label(self) -> str:
        if self.task == "sr":
            return f"x{self.scale}"
        return "paired" if self.sigma is None else f"sigma {self.sigma:g}"


@dataclass
class Case:
    name: str
    input: np.ndarray  # (h, w, C) float32 on the [0, 1] scale: what every method receives
    target: np.ndarray  # (H, W, C) uint8 ground truth


@dataclass
class EvalSet:
    name: str
    root: Path
    layout: str  # "clean" (noise added here), "hr" (SR inputs made or provided here) or "paired"
    targets: list[Path]
    inputs: list[Path] | None = None  # paired sets: the input beside each target
    pair_scale: int = 1


@dataclass
class Method:
    name: str
    kind: str  # "model" or "baseline"
    run: Callable[[np.ndarray, Condition], np.ndarray]
    scale: int | None  # a model's fixed factor (1 = restoration); None: a baseline, any factor
    describe: Callable[[Condition], str]
    realism: float | None = None  # a model's point between its fidelity (0) and GAN (1) weights


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float
    sharpness: float  # high-frequency energy of the output over the ground truth's (metrics.sharpness_ratio)
    seconds: float
    megapixels: float  # of the output
    blockiness: float = 1.0  # JPEG blocking of the output on its input's block grid (metrics.blockiness)
    target_blockiness: float = 1.0  # the same of the ground truth: what a faithful output has


@dataclass
class Record:
    method: str
    kind: str
    set: str
    task: str
    sigma: float | None
    scale: int
    input: str  # what methods received: unclipped / 8bit noisy, provided / downscaled LR, paired
    psnr: float  # mean over images
    ssim: float  # mean over images
    sharpness: float  # mean over images; 1.0 = as much fine detail as the ground truth
    realism: float | None  # models with a GAN variant: the interpolation point scored
    sec_per_mp: float  # median over images
    n_images: int
    details: str
    images: list[ImageScore] = field(default_factory=list)
    blockiness: float = 1.0  # mean over images; 1.0 = no JPEG blocks
    target_blockiness: float = 1.0  # mean over images, of the ground truth


@dataclass
class Comparison:
    """Crops of a few images for the comparison figure: rows of (label, uint8 crop) panels."""

    set: str
    condition: Condition
    rows: list[tuple[str, list[tuple[str, np.ndarray]]]] = field(default_factory=list)


@dataclass
class Report:
    environment: dict
    records: list[Record]
    comparisons: list[Comparison]


# --- the protocol -------------------------------------------------------------------------------------

def protocol_noisy(clean: np.ndarray, sigma: float, index: int) -> np.ndarray:
    """The noisy version of the set's `index`-th clean uint8 image: float64 on the 0..255 scale, unclipped.

    Depends only on (image, sigma, index), never on the method or the order methods run in.
    """
    noise = np.random.default_rng(index).normal(0.0, sigma, clean.shape)
    return clean.astype(np.float64) + noise


def score(output: np.ndarray, target: np.ndarray, condition: Condition) -> tuple[float, float, float]:
    """(PSNR, SSIM, sharpness ratio) of a method's float output against the uint8 target, after rounding to
    8 bits. Sharpness is measured on what PSNR is: the shaved Y channel for SR, all channels otherwise."""
    out = quantize(output, 8)
    if out.shape != target.shape:
        raise ValueError(f"output {out.shape} does not match the target {target.shape}")
    if condition.task == "sr":
        out_y, target_y = shave(rgb_to_y(out), condition.scale), shave(rgb_to_y(target), condition.scale)
        return (psnr(out_y, target_y, data_range=255), ssim(out_y, target_y, gaussian=True),
                sharpness_ratio(out_y, target_y))
    return psnr(out, target, data_range=255), ssim(out, target), sharpness_ratio(out, target)


def bicubic_input(hr: np.ndarray, scale: int) -> np.ndarray:
    """The documented downscale for sets without provided inputs: Pillow's antialiased bicubic on float
    pixels, rounded to 8 bits. `hr` must already be cropped to a multiple of `scale`."""
    return quantize_8bit(downscale(hr.astype(np.float32) / 255.0, scale))


def crop_to_multiple(img: np.ndarray, scale: int) -> np.ndarray:
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


# --- test sets ----------------------------------------------------------------------------------------

def open_test_set(root: Path) -> EvalSet:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--set {root}: no such folder")
    subfolders = paired_subfolders(root)
    if subfolders is not None:
        pairs = match_pairs(*subfolders)
        return EvalSet(root.name, root, "paired", [hr for _, hr in pairs], [lr for lr, _ in pairs],
                       pair_scale(pairs))
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    targets = list_images(hr_dir)
    if not targets:
        raise UserError(f"--set {root}: no images in it, and no HR/ or lr/ + hr/ subfolders")
    return EvalSet(root.name, root, "hr" if hr_dir != root else "clean", targets)


def conditions_for(test_set: EvalSet, cfg: EvaluateConfig) -> list[Condition]:
    if test_set.layout == "paired":
        task = "sr" if test_set.pair_scale > 1 else "denoise"
        if task != cfg.task:
            raise UserError(f"--set {test_set.root}: its lr/ and hr/ images differ by a factor "
                            f"{test_set.pair_scale}, which is a {task} set; use --task {task}")
        return [Condition(task, None, test_set.pair_scale)]
    if cfg.task == "sr":
        return [Condition("sr", None, s) for s in cfg.scales]
    return [Condition("denoise", float(s), 1) for s in cfg.sigmas]


def provided_inputs(test_set: EvalSet, scale: int) -> list[Path] | None:
    """The LR_bicubic/X{scale} files matching the targets (name or name + 'x{scale}'), if the set has them."""
    folder = test_set.root / "LR_bicubic" / f"X{scale}"
    if test_set.layout != "hr" or not folder.is_dir():
        return None
    found = {p.stem: p for p in list_images(folder)}
    inputs, missing = [], []
    for target in test_set.targets:
        match = found.get(f"{target.stem}x{scale}") or found.get(target.stem)
        (inputs if match else missing).append(match or target.name)
    if missing:
        raise UserError(f"{folder}: no low-resolution file for " + ", ".join(missing))
    return inputs


def input_kind(test_set: EvalSet, condition: Condition, *, quantized: bool) -> str:
    if test_set.layout == "paired":
        return "paired"
    if condition.task == "sr":
        return "provided LR" if provided_inputs(test_set, condition.scale) else "bicubic downscale"
    return QUANTIZED_INPUT if quantized else PROTOCOL_INPUT


def _uint8(path: Path) -> np.ndarray:
    return quantize(read_image(path).pixels, 8)


def iter_cases(test_set: EvalSet, condition: Condition, *, quantized: bool) -> Iterator[Case]:
    """The set's images as (input, target) cases, loaded one at a time."""
    lr_files = test_set.inputs or (provided_inputs(test_set, condition.scale) if condition.task == "sr" else None)
    for index, target_path in enumerate(test_set.targets):
        target = _uint8(target_path)
        if lr_files is not None:
            lr = _uint8(lr_files[index])
            target = _fit_target(target, lr, condition.scale, lr_files[index], target_path)
            inputs = lr.astype(np.float32) / 255.0
        elif condition.task == "sr":
            target = crop_to_multiple(target, condition.scale)
            inputs = bicubic_input(target, condition.scale)
        else:
            noisy = (protocol_noisy(target, condition.sigma, index) / 255.0).astype(np.float32)
            inputs = quantize_8bit(noisy) if quantized else noisy
        yield Case(target_path.name, inputs, target)


def _fit_target(target: np.ndarray, lr: np.ndarray, scale: int, lr_path: Path, hr_path: Path) -> np.ndarray:
    """Crop the target to exactly `scale` times its input (SR sets crop HR to a multiple of the scale)."""
    h, w = lr.shape[0] * scale, lr.shape[1] * scale
    if target.shape[0] < h or target.shape[1] < w or target.shape[0] - h >= scale or target.shape[1] - w >= scale:
        raise UserError(f"{hr_path} ({target.shape[1]}x{target.shape[0]}) is not {scale} times "
                        f"{lr_path} ({lr.shape[1]}x{lr.shape[0]})")
    if target.shape[2] != lr.shape[2]:
        raise UserError(f"{hr_path} and {lr_path}: one is grey and the other colour")
    return target[:h, :w]


# --- methods ------------------------------------------------------------------------------------------

def baseline_method(name: str, task: str) -> Method:
    table = baselines.DENOISERS if task == "denoise" else baselines.UPSCALERS
    if name not in table:
        raise UserError(f"--baselines {name}: not a {task} baseline; choose from {', '.join(table)}")
    fn = table[name]
    if task == "denoise":
        def run(pixels, condition):
            return fn(pixels, sigma=condition.sigma)
    else:
        def run(pixels, condition):
            return fn(pixels, scale=condition.scale)
    return Method(name, "baseline", run, None, lambda condition: baselines.describe(name, sigma=condition.sigma))


def model_method(spec: str, name: str, *, device: str, tile: int | None = None,
                 realism: float | None = None) -> Method:
    from sagan_restore.infer.enhance import Enhancer

    enhancer = Enhancer.load(spec, device=device, tile=tile, realism=realism)
    enhancer.enhance_pixels(np.zeros((16, 16, 3), dtype=np.float32))  # first call pays one-off set-up costs
    tiles = "whole images" if enhancer.settings.tile == 0 else \
        f"tiles of {enhancer.settings.tile} px overlapping by {enhancer.settings.overlap}"
    point = enhancer.info.get("realism", realism)
    realism_note = f", realism {point:g}" if point is not None else ""
    details = f"model {spec} ({enhancer.device}, {tiles}{realism_note})"
    return Method(name, "model", lambda pixels, condition: enhancer.enhance_pixels(pixels), enhancer.scale,
                  lambda condition: details, point)


def model_names(specs: tuple[str, ...]) -> list[str]:
    """Short, distinct names: a run folder's name, or a file's stem (its folder's name for generator.*)."""
    names = []
    for spec in specs:
        path = Path(spec)
        name = path.parent.name if path.stem == "generator" and path.parent.name else path.stem or spec
        names.append(name)
    return [f"{n}#{names[:i].count(n) + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


def model_methods(specs: tuple[str, ...], *, device: str, tile: int | None = None,
                  realism: tuple[float, ...] = ()) -> list[Method]:
    """Each model once at its default realism, or once per realism point (named "NAME rR")."""
    methods = []
    for spec, name in zip(specs, model_names(specs)):
        if not realism:
            methods.append(model_method(spec, name, device=device, tile=tile))
        else:
            methods += [model_method(spec, f"{name} r{r:g}", device=device, tile=tile, realism=r) for r in realism]
    return methods


def build_methods(cfg: EvaluateConfig) -> list[Method]:
    methods = [baseline_method(name, cfg.task) for name in cfg.baselines]
    methods += model_methods(cfg.models, device=cfg.device, tile=cfg.tile, realism=cfg.realism)
    if not methods:
        raise UserError("nothing to evaluate: give --model and/or --baselines")
    return methods


def applies(method: Method, condition: Condition) -> bool:
    return method.scale is None or method.scale == condition.scale


# --- running ------------------------------------------------------------------------------------------

def evaluate(cfg: EvaluateConfig, *, progress: bool = True, methods: list[Method] | None = None) -> Report:
    """Every applicable method on every image of every set and condition, inputs shared per image."""
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    methods = methods if methods is not None else build_methods(cfg)
    started = environment(cfg.device)  # date and machine load as the run begins
    test_sets = [open_test_set(root) for root in cfg.sets]
    jobs = [(s, c) for s in test_sets for c in conditions_for(s, cfg)]
    records, comparisons = [], []
    for test_set, condition in jobs:
        chosen = [m for m in methods if applies(m, condition)]
        if chosen:
            found, comparison = evaluate_condition(test_set, condition, chosen, quantized=cfg.quantized_input,
                                                   figure_images=cfg.figure_images, progress=progress)
            records += found
            comparisons.append(comparison)
    return Report(started, records, comparisons)


def evaluate_condition(test_set: EvalSet, condition: Condition, methods: list[Method], *, quantized: bool,
                       figure_images: int, progress: bool) -> tuple[list[Record], Comparison]:
    scores: dict[str, list[ImageScore]] = {m.name: [] for m in methods}
    comparison = Comparison(test_set.name, condition)
    cases = iter_cases(test_set, condition, quantized=quantized)
    bar = tqdm(cases, total=len(test_set.targets), desc=f"{test_set.name} {condition.label}", unit="image",
               disable=not progress, dynamic_ncols=True)
    for index, case in enumerate(bar):
        outputs = []
        for method in methods:
            started = time.perf_counter()
            output = method.run(case.input, condition)
            seconds = time.perf_counter() - started
            value_psnr, value_ssim, sharpness = score(output, case.target, condition)
            megapixels = case.target.shape[0] * case.target.shape[1] / 1e6
            scores[method.name].append(ImageScore(case.name, value_psnr, value_ssim, sharpness, seconds,
                                                  megapixels, blockiness(quantize(output, 8), scale=condition.scale),
                                                  blockiness(case.target, scale=condition.scale)))
            outputs.append((method, output, value_psnr))
        if index < figure_images:
            comparison.rows.append(comparison_row(case, outputs, condition))
    kind = input_kind(test_set, condition, quantized=quantized)
    records = [summarise(m, test_set, condition, kind, scores[m.name]) for m in methods]
    return records, comparison


def summarise(method: Method, test_set: EvalSet, condition: Condition, kind: str,
              images: list[ImageScore]) -> Record:
    return Record(
        method=method.name, kind=method.kind, set=test_set.name, task=condition.task, sigma=condition.sigma,
        scale=condition.scale, input=kind,
        psnr=float(np.mean([s.psnr for s in images])), ssim=float(np.mean([s.ssim for s in images])),
        sharpness=float(np.mean([s.sharpness for s in images])), realism=method.realism,
        sec_per_mp=float(np.median([s.seconds / s.megapixels for s in images])), n_images=len(images),
        details=method.describe(condition), images=images,
        blockiness=float(np.mean([s.blockiness for s in images])),
        target_blockiness=float(np.mean([s.target_blockiness for s in images])),
    )


def comparison_row(case: Case, outputs: list[tuple[Method, np.ndarray, float]],
                   condition: Condition) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """input | each method | ground truth, cropped where the ground truth has the most detail."""
    target = case.target
    size = min(FIGURE_CROP, target.shape[0], target.shape[1])
    y, x = busiest_window(target, size)
    s = condition.scale
    shown_input = quantize(case.input, 8)
    if s > 1:  # show the small input as nearest-neighbour blocks: what the method had to work from
        shown_input = np.repeat(np.repeat(shown_input, s, axis=0), s, axis=1)[: target.shape[0], : target.shape[1]]
    input_psnr = (" " + f"{score(shown_input.astype(np.float32) / 255, target, condition)[0]:.2f} dB"
                  if s == 1 else "")
    panels = [(f"input{input_psnr}", shown_input[y:y + size, x:x + size])]
    for method, output, value_psnr in outputs:
        if method.kind == "baseline" and method.name == baselines.IDENTITY:  # the input panel shows it
            continue
        panels.append((f"{method.name} {value_psnr:.2f} dB", quantize(output, 8)[y:y + size, x:x + size]))
    panels.append(("ground truth", target[y:y + size, x:x + size]))
    return case.name, panels


def busiest_window(img: np.ndarray, size: int, *, step: int = 8) -> tuple[int, int]:
    """Top-left corner of the size x size window with the most gradient energy: where methods differ."""
    grey = img.astype(np.float64).mean(axis=2)
    energy = np.zeros_like(grey)
    energy[:, 1:] += np.abs(np.diff(grey, axis=1))
    energy[1:, :] += np.abs(np.diff(grey, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    ys = np.arange(0, grey.shape[0] - size + 1, step)[:, None]
    xs = np.arange(0, grey.shape[1] - size + 1, step)[None, :]
    totals = integral[ys + size, xs + size] - integral[ys, xs + size] - integral[ys + size, xs] + integral[ys, xs]
    row, col = np.unravel_index(int(np.argmax(totals)), totals.shape)
    return int(ys[row, 0]), int(xs[0, col])


# --- reporting ----------------------------------------------------------------------------------------

def environment(device: str = "auto") -> dict:
    """Where and with what the numbers were measured."""
    import torch

    versions = {}
    for package in ("sagan-restore", "torch", "numpy", "scikit-image", "pillow", "opencv-python-headless",
                    "opencv-python", "bm3d"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["sagan-restore" if i == 0 else a for i, a in enumerate(sys.argv)]),
        "machine": f"{cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}",
        "device": str(pick_device(device)),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine slows every timing
        "python": platform.python_version(),
        "versions": versions,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report_to_json(report: Report) -> dict:
    return {"environment": report.environment, "records": [_finite(asdict(r)) for r in report.records]}


def _finite(value):
    """JSON has no infinity: the PSNR of an exact reproduction becomes null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def markdown_tables(records: list[Record]) -> str:
    """Per set and input kind: PSNR / SSIM and seconds per megapixel, one column per method."""
    blocks = []
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault((r.set, r.task, r.input), []).append(r)
    for (set_name, task, kind), group in groups.items():
        methods = list(dict.fromkeys(r.method for r in group))
        conditions = list(dict.fromkeys(condition_cell(r) for r in group))
        cell = {(r.method, condition_cell(r)): r for r in group}
        n = max(r.n_images for r in group)
        what = "denoising, PSNR dB / SSIM" if task == "denoise" else "super-resolution, Y-channel PSNR dB / SSIM"
        head = "sigma" if task == "denoise" else "scale"
        blocks.append(f"**{set_name}** ({n} images, {what}, mean over images; input: {kind})\n")
        blocks.append(markdown_table([head] + methods, [[c] + [quality_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("\nSharpness ratio (high-frequency energy of the output over the ground truth's; 1.0 "
                      "ideal, below = smoother):\n")
        blocks.append(markdown_table([head] + methods, [[c] + [sharpness_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("\nJPEG blockiness (gradient energy across block boundaries over that inside blocks, on the "
                      "input's 8-pixel grid; 1.0 = no blocks; the ground truth's in the last column):\n")
        truth = {c: next(r.target_blockiness for r in group if condition_cell(r) == c) for c in conditions}
        blocks.append(markdown_table([head] + methods + ["ground truth"],
                                     [[c] + [blockiness_cell(cell.get((m, c))) for m in methods] + [f"{truth[c]:.3f}"]
                                      for c in conditions]))
        blocks.append("\nSeconds per megapixel (median over images):\n")
        blocks.append(markdown_table([head] + methods, [[c] + [speed_cell(cell.get((m, c))) for m in methods]
                                                for c in conditions]))
        blocks.append("")
    return "\n".join(blocks + ["Methods:", "", *method_notes(records), ""])


def method_notes(records: list[Record]) -> list[str]:
    """One line per method and settings; the conditions are named where the settings change with them."""
    conditions: dict[tuple[str, str], list[str]] = {}
    for r in records:
        cells = conditions.setdefault((r.method, r.details), [])
        if condition_cell(r) not in cells:
            cells.append(condition_cell(r))
    methods = [method for method, _ in conditions]
    return [f"- `{method}`" + (f" ({', '.join(cells)})" if methods.count(method) > 1 else "") + f": {details}"
            for (method, details), cells in conditions.items()]


def condition_cell(r: Record) -> str:
    if r.task == "sr":
        return f"x{r.scale}"
    return "paired" if r.sigma is None else f"{r.sigma:g}"


def quality_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.psnr:.2f} / {r.ssim:.4f}"


def sharpness_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.sharpness:.3f}"


def blockiness_cell(r: Record | None, missing: str = "") -> str:
    return missing if r is None else f"{r.blockiness:.3f}"


def speed_cell(r: Record | None, missing: str = "", *, digits: int = 4) -> str:
    return missing if r is None else f"{r.sec_per_mp:.{digits}g}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(report: Report, out: Path, *, overwrite: bool = False) -> list[Path]:
    """results.json, results.md and one compare_*.png per set and condition; never replaces old results
    unless told to."""
    from sagan_restore.plots import save_panel_grid

    out = Path(out)
    json_path, md_path = out / "results.json", out / "results.md"
    figures = {out / figure_name(c): c for c in report.comparisons if c.rows}
    existing = [str(p) for p in [json_path, md_path, *figures] if p.exists()]
    if existing and not overwrite:
        raise UserError(f"--out {out}: results already there (pass --overwrite to replace them): "
                        + ", ".join(existing))
    out.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report_to_json(report), indent=1, allow_nan=False) + "\n")
    md_path.write_text(markdown_tables(report.records))
    for path, comparison in figures.items():
        save_panel_grid(comparison.rows, path, title=f"{comparison.set}, {comparison.condition.label}")
    return [json_path, md_path, *figures]


def figure_name(comparison: Comparison) -> str:
    label = comparison.condition.label.replace(" ", "")
    return f"compare_{comparison.set}_{label}.png"
