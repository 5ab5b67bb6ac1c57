"""The on-disk formats: training checkpoints (torch, loaded with weights_only) and generator weights
(safetensors, with the architecture in the metadata so a model file is self-describing)."""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from sagan_restore.config import GeneratorConfig, config_to_dict, generator_config_from_dict
from sagan_restore.errors import UserError
from sagan_restore.models import zoo
from sagan_restore.models.generator import UNetGenerator

GENERATOR_FORMAT = "sagan-restore-generator/1"
CHECKPOINT_NAME = re.compile(r"step_(\d+)\.pt$")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, fsync it, then rename over `path`.

    A crash leaves either the old file or the new one, never a truncated mix.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_generator(path: Path, model: UNetGenerator, *, info: dict | None = None, half: bool = False) -> None:
    """safetensors weights + metadata: the GeneratorConfig and free-form info (task, steps, ...).

    `half` stores float16 (half the size, for shipped weights); loading always gives float32.
    """
    metadata = {
        "format": GENERATOR_FORMAT,
        "generator_config": json.dumps(config_to_dict(model.cfg)),
        "info": json.dumps(info or {}),
    }
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    _atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> tuple[UNetGenerator, dict]:
    """A generator in eval mode, built from the file's own metadata, and the file's info dict."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors model ({err})")
    if metadata.get("format") != GENERATOR_FORMAT:
        raise UserError(f"{path}: not a sagan-restore generator (no '{GENERATOR_FORMAT}' metadata)")
    cfg = generator_config_from_dict(json.loads(metadata["generator_config"]))
    model = UNetGenerator(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device).eval(), json.loads(metadata.get("info", "{}"))


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(path: Path, state: dict) -> None:
    _atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True: a checkpoint holds tensors and plain values, never code to run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"{path}: refused to load, it holds more than weights ({str(err).splitlines()[0]})")
    except (RuntimeError, EOFError, OSError) as err:
        raise UserError(f"{path}: not a readable checkpoint ({str(err).splitlines()[0]})")


def generator_from_checkpoint(path: Path, *, device="cpu") -> tuple[UNetGenerator, dict]:
    state = load_checkpoint(path)
    cfg: GeneratorConfig = generator_config_from_dict(state["config"]["generator"])
    model = UNetGenerator(cfg)
    model.load_state_dict(state["generator"])
    return model.to(device).eval(), {"step": state["step"], "task": state["config"]["degradation"]}


def load_model(spec: str | Path, *, device="cpu") -> tuple[UNetGenerator, dict]:
    """A generator from a pretrained name (see models/zoo.py), a run folder (its generator.safetensors,
    else its newest checkpoint), a .safetensors file or a .pt checkpoint."""
    path = zoo.resolve(spec)
    if path.is_dir():
        if (path / "generator.safetensors").exists():
            return load_generator(path / "generator.safetensors", device=device)
        checkpoints = list_checkpoints(path)
        if checkpoints:
            return generator_from_checkpoint(checkpoints[-1], device=device)
        raise UserError(f"--model {path}: the folder has neither generator.safetensors nor checkpoints/")
    if path.suffix == ".safetensors":
        return load_generator(path, device=device)
    if path.suffix == ".pt":
        return generator_from_checkpoint(path, device=device)
    raise UserError(f"--model {path}: expected a run folder, a .safetensors file or a .pt checkpoint")
