"""What is scored: classical baselines and models, each as one function from input pixels to output pixels."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sagan_restore import baselines
from sagan_restore.config import EvaluateConfig
from sagan_restore.errors import UserError
from sagan_restore.evaluation.protocol import Condition


@dataclass
class Method:
    name: str
    kind: str  # "model" or "baseline"
    run: Callable[[np.ndarray, Condition], np.ndarray]
    scale: int | None  # a model's fixed factor (1 = restoration); None: a baseline, any factor
    describe: Callable[[Condition], str]
    realism: float | None = None  # a model's point between its fidelity (0) and GAN (1) weights


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
                 realism: float | None = None, strength: float = 1.0, half: bool = False,
                 self_ensemble: bool = False) -> Method:
    from sagan_restore.infer.enhance import Enhancer

    enhancer = Enhancer.load(spec, device=device, tile=tile, realism=realism, strength=strength, half=half,
                             self_ensemble=self_ensemble)
    enhancer.enhance_pixels(np.zeros((16, 16, 3), dtype=np.float32))  # first call pays one-off set-up costs
    tiles = "whole images" if enhancer.settings.tile == 0 else \
        f"tiles of {enhancer.settings.tile} px overlapping by {enhancer.settings.overlap}"
    point = enhancer.info.get("realism", realism)
    realism_note = f", realism {point:g}" if point is not None else ""
    strength_note = f", strength {strength:g}" if strength != 1 else ""
    precision = f", {str(enhancer.autocast_dtype).removeprefix('torch.')} autocast" if enhancer.autocast_dtype else ""
    ensemble_note = ", x8 self-ensemble" if self_ensemble else ""
    details = f"model {spec} ({enhancer.device}{precision}, {tiles}{realism_note}{strength_note}{ensemble_note})"
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
                  realism: tuple[float, ...] = (), strengths: tuple[float, ...] = (),
                  half: bool = False, self_ensemble: bool = False) -> list[Method]:
    """Each model once at its default realism, or once per realism point (named "NAME rR"), and likewise
    once per --strength value (named "NAME sS"); "NAME x8" with the self-ensemble."""
    methods = []
    for spec, name in zip(specs, model_names(specs)):
        for r in realism or (None,):
            for s in strengths or (1.0,):
                label = (name + (f" r{r:g}" if realism else "") + (f" s{s:g}" if strengths else "")
                         + (" x8" if self_ensemble else ""))
                methods.append(model_method(spec, label, device=device, tile=tile, realism=r, strength=s,
                                            half=half, self_ensemble=self_ensemble))
    return methods


def build_methods(cfg: EvaluateConfig) -> list[Method]:
    methods = [baseline_method(name, cfg.task) for name in cfg.baselines]
    methods += model_methods(cfg.models, device=cfg.device, tile=cfg.tile, realism=cfg.realism,
                             strengths=cfg.strengths, half=cfg.half, self_ensemble=cfg.self_ensemble)
    if not methods:
        raise UserError("nothing to evaluate: give --model and/or --baselines")
    return methods


def applies(method: Method, condition: Condition) -> bool:
    return method.scale is None or method.scale == condition.scale
