"""Pretrained models shipped inside the package: the one name table of the project.

The weights live in `sagan_restore/weights/NAME.safetensors` (half precision); each file carries its
architecture, recipe, training details and measured scores in its metadata (see
`recipes/package_model.py`), so this table only maps user-facing names to files. A model's GAN ("realism")
fine-tune sits beside it as NAME_gan.safetensors, the same rule as for users' own files (see
`checkpoint.realism_partner`); `default_realism` is the documented point `enhance` uses when the user does
not pass `--realism`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagan_restore.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def realism_file(model_file: Path) -> Path:
    """Where a model file's GAN (realism) variant is kept: NAME_gan.safetensors beside NAME.safetensors.
    One rule for the shipped models and users' own files."""
    return model_file.with_name(f"{model_file.stem}_gan.safetensors")


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


PRETRAINED = {
    m.name: m
    for m in [
        # Default realism points, chosen on held-out photos (recipes/validation_photos.py), never the test
        # sets: for denoise, 0: its GAN variant adds almost no detail there (sharpness 0.434 -> 0.439) and
        # costs PSNR; for sr2 and sr4, 0.5, which brings back part of the detail for under 1 dB there.
        Pretrained("denoise", "blind denoiser for Gaussian noise sigma 0..55, colour and grey, 8-bit or float input"),
        Pretrained("sr2", "x2 super-resolution of clean (bicubic-downscaled) images", scale=2, default_realism=0.5),
        Pretrained("sr4", "x4 super-resolution of clean (bicubic-downscaled) images", scale=4, default_realism=0.5),
    ]
}


def shipped() -> list[Pretrained]:
    """The pretrained models whose weights are present in this installation."""
    return [m for m in PRETRAINED.values() if m.path.exists()]


def for_scale(scale: int) -> Pretrained:
    """The shipped super-resolution model for `enhance --scale`."""
    found = [m for m in shipped() if m.scale == scale]
    if not found:
        factors = ", ".join(str(m.scale) for m in shipped() if m.scale > 1) or "none shipped"
        raise UserError(f"--scale {scale}: no pretrained model for that factor (shipped: {factors}); "
                        f"pass --model with your own x{scale} model")
    return found[0]


def default_realism(spec: str | Path) -> float:
    """The documented realism point of a pretrained name; 0 (fidelity) for anything else."""
    model = PRETRAINED.get(str(spec))
    return model.default_realism if model is not None and model.has_realism else 0.0


def resolve(spec: str | Path) -> Path:
    """A model argument as a path: an existing file or folder wins, then a pretrained name."""
    path = Path(spec)
    if path.exists():
        return path
    if str(spec) in PRETRAINED:
        model = PRETRAINED[str(spec)]
        if not model.path.exists():
            raise UserError(f"--model {spec}: the pretrained weights are missing from this installation "
                            f"({model.path}); reinstall sagan-restore")
        return model.path
    names = ", ".join(m.name for m in shipped()) or "none shipped"
    raise UserError(f"--model {spec}: no such file or folder, and not a pretrained model ({names})")
