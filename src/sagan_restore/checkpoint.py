"""The on-disk formats: training checkpoints (torch, loaded with weights_only) and generator weights
(safetensors, with the architecture in the metadata so a model file is self-describing)."""

from __future__ import annotations

import json
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from sagan_restore.config import GeneratorConfig, config_to_dict, generator_config_from_dict
from sagan_restore.errors import UserError, first_line
from sagan_restore.io import atomic_write
from sagan_restore.models import zoo
from sagan_restore.models.generator import UNetGenerator

GENERATOR_FORMAT = "sagan-restore-generator/1"
CHECKPOINT_NAME = re.compile(r"step_(\d+)\.pt$")
CHECKPOINT_KEYS = {"step", "config", "generator", "opt_g"}
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


def save_generator_delta(path: Path, model: UNetGenerator, base_path: Path, *, info: dict | None = None) -> None:
    """Store `model` as its difference from the model in `base_path` (a file in the same folder), with every
    weight matrix's difference quantised to 4 bits per value (one float16 scale per 32 values).

    For fine-tunes such as the GAN variants, which move weights by a few percent: 28% of the size of
    float16 storage, and the rounding moves PSNR by thousandths of a dB (recipes/package_model.py checks).
    """
    base, _ = load_generator(base_path)
    if base.cfg != model.cfg:
        raise UserError(f"{base_path}: its architecture differs from the model stored as a difference from it")
    metadata = {
        "format": GENERATOR_FORMAT,
        "generator_config": json.dumps(config_to_dict(model.cfg)),
        "info": json.dumps(info or {}),
        "delta_of": Path(base_path).name,
    }
    base_state = base.state_dict()
    tensors = {}
    for name, value in model.state_dict().items():
        delta = value.detach().float().cpu() - base_state[name]
        tensors.update(_quantize_delta(name, delta) if delta.dim() >= 2 else {name: delta.half()})
    atomic_write(Path(path), lambda f: f.write(safetensors_bytes(tensors, metadata=metadata)))


DELTA_GROUP = 32  # values sharing one scale: small groups follow the delta's local size closely


def _quantize_delta(name: str, delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Symmetric 4-bit codes -7..7 (stored +8, two per byte) with a float16 scale per group of values."""
    flat = delta.flatten()
    groups = torch.cat([flat, flat.new_zeros(-flat.numel() % DELTA_GROUP)]).reshape(-1, DELTA_GROUP)
    scale = (groups.abs().amax(dim=1, keepdim=True) / 7).half().float().clamp_min(1e-8)
    codes = (torch.round(groups / scale).clamp(-7, 7) + 8).to(torch.uint8).flatten()
    return {f"{name}.codes4": codes[0::2] | (codes[1::2] << 4), f"{name}.scale": scale.half()}


def _dequantize_delta(tensors: dict[str, torch.Tensor], shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in shapes.items():
        if f"{name}.codes4" not in tensors:
            out[name] = tensors[name].float()
            continue
        packed = tensors[f"{name}.codes4"]
        codes = torch.stack([packed & 15, packed >> 4], dim=1).reshape(-1, DELTA_GROUP)
        values = (codes.float() - 8) * tensors[f"{name}.scale"].float().clamp_min(1e-8)
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


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(Path(path), lambda f: torch.save(state, f))


def prune_checkpoints(run_dir: Path, *, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints (called only after a save succeeded)."""
    for path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """Load with weights_only=True: a checkpoint holds tensors and plain values, never code to run."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about odd pickle protocols in damaged files
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(f"{path}: refused to load, it holds more than weights ({first_line(err)})")
    except UNREADABLE_CHECKPOINT as err:
        raise UserError(f"{path}: not a readable checkpoint ({first_line(err)})")
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise UserError(f"{path}: not a sagan-restore training checkpoint (expected {sorted(CHECKPOINT_KEYS)})")
    return state


class CheckpointMismatch(UserError):
    """A checkpoint that reads but does not fit this run's nets (another architecture, missing parts)."""


def newest_loadable_checkpoint(run_dir: Path, *, before_step: int | None = None,
                               apply: Callable[[dict], None] | None = None) -> tuple[dict | None, list[str]]:
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
            state = load_checkpoint(path)
            if apply is not None:
                apply(state)
            return state, failures
        except CheckpointMismatch as err:
            failures.append(f"{path}: does not fit this run ({err})")
        except UserError as err:
            failures.append(str(err))
        warnings.warn(f"skipping a checkpoint that does not load: {failures[-1]}")
    return None, failures


def generator_from_checkpoint(path: Path, *, device="cpu") -> tuple[UNetGenerator, dict]:
    state = load_checkpoint(path)
    try:
        cfg: GeneratorConfig = generator_config_from_dict(state["config"]["generator"])
        model = UNetGenerator(cfg)
        model.load_state_dict(state.get("ema", state["generator"]))  # the moving average, if the run kept one
        info = {"step": int(state["step"]), "task": state["config"]["degradation"]}
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{path}: damaged checkpoint, its weights do not fit its config ({first_line(err)})")
    return model.to(device).eval(), info


def load_model(spec: str | Path | zoo.ResolvedModel, *, device="cpu", realism: float | None = None,
               realism_model: str | Path | None = None) -> tuple[UNetGenerator, dict]:
    """A generator from a pretrained name (see models/zoo.py), a run folder (its generator.safetensors,
    else its newest checkpoint), a .safetensors file or a .pt checkpoint.

    realism: 0 = the (fidelity) model itself, 1 = its GAN fine-tune, in between = network interpolation of
    the two; None = the documented default of a pretrained name, else 0. The GAN weights come from
    `realism_model`, else from NAME_gan.safetensors beside a NAME.safetensors model (how the shipped ones
    are stored).
    """
    resolved = spec if isinstance(spec, zoo.ResolvedModel) else zoo.resolve(spec)
    if realism is None:
        realism = resolved.default_realism if realism_model is None else 1.0
    if not 0 <= realism <= 1:
        raise UserError(f"--realism {realism:g}: must be between 0 (faithful) and 1 (sharpest)")
    path = resolved.path
    model, info = _load_one(path, device=device)
    if realism == 0 and realism_model is None:
        return model, info
    partner = zoo.resolve(realism_model).path if realism_model is not None else resolved.realism_path
    if partner is None:
        raise UserError(f"--realism {realism:g}: {spec} has no realism (GAN) variant beside it; pass "
                        f"--realism-model with a GAN fine-tune of it, or leave --realism at 0")
    gan, gan_info = _load_one(partner, device=device)
    if gan.cfg != model.cfg:
        raise UserError(f"--realism-model {partner}: its architecture differs from {path}'s, so the two "
                        f"cannot be interpolated; it must be fine-tuned from that model (train --init-from)")
    interpolate_weights(model, gan, realism)
    return model, {**info, "realism": realism, "realism_model": str(partner)}


@torch.no_grad()
def interpolate_weights(fidelity: UNetGenerator, gan: UNetGenerator, realism: float) -> None:
    """Network interpolation (Wang et al., ESRGAN 2018): every weight of `fidelity` becomes
    (1 - realism) * fidelity + realism * gan. It works because the GAN model was fine-tuned from the
    fidelity one, so the two stay in the same basin and the blend moves smoothly from faithful to sharp."""
    gan_state = gan.state_dict()
    for name, tensor in fidelity.state_dict().items():
        tensor.lerp_(gan_state[name].to(tensor.dtype), realism)


def _load_one(path: Path, *, device) -> tuple[UNetGenerator, dict]:
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
