"""Training: `train(cfg)` runs pix2pix's alternating updates of D and G and returns the run folder.

Everything a run makes lives in `cfg.out`, and every file there is replaced atomically (written beside
itself, fsynced, renamed), so a crash never leaves a half-written one:
  config.json            the resolved TrainConfig
  checkpoints/step_*.pt  G, D, both optimisers, step, config, RNG state, health (the newest `keep`)
  generator.safetensors  the final generator, architecture in its metadata
  log.csv                losses every log_every iterations, validation PSNR at sample steps
  losses.png, samples.png  refreshed every sample_every iterations

What can go wrong while it runs, and what happens then:
  - SIGINT or SIGTERM: the current step finishes, a checkpoint is saved and `TrainingStopped` is raised.
  - a kill or a power cut: `train(cfg, resume=True)` continues from the newest checkpoint that loads, and
    replays exactly the data of the lost steps (every sample is a function of its index).
  - a non-finite loss or gradient: that update is skipped and counted. NONFINITE_PATIENCE in a row roll
    the nets back to the checkpoint before them with a lower learning rate; MAX_ROLLBACKS end the run.
  - a failed write (full disk): UserError, saying how to resume; the files already there stay intact.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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

LOG_FIELDS = ["step", "seconds", "g_total", "g_l1", "g_adv", "d_real", "d_fake", "val_psnr", "lr", "skipped"]
NONFINITE_PATIENCE = 5  # skipped updates in a row before rolling back
MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.5
# The temporary twin (".name.XXXX") of a file the run writes: all a kill during a write can leave behind.
PARTIAL_WRITE = re.compile(
    r"^\.(step_\d+\.pt|generator\.safetensors|config\.json|log\.csv|losses\.png|samples\.png)\.")


@dataclass
class Nets:
    generator: UNetGenerator
    discriminator: PatchDiscriminator | None  # None when adv_weight is 0: no D cost at all
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None


@dataclass
class Health:
    """Bookkeeping of non-finite steps, saved in checkpoints so a resumed run keeps its lowered lr."""

    skipped: int = 0  # steps whose update was skipped, in total
    streak: int = 0  # skipped in a row up to the current step
    rollbacks: int = 0
    lr_scale: float = 1.0  # multiplies the scheduled learning rate; each rollback lowers it

    def record(self, finite: bool) -> None:
        self.streak = 0 if finite else self.streak + 1
        self.skipped += not finite


class TrainingStopped(Exception):
    """SIGINT or SIGTERM stopped training after `step`; that state is saved in `saved`."""

    def __init__(self, signum: int, step: int, run_dir: Path, saved: Path):
        self.signum, self.step, self.run_dir, self.saved = signum, step, run_dir, saved
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}, saved {saved}; "
                         f"resume with: sagan-restore train --resume {run_dir}")


class StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the current step, which then saves. A second signal
    stops at once, which is safe too: every file is written atomically."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python runs handlers there only
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            self.__exit__()
            signal.raise_signal(signum)  # the handler from before: KeyboardInterrupt, or the default exit
            return
        self.received = signum
        print(f"\nsagan-restore: {signal.Signals(signum).name}: saving a checkpoint after this step "
              "(send it again to stop at once)", file=sys.stderr, flush=True)


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


def step_if_finite(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> bool:
    """Apply the update only if the loss and every gradient are finite; otherwise drop the gradients."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    finite = bool(torch.isfinite(loss)) and all(bool(torch.isfinite(g).all()) for g in grads)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return finite


def d_step(nets: Nets, inputs: torch.Tensor, fake: torch.Tensor, target: torch.Tensor) -> tuple[dict, bool]:
    """D learns to call (input, target) real and (input, G(input)) fake. False if the update was skipped."""
    d = nets.discriminator
    d.requires_grad_(True)
    loss_real = adversarial_loss(d(inputs, target), real=True)
    loss_fake = adversarial_loss(d(inputs, fake.detach()), real=False)
    loss = 0.5 * (loss_real + loss_fake)
    nets.opt_d.zero_grad(set_to_none=True)
    loss.backward()
    applied = step_if_finite(nets.opt_d, loss)
    return {"d_real": loss_real.item(), "d_fake": loss_fake.item()}, applied


def g_step(nets: Nets, cfg: TrainConfig, inputs, fake, target) -> tuple[dict, bool]:
    """G learns to fool D while staying close to the target in L1. False if the update was skipped."""
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
    applied = step_if_finite(nets.opt_g, loss)
    losses["g_total"] = loss.item()
    return losses, applied


def train_step(nets: Nets, cfg: TrainConfig, inputs, target) -> tuple[dict[str, float], bool]:
    """One pix2pix iteration; False if an update was skipped for a non-finite loss or gradient."""
    fake = nets.generator(inputs)
    losses, d_ok = d_step(nets, inputs, fake, target) if nets.discriminator is not None else ({}, True)
    g_losses, g_ok = g_step(nets, cfg, inputs, fake, target)
    return losses | g_losses, d_ok and g_ok


