"""The on-disk formats: training checkpoints (torch, loaded with weights_only; `TrainingState` is their one
schema) and generator weights (safetensors, with the architecture in the metadata so a model file is
self-describing). Turning a model name or path into a ready generator is infer/loading.py's job."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from sagan_restore.config import config_to_dict, generator_config_from_dict
from sagan_restore.errors import UserError, first_line
from sagan_restore.io import atomic_write
from sagan_restore.models.generator import UNetGenerator

GENERATOR_FORMAT = "sagan-restore-generator/1"
CHECKPOINT_NAME = re.compile(r"step_(\d+)\.pt$")
# What torch.load raises on a damaged file: its unpickler works through whatever the bytes say
# (tests/test_fuzz.py finds the IndexError and KeyError cases).
UNREADABLE_CHECKPOINT = (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, IndexError, KeyError,
                         TypeError, struct.error)


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
    atomic_write(Path(path), lambda f: f.write(safetensors_bytes(tensors, metadata=metadata)))


def save_generator_delta(path: Path, model: UNetGenerator, base_path: Path, *, info: dict | None = None,
                         group: int = 32, bits: int = 4) -> None:
    """Store `model` as its difference from the model in `base_path` (a file in the same folder), with every
    weight matrix's difference quantised to 4 bits per value (one float16 scale per `group` values: 32 by
    default; 16 or 8 follow a fine-tune that moved its weights further more closely, for 0.06 or 0.19 more
    bytes per value), or to 8 bits (`bits=8`: 16 times finer steps, for a long fine-tune; 53% of float16's
    size at group 32). Loading reads the codes and the group size back from the stored names and shapes.

    For fine-tunes such as the GAN variants, which move weights by a few percent: 28% of the size of
    float16 storage, and the rounding moves PSNR by thousandths of a dB (recipes/package_model.py checks).
    """
    if bits not in DELTA_CODES:
        raise ValueError(f"bits must be one of {sorted(DELTA_CODES)}, not {bits}")
    base, _ = load_generator(base_path)
    if base.cfg != model.cfg:
        raise UserError(f"{base_path}: its architecture differs from the model stored as a difference from it")
    metadata = {
        "format": GENERATOR_FORMAT,
        "generator_config": json.dumps(config_to_dict(model.cfg)),
        "info": json.dumps(info or {}),
        "delta_of": Path(base_path).name,
        "delta_base_sha256": weights_fingerprint(base),
    }
    base_state = base.state_dict()
    tensors = {}
    for name, value in model.state_dict().items():
        delta = value.detach().float().cpu() - base_state[name]
        tensors.update(_quantize_delta(name, delta, group, bits) if delta.dim() >= 2 else {name: delta.half()})
    atomic_write(Path(path), lambda f: f.write(safetensors_bytes(tensors, metadata=metadata)))


def weights_fingerprint(model: UNetGenerator) -> str:
    """SHA-256 of the weights' names and float32 values: a difference file records its base's, so that a
    base retrained with the same architecture cannot silently turn its differences into other weights."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


DELTA_CODES = {4: 7, 8: 127}  # bits per value: the largest code of the symmetric range


def _quantize_delta(name: str, delta: torch.Tensor, group: int, bits: int = 4) -> dict[str, torch.Tensor]:
    """Symmetric codes with a float16 scale per group of values (small groups follow the delta's local size
    closely): 4 bits, -7..7 stored +8, two per byte; or 8 bits, -127..127 stored +128, one per byte."""
    top = DELTA_CODES[bits]
    flat = delta.flatten()
    groups = torch.cat([flat, flat.new_zeros(-flat.numel() % group)]).reshape(-1, group)
    scale = (groups.abs().amax(dim=1, keepdim=True) / top).half().float().clamp_min(1e-8)
    codes = (torch.round(groups / scale).clamp(-top, top) + top + 1).to(torch.uint8).flatten()
    if bits == 8:
        return {f"{name}.codes8": codes, f"{name}.scale": scale.half()}
    return {f"{name}.codes4": codes[0::2] | (codes[1::2] << 4), f"{name}.scale": scale.half()}


