"""Test sets on disk: which layout a folder has (clean images, Set5's HR + LR_bicubic, lr/ + hr/ pairs),
the conditions it is scored under, and its images as (input, target) cases."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from sagan_restore.config import EvaluateConfig
from sagan_restore.data.datasets import match_pairs, pair_scale, paired_subfolders
from sagan_restore.data.degradations import quantize_8bit
from sagan_restore.errors import UserError
from sagan_restore.evaluation.protocol import (PROTOCOL_INPUT, QUANTIZED_INPUT, Case, Condition, bicubic_input,
                                               crop_to_multiple, protocol_noisy)
from sagan_restore.io import DICOM_SUFFIXES, list_images, quantize, read_image


@dataclass
class EvalSet:
    name: str
    root: Path
    layout: str  # "clean" (noise added here), "hr" (SR inputs made or provided here) or "paired"
    targets: list[Path]
    inputs: list[Path] | None = None  # paired sets: the input beside each target
    pair_scale: int = 1


def open_test_set(root: Path) -> EvalSet:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--set {root}: no such folder")
    subfolders = paired_subfolders(root)
    if subfolders is not None:
        pairs = match_pairs(*subfolders)
        dicom = [(lr, hr) for lr, hr in pairs if is_dicom(lr) or is_dicom(hr)]
        _warn_skipped(root, [hr for _, hr in dicom])
        pairs = [pair for pair in pairs if pair not in dicom]
        if not pairs:
            raise UserError(f"--set {root}: no photo pairs in {subfolders[0].name}/ and {subfolders[1].name}/")
        return EvalSet(root.name, root, "paired", [hr for _, hr in pairs], [lr for lr, _ in pairs],
                       pair_scale(pairs))
    hr_dir = root / "HR" if (root / "HR").is_dir() else root
    targets = photos(hr_dir)
    if not targets:
        raise UserError(f"--set {root}: no images in it, and no HR/ or lr/ + hr/ subfolders")
    return EvalSet(root.name, root, "hr" if hr_dir != root else "clean", targets)


def is_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES


def photos(folder: Path) -> list[Path]:
    """The images in `folder` but DICOMs (said in a warning): evaluate scores 8-bit photos, and a DICOM's
    modality values have no such reading (enhance and train take them)."""
    images = list_images(folder)
    _warn_skipped(folder, [p for p in images if is_dicom(p)])
    return [p for p in images if not is_dicom(p)]


def _warn_skipped(folder: Path, dicoms: list[Path]) -> None:
    if dicoms:
        names = ", ".join(p.name for p in dicoms[:3]) + (", ..." if len(dicoms) > 3 else "")
        warnings.warn(f"--set {folder}: skipping {len(dicoms)} DICOM file(s) ({names}); evaluate scores photos, "
                      "enhance and train read DICOMs")


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
    found = {p.stem: p for p in list_images(folder) if not is_dicom(p)}
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