def prepare_run(cfg: TrainConfig) -> None:
    """Create the run folder for a new run; refuse to mix a new run into an old one."""
    if (cfg.out / "config.json").exists() or checkpoint.list_checkpoints(cfg.out):
        raise UserError(f"--out {cfg.out} already holds a run; use --resume {cfg.out} or another --out")
    try:
        (cfg.out / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {cfg.out}: cannot create the run folder there ({err.strerror or err})")
    write_config(cfg)


def write_config(cfg: TrainConfig) -> None:
    text = json.dumps(config_to_dict(cfg), indent=2)
    checkpoint.atomic_write(cfg.out / "config.json", lambda f: f.write(text.encode()))


def load_run_config(run_dir: Path, *, iters: int | None = None) -> TrainConfig:
    """The config a run was started with (optionally with more iterations), for --resume."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"--resume {run_dir}: no such folder")
    path = run_dir / "config.json"
    if not path.exists():
        raise UserError(f"--resume {run_dir}: no config.json there; is it a training run folder?")
    try:
        cfg = train_config_from_dict({**json.loads(path.read_text()), "out": str(run_dir)})
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{path}: not a readable run configuration ({err})")
    if iters is not None:
        cfg = train_config_from_dict({**config_to_dict(cfg), "iters": iters})
        write_config(cfg)
    return cfg


def remove_partial_writes(run_dir: Path) -> None:
    """Delete the temporary files a kill in the middle of a write left behind."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for path in folder.glob(".*") if folder.is_dir() else ():
            if PARTIAL_WRITE.match(path.name):
                path.unlink(missing_ok=True)


def state_of(nets: Nets, cfg: TrainConfig, *, step: int, health: Health, seconds: float) -> dict:
    state = {
        "step": step,
        "config": config_to_dict(cfg),
        "generator": nets.generator.state_dict(),
        "opt_g": nets.opt_g.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "health": asdict(health),
        "seconds": seconds,
    }
    if nets.discriminator is not None:
        state["discriminator"] = nets.discriminator.state_dict()
        state["opt_d"] = nets.opt_d.state_dict()
    return state


def save_state(cfg: TrainConfig, nets: Nets, *, step: int, health: Health, seconds: float) -> Path:
    path = checkpoint.checkpoint_path(cfg.out, step)
    checkpoint.save_checkpoint(path, state_of(nets, cfg, step=step, health=health, seconds=seconds))
    checkpoint.prune_checkpoints(cfg.out, keep=cfg.keep)
    return path


def load_state(nets: Nets, state: dict) -> None:
    nets.generator.load_state_dict(state["generator"])
    nets.opt_g.load_state_dict(state["opt_g"])
    if nets.discriminator is not None:
        nets.discriminator.load_state_dict(state["discriminator"])
        nets.opt_d.load_state_dict(state["opt_d"])


def initial_state(cfg: TrainConfig, device: torch.device) -> dict:
    """The state of a fresh run: the same initial weights, from the same seed."""
    seed_everything(cfg.seed)
    return state_of(build_nets(cfg, device), cfg, step=0, health=Health(), seconds=0.0)


def resume_state(cfg: TrainConfig, nets: Nets, health: Health, device: torch.device) -> tuple[int, float]:
    """Load the newest checkpoint that loads into the nets: (step to continue from, seconds trained)."""
    state = checkpoint.newest_loadable_checkpoint(cfg.out, apply=lambda s: load_state(nets, s))
    if state is None:  # none saved yet, or none usable: start over, undoing any half-applied state
        load_state(nets, initial_state(cfg, device))
        return 0, 0.0
    for key, value in state.get("health", {}).items():
        setattr(health, key, value)
    health.streak = 0
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state.get("seconds", 0.0))


def roll_back(cfg: TrainConfig, nets: Nets, health: Health, *, step: int, device: torch.device) -> int:
    """After NONFINITE_PATIENCE skipped steps in a row: back to the newest checkpoint saved before them
    (or to the initial weights) with a lower learning rate. Returns the step to continue from."""
    first_bad = step - health.streak + 1
    lr = learning_rate(cfg, step) * health.lr_scale
    if health.rollbacks >= MAX_ROLLBACKS:
        raise UserError(
            f"training diverged: steps {first_bad}-{step} had non-finite losses or gradients even after "
            f"{MAX_ROLLBACKS} rollbacks, the last at learning rate {lr:.3g}. Try a lower --lr or "
            f"--spectral-norm; the checkpoints in {cfg.out / 'checkpoints'} are finite")
    health.rollbacks += 1
    health.lr_scale *= ROLLBACK_LR_FACTOR
    health.streak = 0

    def apply(state: dict) -> None:
        load_state(nets, state)

    state = (checkpoint.newest_loadable_checkpoint(cfg.out, before_step=first_bad, apply=apply)
             or checkpoint.newest_loadable_checkpoint(cfg.out, apply=apply))
    if state is None:  # nothing saved yet
        state = initial_state(cfg, device)
        load_state(nets, state)
    back_to = int(state["step"])
    warnings.warn(f"steps {first_bad}-{step} had non-finite losses or gradients: rolled back to step "
                  f"{back_to} with the learning rate scaled by {health.lr_scale:g}, now "
                  f"{learning_rate(cfg, back_to + 1) * health.lr_scale:.3g} (rollback {health.rollbacks} of "
                  f"{MAX_ROLLBACKS})")
    return back_to