def _dequantize_delta(tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in shapes.items():
        if f"{name}.codes8" in tensors:
            codes, scale = tensors[f"{name}.codes8"], tensors[f"{name}.scale"]
            codes, offset = codes.reshape(scale.shape[0], -1), 128
        elif f"{name}.codes4" in tensors:
            packed, scale = tensors[f"{name}.codes4"], tensors[f"{name}.scale"]
            codes = torch.stack([packed & 15, packed >> 4], dim=1).reshape(scale.shape[0], -1)  # two per byte
            offset = 8
        else:
            out[name] = tensors[name].float()
            continue
        values = (codes.float() - offset) * scale.float().clamp_min(1e-8)
        out[name] = values.flatten()[: shape.numel()].reshape(shape)
    return out


def load_generator(path: Path, *, device: str | torch.device = "cpu") -> tuple[UNetGenerator, dict]:
    """A generator in eval mode, built from the file's own metadata, and the file's info dict. A file
    stored as a difference (save_generator_delta) is added to its base model, found beside it."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors model ({err})")
    if metadata.get("format") != GENERATOR_FORMAT:
        raise UserError(f"{path}: not a sagan-restore generator (no '{GENERATOR_FORMAT}' metadata)")
    if "delta_of" in metadata:
        base_path = path.with_name(metadata["delta_of"])
        if base_path.name == path.name:
            raise UserError(f"{path}: damaged difference file, it names itself as its base")
        if not base_path.exists():
            raise UserError(f"{path}: stored as a difference from {base_path.name}, which is missing beside it")
        base, _ = load_generator(base_path)
        expected = metadata.get("delta_base_sha256")  # absent in files written before it was recorded
        if expected is not None and expected != weights_fingerprint(base):
            raise UserError(f"{path}: stored as a difference from {base_path.name}, whose weights have changed "
                            f"since; reinstall sagan-restore, or package this model again against the new "
                            f"{base_path.name}")
        try:
            delta = _dequantize_delta(state, {k: v.shape for k, v in base.state_dict().items()})
        except (KeyError, RuntimeError) as err:
            raise UserError(f"{path}: damaged difference file, it does not fit {base_path.name} ({first_line(err)})")
        state = {k: v + delta[k] for k, v in base.state_dict().items()}
    try:
        cfg = generator_config_from_dict(json.loads(metadata["generator_config"]))
        info = json.loads(metadata.get("info", "{}"))
        model = UNetGenerator(cfg)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{path}: damaged generator file, its weights do not fit its metadata "
                        f"({first_line(err)})")
    return model.to(device).eval(), info


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_step(path: Path) -> int:
    return int(CHECKPOINT_NAME.search(Path(path).name).group(1))


def prune_checkpoints(run_dir: Path, *, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (called only after a save succeeded)."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped: one training checkpoint.

    Stored as a plain dict of tensors and values (torch.save), the parts a run does not have left out,
    so that loading needs no code from the file (weights_only=True) and old checkpoints keep loading.
    """

    step: int
    config: dict  # the run's TrainConfig as a dict (config_to_dict)
    generator: dict
    opt_g: dict
    torch_rng: torch.Tensor | None = None
    health: dict = field(default_factory=dict)  # train.Health as a dict
    seconds: float = 0.0  # wall-clock seconds of training so far
    cpu_seconds: float = 0.0  # CPU seconds of the process family so far
    discriminator: dict | None = None
    opt_d: dict | None = None
    ema: dict | None = None  # the generator's moving average, in runs that keep one

    REQUIRED = ("step", "config", "generator", "opt_g")

    def to_dict(self) -> dict:
        """What torch.save writes: the fields a run has (no deep copy of the tensors, unlike asdict)."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    def save(self, path: Path) -> None:
        atomic_write(Path(path), lambda f: torch.save(self.to_dict(), f))

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        """Load with weights_only=True: a checkpoint holds tensors and plain values, never code to run."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch warns about odd pickle protocols in damaged files
                state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UserError(f"{path}: refused to load, it holds more than weights ({first_line(err)})")
        except UNREADABLE_CHECKPOINT as err:
            raise UserError(f"{path}: not a readable checkpoint ({first_line(err)})")
        if not isinstance(state, dict) or not set(cls.REQUIRED) <= state.keys():
            raise UserError(f"{path}: not a sagan-restore training checkpoint (expected {list(cls.REQUIRED)})")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in known})

    @property
    def inference_weights(self) -> dict:
        """The weights to enhance with: the moving average where the run kept one."""
        return self.ema if self.ema is not None else self.generator


class CheckpointMismatch(UserError):
    """A checkpoint that reads but does not fit this run's nets (another architecture, missing parts)."""


def newest_loadable_checkpoint(run_dir: Path, *, before_step: int | None = None,
                               apply: Callable[[TrainingState], None] | None = None
                               ) -> tuple[TrainingState | None, list[str]]:
    """The newest checkpoint of a run that loads (optionally only those saved before a step), or None,
    and why each newer one did not.

    `apply` puts a loaded state into the nets; a state it refuses (CheckpointMismatch) counts as not
    loading. Each checkpoint that does not load (damaged on disk, copied incompletely, crafted) is skipped
    with a warning, so a bad file costs only the steps since the checkpoint before it. Only those errors
    are caught: any other exception is a bug and propagates.
    """
    failures = []
    for path in reversed(list_checkpoints(run_dir)):
        if before_step is not None and checkpoint_step(path) >= before_step:
            continue
        try:
            state = TrainingState.load(path)
            if apply is not None:
                apply(state)
            return state, failures
        except CheckpointMismatch as err:
            failures.append(f"{path}: does not fit this run ({err})")
        except UserError as err:
            failures.append(str(err))
        warnings.warn(f"skipping a checkpoint that does not load: {failures[-1]}")
    return None, failures
