"""Running every method on every image of every set and condition, inputs shared per image, and the
records and comparison crops that come out."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from sagan_restore import baselines
from sagan_restore.config import EvaluateConfig
from sagan_restore.evaluation.machine import environment
from sagan_restore.evaluation.methods import Method, applies, build_methods
from sagan_restore.evaluation.protocol import Case, Condition, score
from sagan_restore.evaluation.sets import EvalSet, conditions_for, input_kind, iter_cases, open_test_set
from sagan_restore.io import quantize
from sagan_restore.metrics import blockiness

FIGURE_CROP = 128  # side of the comparison crops, in output pixels


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


def evaluate(cfg: EvaluateConfig, *, progress: bool = True, methods: list[Method] | None = None,
             test_sets: list[EvalSet] | None = None) -> Report:
    """Every applicable method on every image of every set and condition, inputs shared per image.
    `methods` and `test_sets` default to those `cfg` names; pass them when they are built already."""
    if cfg.threads is not None:
        import torch

        torch.set_num_threads(cfg.threads)
    methods = methods if methods is not None else build_methods(cfg)
    started = environment(cfg.device)  # date and machine load as the run begins
    test_sets = test_sets if test_sets is not None else [open_test_set(root) for root in cfg.sets]
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
