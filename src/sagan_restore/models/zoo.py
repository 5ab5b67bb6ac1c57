"""Pretrained models shipped inside the package: the one name table of the project.

The weights live in `sagan_restore/weights/NAME.safetensors` (half precision); each file carries its
architecture, recipe, training details and measured scores in its metadata (see
`recipes/package_model.py`), so this table only maps user-facing names to files. A model's GAN ("realism")
fine-tune sits beside it as NAME_gan.safetensors, the same rule as for users' own files (see
`realism_file` below); `default_realism` is the documented point `enhance` uses when the user does
not pass `--realism`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from sagan_restore.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def realism_file(model_file: Path) -> Path:
    """Where a model file's GAN (realism) variant is kept: NAME_gan.safetensors beside NAME.safetensors.
    One rule for the shipped models and users' own files."""
    return model_file.with_name(f"{model_file.stem}_gan.safetensors")


def strength_file(model_file: Path) -> Path:
    """Where a model file's light variant is kept: NAME_light.safetensors beside NAME.safetensors. It is a
    fine-tune of the model that removes less (real-restore's keeps the camera noise and removes only the
    file's JPEG artefacts); `--strength S` blends the two, S * model + (1 - S) * light."""
    return model_file.with_name(f"{model_file.stem}_light.safetensors")


@dataclass(frozen=True)
class Pretrained:
    name: str
    summary: str
    scale: int = 1
    default_realism: float = 0.0

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def realism_path(self) -> Path:
        return realism_file(self.path)

    @property
    def has_realism(self) -> bool:
        return self.realism_path.exists()

    @property
    def strength_path(self) -> Path | None:
        """Its light variant for --strength, where one is shipped."""
        path = strength_file(self.path)
        return path if path.exists() else None


PRETRAINED = {
    m.name: m
    for m in [
        # Default realism points, chosen on held-out photos (recipes/validation_photos.py), never the test
        # sets: for denoise, 0: its GAN variant adds little detail there (sharpness 0.447 -> 0.518 at
        # realism 1) and costs PSNR (-0.17 dB), and its Gaussian-noise scores stay those of the fidelity
        # model; for sr2 and sr4, 0.5, which brings back part of the detail for under 1 dB there.
        Pretrained("denoise", "blind denoiser for Gaussian noise sigma 0..55, colour and grey, 8-bit or float input"),
        Pretrained("sr2", "x2 super-resolution of clean (bicubic-downscaled) images", scale=2, default_realism=0.5),
        Pretrained("sr4", "x4 super-resolution of clean (bicubic-downscaled) images", scale=4, default_realism=0.5),
        # Real photos and web images (blur, resize, noise, JPEG: data/degradations.py's `real` and `camera`).
        # Where shipped, `enhance` uses them when no --model is given (see default_for).
        Pretrained("real-sr4", "x4 super-resolution of real photos and web images: blur, noise and JPEG "
                   "removed as it upscales", scale=4),
        Pretrained("real-sr2", "x2 super-resolution of real photos and web images: blur, noise and JPEG "
                   "removed as it upscales", scale=2),
        # real-restore's default realism 0.5, chosen on the x1 real-world sets (made from the held-out
        # photos): sharpness +0.05-0.07 and blockiness nearer the ground truth's for 0.01-0.06 dB.
        Pretrained("real-restore", "camera noise and JPEG artefacts removed at the same size",
                   default_realism=0.5),
    ]
}


def shipped() -> list[Pretrained]:
    """The pretrained models whose weights are present in this installation."""
    return [m for m in PRETRAINED.values() if m.path.exists()]


def default_for(scale: int | None) -> Pretrained:
    """The model `enhance` uses without --model: for real photos (real-srN, real-restore) where shipped,
    else the models for known degradations (srN, denoise)."""
    scale = scale or 1
    names = (f"real-sr{scale}", f"sr{scale}") if scale > 1 else ("real-restore", "denoise")
    for name in names:
        model = PRETRAINED.get(name)
        if model is not None and model.path.exists():
            return model
    return for_scale(scale) if scale > 1 else PRETRAINED["denoise"]


def for_scale(scale: int) -> Pretrained:
    """A shipped super-resolution model of that factor (an error naming the shipped ones if none)."""
    found = [m for m in shipped() if m.scale == scale]
    if not found:
        factors = ", ".join(str(m.scale) for m in shipped() if m.scale > 1) or "none shipped"
        raise UserError(f"--scale {scale}: no pretrained model for that factor (shipped: {factors}); "
                        f"pass --model with your own x{scale} model")
    return found[0]


@dataclass(frozen=True)
class ResolvedModel:
    """What a --model argument means, decided once: every command (enhance, evaluate, serve) uses this."""

    spec: str  # the argument as given
    path: Path  # weights file or run folder
    realism_path: Path | None  # its GAN (realism) variant, when one is stored beside it
    default_realism: float  # the point used when --realism is not given: a shipped model's documented one, else 0
    pretrained: Pretrained | None  # the shipped model it names, if it does
    strength_path: Path | None = None  # its light variant for --strength, when one is stored beside it

    @property
    def origin(self) -> str:
        return f"pretrained model {self.pretrained.name}" if self.pretrained else str(self.path)


def looks_like_path(spec: str) -> bool:
    """An argument written as a path (a folder separator, a leading dot or tilde, a weights suffix) means
    that path even when a pretrained model has the same name."""
    return ("/" in spec or "\\" in spec or spec.startswith((".", "~"))
            or Path(spec).suffix in (".safetensors", ".pt"))


def resolve(spec: str | Path) -> ResolvedModel:
    """A model argument resolved. Precedence: a pretrained name wins, unless the argument looks like a path
    (`./sr4`, `runs/sr4`, `sr4.safetensors`); a bare name that is also a file or folder here is the
    pretrained model, with a warning saying how to name the other."""
    text = str(spec)
    model = PRETRAINED.get(text)
    if model is not None and not looks_like_path(text):
        if Path(text).exists():
            warnings.warn(f"--model {text}: taken as the pretrained model; there is also a {text} here, "
                          f"pass ./{text} to use that instead")
        if not model.path.exists():
            raise UserError(f"--model {text}: the pretrained weights are missing from this installation "
                            f"({model.path}); reinstall sagan-restore")
        partner = model.realism_path if model.has_realism else None
        return ResolvedModel(text, model.path, partner, model.default_realism if partner else 0.0, model,
                             model.strength_path)
    path = Path(text).expanduser()
    if path.exists():
        partner, light = realism_file(path), strength_file(path)
        weights_file = path.suffix == ".safetensors"
        return ResolvedModel(text, path, partner if weights_file and partner.exists() else None, 0.0, None,
                             light if weights_file and light.exists() else None)
    names = ", ".join(m.name for m in shipped()) or "none shipped"
    raise UserError(f"--model {text}: no such file or folder, and not a pretrained model ({names})")