class LossLog:
    """log.csv, one row per logged step."""

    def __init__(self, path: Path, *, start_step: int):
        self.path = path
        self.truncate(start_step)

    def truncate(self, last_step: int) -> None:
        """Keep the complete rows up to `last_step`: later ones came from steps that will be replayed, and
        a kill in the middle of an append can leave the last row cut short."""
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if _complete_row(r) and int(r["step"]) <= last_step]
        text = io.StringIO()
        writer = csv.DictWriter(text, LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        checkpoint.atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))

    def append(self, row: dict) -> None:
        try:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, LOG_FIELDS).writerow({k: _fmt(row.get(k)) for k in LOG_FIELDS})
        except OSError as err:
            raise UserError(f"{self.path}: could not append to the log ({err.strerror or err})")


def _complete_row(row: dict) -> bool:
    if None in row or None in row.values():  # too many fields, or too few
        return False
    return row["step"].isdigit()


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
    for inp, out, tgt in zip(inputs[:3].cpu(), outs, targets[:3].cpu()):
        rows.append(tuple(t.numpy().transpose(1, 2, 0) for t in (inp, out, tgt)))
    save_sample_grid(rows, cfg.out / "samples.png")
    g.train()
    return val_psnr


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process decides when to stop, workers keep loading.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(samples: TrainingSamples, cfg: TrainConfig, start_step: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        samples, batch_size=cfg.batch, sampler=sample_indices(start_step, cfg.iters, cfg.batch),
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0, worker_init_fn=_ignore_sigint,
    )


@contextmanager
def resume_hint(cfg: TrainConfig, step: int):
    """A write that fails mid-run (a full disk) ends the run with the way back in its message."""
    try:
        yield
    except UserError as err:
        raise UserError(f"{err}. Training stopped at step {step}; make room and resume from the newest "
                        f"checkpoint with: sagan-restore train --resume {cfg.out}") from None


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    device = pick_device(cfg.device)
    source = build_source(cfg)  # reads and checks every image: bad data fails here, before any file is written
    samples = TrainingSamples(source, cfg)
    if resume:
        remove_partial_writes(cfg.out)
    else:
        prepare_run(cfg)
    seed_everything(cfg.seed)
    nets = build_nets(cfg, device)
    if cfg.init_from is not None and not resume:
        init_generator(nets, cfg)
    health = Health()
    start, seconds_before = resume_state(cfg, nets, health, device) if resume else (0, 0.0)
    if start >= cfg.iters:
        raise UserError(f"{cfg.out} is already at step {start} of {cfg.iters}; pass --iters N to train longer")
    log = LossLog(cfg.out / "log.csv", start_step=start)
    val = validation_pair(cfg)
    began = time.perf_counter()

    def seconds() -> float:  # training time across resumes
        return seconds_before + time.perf_counter() - began

    nets.generator.train()
    step = start
    batches = iter(make_loader(samples, cfg, start))
    with StopSignals() as stop, tqdm(total=cfg.iters, initial=start, disable=not progress, unit="it",
                                     dynamic_ncols=True) as bar:
        while step < cfg.iters:
            inputs, target = (t.to(device) for t in next(batches))
            step += 1
            lr = learning_rate(cfg, step) * health.lr_scale
            set_learning_rate(nets, lr)
            losses, finite = train_step(nets, cfg, inputs, target)
            health.record(finite)
            if health.streak >= NONFINITE_PATIENCE:
                step = roll_back(cfg, nets, health, step=step, device=device)
                log.truncate(step)
                batches = iter(make_loader(samples, cfg, step))
                bar.n = step
                bar.refresh()
                continue
            stopping = stop.received  # read once: a signal may arrive while this step writes
            with resume_hint(cfg, step):
                if step % cfg.sample_every == 0 or step == cfg.iters:
                    losses["val_psnr"] = write_samples(cfg, nets.generator, (inputs, target), val, device)
                if step % cfg.log_every == 0 or "val_psnr" in losses:
                    log.append({"step": step, "seconds": seconds(), **losses, "lr": lr, "skipped": health.skipped})
                    bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items() if v is not None}, refresh=False)
                if "val_psnr" in losses:
                    plot_losses(cfg.out / "log.csv", cfg.out / "losses.png")
                if step % cfg.save_every == 0 or step == cfg.iters or stopping:
                    saved = save_state(cfg, nets, step=step, health=health, seconds=seconds())
            if stopping and step < cfg.iters:
                raise TrainingStopped(stopping, step, cfg.out, saved)
            bar.update(1)
    if health.skipped:
        warnings.warn(f"{health.skipped} step(s) were skipped for non-finite losses or gradients, "
                      f"{health.rollbacks} rollback(s); see the 'skipped' and 'lr' columns of log.csv")
    info = {"task": config_to_dict(cfg.degradation), "steps": cfg.iters}
    with resume_hint(cfg, step):
        checkpoint.save_generator(cfg.out / "generator.safetensors", nets.generator, info=info)
    return cfg.out
