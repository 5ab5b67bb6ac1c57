"""A generator ready to enhance with, from whatever a user names: a pretrained model, a run folder, a
weights file or a training checkpoint; with the realism slider's blend of a model and its GAN fine-tune."""

from __future__ import annotations

from pathlib import Path

import torch

from sagan_restore.checkpoint import TrainingState, list_checkpoints, load_generator
from sagan_restore.config import generator_config_from_dict
from sagan_restore.errors import UserError, first_line
from sagan_restore.models import zoo
from sagan_restore.models.generator import UNetGenerator


def generator_from_checkpoint(path: Path, *, device="cpu") -> tuple[UNetGenerator, dict]:
    state = TrainingState.load(path)
    try:
        model = UNetGenerator(generator_config_from_dict(state.config["generator"]))
        model.load_state_dict(state.inference_weights)
        info = {"step": int(state.step), "task": state.config["degradation"]}
        if state.config.get("value_range") is not None:  # a raster model's normalisation, as in its final file
            info["value_range"] = state.config["value_range"]
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(f"{path}: damaged checkpoint, its weights do not fit its config ({first_line(err)})")
    return model.to(device).eval(), info


def load_model(spec: str | Path | zoo.ResolvedModel, *, device="cpu", realism: float | None = None,
               realism_model: str | Path | None = None, strength: float = 1.0) -> tuple[UNetGenerator, dict]:
    """A generator from a pretrained name (see models/zoo.py), a run folder (its generator.safetensors,
    else its newest checkpoint), a .safetensors file or a .pt checkpoint.

    realism: 0 = the (fidelity) model itself, 1 = its GAN fine-tune, in between = network interpolation of
    the two; None = the documented default of a pretrained name, else 0. The GAN weights come from
    `realism_model`, else from NAME_gan.safetensors beside a NAME.safetensors model (how the shipped ones
    are stored). strength: for a model with a light variant beside it (NAME_light.safetensors), the blend
    of the two, 1 = the model, 0 = the light variant (info then holds "strength_model"); other models leave
    it to their noise-level input (infer/enhance.py).
    """
    resolved = spec if isinstance(spec, zoo.ResolvedModel) else zoo.resolve(spec)
    if realism is None:
        realism = resolved.default_realism if realism_model is None else 1.0
    if not 0 <= realism <= 1:
        raise UserError(f"--realism {realism:g}: must be between 0 (faithful) and 1 (sharpest)")
    path = resolved.path
    model, info = _load_one(path, device=device)
    if resolved.strength_path is not None:
        model, info = _blended_with_light(model, info, resolved.strength_path, strength, device=device)
    if realism == 0 and realism_model is None:
        return model, info
    partner = zoo.resolve(realism_model).path if realism_model is not None else resolved.realism_path
    if partner is None:
        raise UserError(f"--realism {realism:g}: {spec} has no realism (GAN) variant beside it; pass "
                        f"--realism-model with a GAN fine-tune of it, or leave --realism at 0")
    _move_towards(model, partner, realism, device=device, option="--realism-model")
    return model, {**info, "realism": realism, "realism_model": str(partner)}


@torch.no_grad()
def interpolate_weights(fidelity: UNetGenerator, gan: UNetGenerator, realism: float) -> None:
    """Network interpolation (Wang et al., ESRGAN 2018): every weight of `fidelity` becomes
    (1 - realism) * fidelity + realism * gan. It works because the GAN model was fine-tuned from the
    fidelity one, so the two stay in the same basin and the blend moves smoothly from faithful to sharp."""
    gan_state = gan.state_dict()
    for name, tensor in fidelity.state_dict().items():
        tensor.lerp_(gan_state[name].to(tensor.dtype), realism)


def _blended_with_light(model: UNetGenerator, info: dict, light_path: Path, strength: float, *,
                        device) -> tuple[UNetGenerator, dict]:
    """The model's weights moved towards its light variant's: strength * model + (1 - strength) * light,
    the network interpolation of Real-ESRGAN's --denoise_strength, which works because the light variant is
    a fine-tune of the model."""
    if not 0 <= strength <= 1:
        raise UserError(f"--strength {strength:g}: this model blends with its light variant, so it takes 0 "
                        "(removes JPEG artefacts, keeps the grain) to 1 (removes noise too, the default)")
    if strength != 1:
        _move_towards(model, light_path, 1 - strength, device=device, option="--strength's light variant")
    return model, {**info, "strength": strength, "strength_model": str(light_path)}


def _move_towards(model: UNetGenerator, partner: Path, weight: float, *, device, option: str) -> None:
    """Interpolate `model`'s weights `weight` of the way towards those of the fine-tune stored at `partner`
    (the realism and the strength blends alike); the two must share an architecture."""
    other, _ = _load_one(partner, device=device)
    if other.cfg != model.cfg:
        raise UserError(f"{option} {partner}: its architecture differs from the model's, so the two cannot "
                        "be interpolated; it must be fine-tuned from that model (train --init-from)")
    interpolate_weights(model, other, weight)


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
