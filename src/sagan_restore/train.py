"""Training: `train(cfg)` runs pix2pix's alternating updates of D and G and returns the run folder.

Everything a run makes lives in `cfg.out`:
  config.json            the resolved TrainConfig
  checkpoints/step_*.pt  G, D, both optimisers, step, config, RNG state (every save_every and at the end)
  generator.safetensors  the final generator, architecture in its metadata
  log.csv                losses every log_every iterations, validation PSNR at sample steps
  losses.png, samples.png  refreshed every sample_every iterations
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sagan_restore import checkpoint
from sagan_restore.config import TrainConfig, config_to_dict, train_config_from_dict
from sagan_restore.data.datasets import TrainingSamples, build_source, sample_indices, to_tensor, validation_pair
from sagan_restore.errors import UserError
from sagan_restore.metrics import psnr
from sagan_restore.models.discriminator import PatchDiscriminator
from sagan_restore.models.generator import UNetGenerator
from sagan_restore.models.losses import adversarial_loss, l1_loss
from sagan_restore.plots import plot_losses, save_sample_grid

LOG_FIELDS = ["step", "seconds", "g_total", "g_l1", "g_adv", "d_real", "d_fake", "val_psnr"]


@dataclass
class Nets:
    generator: UNetGenerator
    discriminator: PatchDiscriminator | None  # None when adv_weight is 0: no D cost at all
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is available here; use --device cpu")
    return torch.device(name)


def build_nets(cfg: TrainConfig, device: torch.device) -> Nets:
    g = UNetGenerator(cfg.generator).to(device)
    opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=cfg.betas)
    if cfg.adv_weight <= 0:
        return Nets(g, None, opt_g, None)
    d_in = cfg.generator.in_channels + cfg.generator.out_channels
    d = PatchDiscriminator(d_in, width=cfg.d_width, layers=cfg.d_layers, spectral_norm=cfg.spectral_norm).to(device)
    opt_d = torch.optim.Adam(d.parameters(), lr=cfg.lr, betas=cfg.betas)
    return Nets(g, d, opt_g, opt_d)


def init_generator(nets: Nets, cfg: TrainConfig) -> None:
    """Copy trained weights into the fresh generator (--init-from); the architectures must agree."""
    model, _ = checkpoint.load_model(cfg.init_from)
    if model.cfg != cfg.generator:
        raise UserError(f"--init-from {cfg.init_from}: its architecture {model.cfg} differs from the "
                        f"requested {cfg.generator}; pass matching --width/--depth/--blocks/--attn-levels")
    nets.generator.load_state_dict(model.state_dict())


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant, then (after lr_decay_from * iters) linear decay to 0, as pix2pix's 'linear' policy."""
    decay_start = cfg.lr_decay_from * cfg.iters
    if step <= decay_start:
        return cfg.lr
    return cfg.lr * max(0.0, (cfg.iters - step) / max(cfg.iters - decay_start, 1))


def set_learning_rate(nets: Nets, lr: float) -> None:
    for opt in (nets.opt_g, nets.opt_d):
        for group in opt.param_groups if opt is not None else ():
            group["lr"] = lr


