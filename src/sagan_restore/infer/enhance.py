"""Applying a trained generator to images: arrays in memory and files on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sagan_restore.checkpoint import load_model
from sagan_restore.data.degradations import resize
from sagan_restore.errors import UserError
from sagan_restore.io import IMAGE_SUFFIXES, list_images, read_image, to_channels, write_image
from sagan_restore.models.generator import UNetGenerator


@dataclass
class Enhancer:
    model: UNetGenerator
    device: torch.device
    info: dict

    @classmethod
    def load(cls, spec: str | Path, *, device: str = "cpu") -> "Enhancer":
        device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                              "cpu" if device == "auto" else device)
        model, info = load_model(spec, device=device)
        return cls(model, device, info)

    @property
    def scale(self) -> int:
        return self.model.cfg.scale

    @torch.inference_mode()
    def enhance_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(H, W, 1|3) float pixels in [0, 1] -> (sH, sW, same C), unclipped.

        A colour model sees grey images as three equal channels and its output goes back to grey; a grey
        model enhances each colour channel on its own.
        """
        channels = pixels.shape[2]
        model_channels = self.model.cfg.in_channels
        if model_channels == 1 and channels == 3:
            planes = [self._run(pixels[..., c:c + 1]) for c in range(3)]
            return np.concatenate(planes, axis=2)
        out = self._run(to_channels(pixels, model_channels))
        return to_channels(out, channels) if out.shape[2] != channels else out

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].to(self.device)
        return self.model(x)[0].float().cpu().numpy().transpose(1, 2, 0)

    def upscale_alpha(self, alpha: np.ndarray) -> np.ndarray:
        """Alpha is not restored, only resized with the image (bicubic) so it still fits."""
        if self.scale == 1:
            return alpha
        h, w = alpha.shape
        return np.clip(resize(alpha[..., None], (w * self.scale, h * self.scale))[..., 0], 0, 1)


def collect_inputs(inputs: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise UserError(f"{path}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    return files


def output_path_for(path: Path, out_dir: Path, *, suffix: str = "") -> Path:
    return out_dir / f"{path.stem}{suffix}{path.suffix}"


def enhance_files(enhancer: Enhancer, inputs: list[Path], out_dir: Path, *, suffix: str = "",
                  overwrite: bool = False, quality: int = 95, progress: bool = True) -> list[Path]:
    """Enhance each file into out_dir, same name and format. Inputs are never overwritten."""
    files = collect_inputs(inputs)
    out_dir.mkdir(parents=True, exist_ok=True)
    plans = [(f, output_path_for(f, out_dir, suffix=suffix)) for f in files]
    clashes = [str(f) for f, out in plans if out.resolve() == f.resolve()]
    if clashes:
        raise UserError("the output would overwrite its input (choose another -o or a --suffix): "
                        + ", ".join(clashes))
    existing = [str(out) for _, out in plans if out.exists()]
    if existing and not overwrite:
        raise UserError("outputs already exist (pass --overwrite to replace them): " + ", ".join(existing))
    written = []
    for src, dst in tqdm(plans, disable=not progress, unit="image"):
        image = read_image(src)
        out = enhancer.enhance_pixels(image.pixels)
        alpha = enhancer.upscale_alpha(image.alpha) if image.alpha is not None else None
        write_image(dst, out, alpha=alpha, bit_depth=image.bit_depth, quality=quality,
                    icc_profile=image.icc_profile)
        written.append(dst)
    return written
