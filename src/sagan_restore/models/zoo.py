"""Pretrained models shipped inside the package: the one name table of the project.

The weights live in `sagan_restore/weights/NAME.safetensors` (half precision); each file carries its
architecture, recipe, training details and measured scores in its metadata (see
`recipes/package_model.py`), so this table only maps user-facing names to files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagan_restore.errors import UserError

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class Pretrained:
    name: str
    summary: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"


PRETRAINED = {
    m.name: m
    for m in [
        Pretrained("denoise", "blind denoiser for Gaussian noise sigma 0..55, colour and grey, 8-bit or float input"),
    ]
}


def shipped() -> list[Pretrained]:
    """The pretrained models whose weights are present in this installation."""
    return [m for m in PRETRAINED.values() if m.path.exists()]


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