def d_step(nets: Nets, inputs: torch.Tensor, fake: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """D learns to call (input, target) real and (input, G(input)) fake."""
    d = nets.discriminator
    d.requires_grad_(True)
    loss_real = adversarial_loss(d(inputs, target), real=True)
    loss_fake = adversarial_loss(d(inputs, fake.detach()), real=False)
    nets.opt_d.zero_grad(set_to_none=True)
    (0.5 * (loss_real + loss_fake)).backward()
    nets.opt_d.step()
    return {"d_real": loss_real.item(), "d_fake": loss_fake.item()}


def g_step(nets: Nets, cfg: TrainConfig, inputs, fake, target) -> dict[str, float]:
    """G learns to fool D while staying close to the target in L1."""
    loss_l1 = l1_loss(fake, target)
    loss = cfg.l1_weight * loss_l1
    losses = {"g_l1": loss_l1.item()}
    if nets.discriminator is not None:
        nets.discriminator.requires_grad_(False)  # G's step must not accumulate gradients in D
        loss_adv = adversarial_loss(nets.discriminator(inputs, fake), real=True)
        loss = loss + cfg.adv_weight * loss_adv
        losses["g_adv"] = loss_adv.item()
    nets.opt_g.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_g.step()
    losses["g_total"] = loss.item()
    return losses


def prepare_run(cfg: TrainConfig) -> None:
    """Create the run folder for a new run; refuse to mix a new run into an old one."""
    if (cfg.out / "config.json").exists() or checkpoint.list_checkpoints(cfg.out):
        raise UserError(f"--out {cfg.out} already holds a run; use --resume {cfg.out} or another --out")
    (cfg.out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (cfg.out / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))


def load_run_config(run_dir: Path, *, iters: int | None = None) -> TrainConfig:
    """The config a run was started with (optionally with more iterations), for --resume."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise UserError(f"--resume {run_dir}: no config.json there; is it a training run folder?")
    cfg = train_config_from_dict(json.loads(path.read_text()))
    cfg = train_config_from_dict({**config_to_dict(cfg), "out": str(run_dir)})
    if iters is not None:
        cfg = train_config_from_dict({**config_to_dict(cfg), "iters": iters})
        path.write_text(json.dumps(config_to_dict(cfg), indent=2))
    return cfg


def save_state(cfg: TrainConfig, nets: Nets, step: int) -> None:
    state = {
        "step": step,
        "config": config_to_dict(cfg),
        "generator": nets.generator.state_dict(),
        "opt_g": nets.opt_g.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if nets.discriminator is not None:
        state["discriminator"] = nets.discriminator.state_dict()
        state["opt_d"] = nets.opt_d.state_dict()
    checkpoint.save_checkpoint(checkpoint.checkpoint_path(cfg.out, step), state)


def restore_state(cfg: TrainConfig, nets: Nets) -> int:
    """Load the newest checkpoint into the nets; the step to continue from (0 if there is none)."""
    found = checkpoint.list_checkpoints(cfg.out)
    if not found:
        return 0
    state = checkpoint.load_checkpoint(found[-1])
    nets.generator.load_state_dict(state["generator"])
    nets.opt_g.load_state_dict(state["opt_g"])
    if nets.discriminator is not None:
        nets.discriminator.load_state_dict(state["discriminator"])
        nets.opt_d.load_state_dict(state["opt_d"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


class LossLog:
    """log.csv, one row per logged step. On resume, rows past the restored step are dropped: they came
    from iterations that will be replayed."""

    def __init__(self, path: Path, *, start_step: int):
        self.path = path
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= start_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow({k: _fmt(row.get(k)) for k in LOG_FIELDS})


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@torch.no_grad()
def write_samples(cfg: TrainConfig, g: UNetGenerator, batch, val, device) -> float | None:
    """Refresh samples.png (validation photo, then batch crops) and return the validation PSNR."""
    g.eval()
    rows, val_psnr = [], None
    if val is not None:
        noisy, clean = val
        out = g(to_tensor(noisy)[None].to(device))[0].cpu().numpy().transpose(1, 2, 0)
        out = np.round(np.clip(out, 0, 1) * 255) / 255  # scored as the saved 8-bit file would be
        val_psnr = psnr(out, clean)
        rows.append((noisy, out, clean))
    inputs, targets = batch
    outs = g(inputs[:3].to(device)).cpu()
    for inp, out, tgt in zip(inputs[:3], outs, targets[:3]):
        rows.append(tuple(t.numpy().transpose(1, 2, 0) for t in (inp, out, tgt)))
    save_sample_grid(rows, cfg.out / "samples.png")
    g.train()
    return val_psnr


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    if not resume:
        prepare_run(cfg)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    source = build_source(cfg)
    samples = TrainingSamples(source, cfg)
    nets = build_nets(cfg, device)
    if cfg.init_from is not None and not resume:
        init_generator(nets, cfg)
    start = restore_state(cfg, nets) if resume else 0
    if start >= cfg.iters:
        raise UserError(f"{cfg.out} is already at step {start} of {cfg.iters}; pass --iters N to train longer")
    loader = torch.utils.data.DataLoader(
        samples, batch_size=cfg.batch, sampler=sample_indices(start, cfg.iters, cfg.batch),
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
    )
    log = LossLog(cfg.out / "log.csv", start_step=start)
    val = validation_pair(cfg)
    bar = tqdm(total=cfg.iters, initial=start, disable=not progress, unit="it", dynamic_ncols=True)
    began = time.perf_counter()
    nets.generator.train()
    for step, (inputs, target) in enumerate(loader, start=start + 1):
        inputs, target = inputs.to(device), target.to(device)
        set_learning_rate(nets, learning_rate(cfg, step))
        fake = nets.generator(inputs)
        losses = d_step(nets, inputs, fake, target) if nets.discriminator is not None else {}
        losses |= g_step(nets, cfg, inputs, fake, target)
        if step % cfg.sample_every == 0 or step == cfg.iters:
            losses["val_psnr"] = write_samples(cfg, nets.generator, (inputs, target), val, device)
        if step % cfg.log_every == 0 or "val_psnr" in losses:
            log.append({"step": step, "seconds": time.perf_counter() - began, **losses})
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if v is not None}, refresh=False)
        if "val_psnr" in losses:
            plot_losses(cfg.out / "log.csv", cfg.out / "losses.png")
        if step % cfg.save_every == 0 or step == cfg.iters:
            save_state(cfg, nets, step)
        bar.update(1)
    bar.close()
    info = {"task": config_to_dict(cfg.degradation), "steps": cfg.iters}
    checkpoint.save_generator(cfg.out / "generator.safetensors", nets.generator, info=info)
    return cfg.out
