"""Training: `train(cfg)` runs pix2pix's alternating updates of D and G and returns the run folder.

Everything a run makes lives in `cfg.out`, and every file there is replaced atomically (written beside
itself, fsynced, renamed), so a crash never leaves a half-written one:
  config.json            the resolved TrainConfig
  checkpoints/step_*.pt  G, D, EMA, both optimisers, step, config, RNG state, health (the newest `keep`)
  generator.safetensors  the final generator (the EMA weights with --ema), architecture in its metadata
  log.csv                losses, learning rate, throughput every log_every steps; validation PSNR
  losses.png, samples.png  refreshed every sample_every iterations
  tensorboard/           the same numbers for TensorBoard, with --tensorboard

Scaling: under torchrun each process trains on its own share of every global batch (`StepSamples`) and
DistributedDataParallel averages the gradients, so the replicas stay identical and the run matches one
process with the same --batch; rank 0 alone writes files (see distributed.py). Gradient accumulation,
bf16 autocast, torch.compile, channels-last and DataLoader workers change speed and memory, not the math.

What can go wrong while it runs, and what happens then:
  - SIGINT or SIGTERM: the current step finishes, a checkpoint is saved and `TrainingStopped` is raised.
  - a kill or a power cut: `train(cfg, resume=True)` continues from the newest checkpoint that loads, and
    replays exactly the data of the lost steps (every sample is a function of its index).
  - a non-finite loss or gradient: that update is skipped and counted. NONFINITE_PATIENCE in a row roll
    the nets back to the checkpoint before them with a lower learning rate; MAX_ROLLBACKS end the run.
  - a failed write (full disk): UserError, saying how to resume; the files already there stay intact.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import random
import re
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sagan_restore import checkpoint, distributed
from sagan_restore.config import TrainConfig, config_to_dict, train_config_from_dict
from sagan_restore.data.datasets import (StepSamples, TrainingSamples, build_source, to_tensor, validation_pairs,
                                         with_value_range)
from sagan_restore.data.degradations import quantize_8bit
from sagan_restore.devices import pick_device, uses_bf16
from sagan_restore.errors import UserError, first_line
from sagan_restore.infer.loading import load_model
from sagan_restore.io import JPEG_BLOCK, atomic_write
from sagan_restore.metrics import psnr
from sagan_restore.models.discriminator import PatchDiscriminator, UNetDiscriminator
from sagan_restore.models.generator import UNetGenerator, attention_moved, grown_blocks, start_as_identity
from sagan_restore.models.losses import (adversarial_loss, artifact_loss, block_boundary_loss, chroma_detail_loss,
                                         detail_amplitude_loss, feature_matching_loss, frequency_loss,
                                         phase_locked_loss, pixel_loss)
from sagan_restore.plots import plot_losses, save_sample_grid

LOG_FIELDS = ["step", "seconds", "g_total", "g_l1", "g_adv", "d_real", "d_fake", "val_psnr", "lr", "skipped",
              "images_per_s", "data_wait", "cpu_seconds"]
LATER_LOG_FIELDS = {"cpu_seconds"}  # added after the first release: logs of older runs lack them
NONFINITE_PATIENCE = 5  # skipped updates in a row before rolling back
MAX_ROLLBACKS = 3
ROLLBACK_LR_FACTOR = 0.5
# The temporary twin (".name.XXXX") of a file the run writes: all a kill during a write can leave behind.
PARTIAL_WRITE = re.compile(
    r"^\.(step_\d+\.pt|generator\.safetensors|config\.json|log\.csv|losses\.png|samples\.png)\.")


@dataclass
class Nets:
    generator: UNetGenerator
    discriminator: PatchDiscriminator | UNetDiscriminator | None  # None when adv_weight is 0: no D cost
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None
    ema: UNetGenerator | None = None  # moving average of the generator's weights (--ema)
    # What the training step calls: the nets themselves, or DDP / torch.compile wrappers sharing their
    # parameters. Checkpoints, samples and the G step's pass through D use the plain nets.
    train_g: torch.nn.Module | None = None
    train_d: torch.nn.Module | None = None

    @property
    def final_generator(self) -> UNetGenerator:
        """What samples, validation and generator.safetensors use: the EMA weights when there are some."""
        return self.ema if self.ema is not None else self.generator


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
        self.signum, self.step, self.run_dir, self.saved = int(signum), step, run_dir, saved
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}, saved {saved}; "
                         f"resume with: sagan-restore train --resume {run_dir}")


class StopSignals:
    """SIGINT and SIGTERM ask the loop to stop after the current step, which then saves. A second signal
    stops at once, which is safe too: every file is written atomically."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, *, announce: bool = True):
        self.received: int | None = None
        self.announce = announce  # under torchrun every process gets the signal; one of them says so
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
        if self.announce:
            print(f"\nsagan-restore: {signal.Signals(signum).name}: saving a checkpoint after this step "
                  "(send it again to stop at once)", file=sys.stderr, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_nets(cfg: TrainConfig, device: torch.device) -> Nets:
    g = UNetGenerator(cfg.generator).to(device)
    d = None
    if cfg.adv_weight > 0:
        d_in = cfg.generator.out_channels + (cfg.generator.in_channels if cfg.d_conditional else 0)
        if cfg.d_arch == "unet":
            d = UNetDiscriminator(d_in, width=cfg.d_width, conditional=cfg.d_conditional,
                                  highpass=cfg.d_highpass)
        else:
            d = PatchDiscriminator(d_in, width=cfg.d_width, layers=cfg.d_layers, spectral_norm=cfg.spectral_norm,
                                   norm=cfg.d_norm, conditional=cfg.d_conditional, highpass=cfg.d_highpass)
        d = d.to(device)
    if cfg.channels_last:
        for net in (g, d):
            if net is not None:
                net.to(memory_format=torch.channels_last)
    opt_g = make_optimizer(g, cfg)
    opt_d = make_optimizer(d, cfg) if d is not None else None
    ema = copy.deepcopy(g).requires_grad_(False) if cfg.ema > 0 else None
    return Nets(g, d, opt_g, opt_d, ema, train_g=g, train_d=d)


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.weight_decay > 0:
        return torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=cfg.betas)


def wrap_for_training(nets: Nets, cfg: TrainConfig, rank: distributed.Rank, device: torch.device) -> None:
    """DistributedDataParallel under torchrun, then torch.compile if asked. D gets a DDP wrapper for its
    own step only: G's step runs the plain D, whose parameters take no gradient there."""
    if rank.is_distributed:
        ids = [device.index] if device.type == "cuda" else None
        nets.train_g = DistributedDataParallel(nets.generator, device_ids=ids)
        if nets.discriminator is not None:
            if device.type == "cuda":  # batch norm statistics over all GPUs' samples (a no-op for other norms)
                nets.discriminator = torch.nn.SyncBatchNorm.convert_sync_batchnorm(nets.discriminator)
            nets.train_d = DistributedDataParallel(nets.discriminator, device_ids=ids)
    if cfg.compile:
        nets.train_g = torch.compile(nets.train_g)
        if nets.train_d is not None:
            nets.train_d = torch.compile(nets.train_d)


def autocast_for(cfg: TrainConfig, device: torch.device):
    """A factory of autocast contexts: bf16 where `uses_bf16`. The weights, the optimiser and the losses
    stay float32; bf16 keeps float32's exponent range, so unlike float16 it needs no loss scaling."""
    return partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg.precision, device))


def init_generator(nets: Nets, cfg: TrainConfig) -> None:
    """Copy trained weights into the fresh generator (--init-from). The architectures must agree, except
    that a model of another upscaling factor or upsampler may start one (x4 from x2, as EDSR does; a light
    tail on a trained body): its body carries over and the output layers it lacks start fresh. The new
    model may also have more blocks at a level than the trained one: the extra blocks start as the identity,
    so training starts from the trained model's own function."""
    model, _ = load_model(cfg.init_from, realism=0)
    trained_blocks, wanted_blocks = model.cfg.level_blocks, cfg.generator.level_blocks
    comparable = replace(model.cfg, scale=cfg.generator.scale, upsampler=cfg.generator.upsampler,
                         blocks=cfg.generator.blocks)
    if comparable != cfg.generator or any(w < t for w, t in zip(wanted_blocks, trained_blocks)):
        raise UserError(f"--init-from {cfg.init_from}: its architecture {model.cfg} differs from the "
                        f"requested {cfg.generator}; pass matching --width/--depth/--attn-levels and at "
                        "least as many --blocks per level")
    trained = attention_moved(model.state_dict(), trained_blocks, wanted_blocks)
    grown = grown_blocks(nets.generator, trained_blocks)
    for prefix in grown:
        start_as_identity(nets.generator.get_submodule(prefix[:-1]))
    nets.generator.load_state_dict(weights_that_fit(trained, nets.generator.state_dict(), fresh_ok=tuple(grown)))


def weights_that_fit(trained: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor], *,
                     fresh_ok: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """`fresh` with every tensor of the same name and shape taken from `trained`. Only the output layers
    may stay fresh (the upsampling steps and the last conv: all that depends on the scale and the upsampler),
    and the modules named by the `fresh_ok` prefixes; anything else missing is a bug."""
    kept = {name: trained[name] if name in trained and trained[name].shape == t.shape else t
            for name, t in fresh.items()}
    left = [name for name in fresh
            if kept[name] is fresh[name] and not name.startswith(("upsample.", "tail.", *fresh_ok))]
    if left:
        raise RuntimeError(f"init: no trained weights for {left}")
    return kept


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant, then (after lr_decay_from * iters) a decay to 0: linear (pix2pix's 'linear' policy) or
    half a cosine (NAFNet's and SAFMN's schedule, which stays high longer and lands more gently)."""
    decay_start = cfg.lr_decay_from * cfg.iters
    if step <= decay_start:
        return cfg.lr
    remaining = max(0.0, (cfg.iters - step) / max(cfg.iters - decay_start, 1))  # 1 -> 0 over the decay
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 - math.cos(math.pi * remaining))
    return cfg.lr * remaining


def set_learning_rate(nets: Nets, lr: float, *, d_lr_mult: float = 1.0) -> None:
    for opt, rate in ((nets.opt_g, lr), (nets.opt_d, lr * d_lr_mult)):
        for group in opt.param_groups if opt is not None else ():
            group["lr"] = rate


def step_if_finite(optimizer: torch.optim.Optimizer, losses_finite: bool, device: torch.device) -> bool:
    """Apply the update only if the losses and every gradient are finite in every process; otherwise drop
    the gradients. All processes decide together, so they skip the same steps and stay in step."""
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    finite = losses_finite and bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
    if distributed.all_agree(finite, device):
        optimizer.step()
        return True
    optimizer.zero_grad(set_to_none=True)
    return False


def synchronising(module: torch.nn.Module, *, last: bool):
    """DDP averages gradients over processes at every backward; with accumulation only the last
    micro-batch's backward needs it."""
    return nullcontext() if last or not hasattr(module, "no_sync") else module.no_sync()


def d_step(nets: Nets, micro_batches, fakes, *, amp, device) -> tuple[dict, bool]:
    """D learns to call (input, target) real and (input, G(input)) fake (an unconditional D ignores the
    input). Real and fake go through D as one batch where instance norm keeps samples independent; with
    batch norm they go separately, as in pix2pix, so each pass normalises with statistics of one kind, the
    kind G's step shows D. False if the update was skipped."""
    nets.discriminator.requires_grad_(True)
    nets.opt_d.zero_grad(set_to_none=True)
    n = len(micro_batches)
    totals = {"d_real": 0.0, "d_fake": 0.0}
    for i, ((inputs, target), fake) in enumerate(zip(micro_batches, fakes)):
        with synchronising(nets.train_d, last=i == n - 1):
            with amp():
                if nets.discriminator.batch_norm:
                    real_logits = nets.train_d(inputs, target).float()
                    fake_logits = nets.train_d(inputs, fake.detach()).float()
                else:
                    logits = nets.train_d(torch.cat([inputs, inputs]), torch.cat([target, fake.detach()]))
                    real_logits, fake_logits = logits.float().chunk(2)
            loss_real = adversarial_loss(real_logits, real=True)
            loss_fake = adversarial_loss(fake_logits, real=False)
            (0.5 * (loss_real + loss_fake) / n).backward()
        totals["d_real"] += loss_real.item() / n
        totals["d_fake"] += loss_fake.item() / n
    finite = all(math.isfinite(v) for v in totals.values())
    return totals, step_if_finite(nets.opt_d, finite, device)


def g_step(nets: Nets, cfg: TrainConfig, micro_batches, fakes, *, amp, device) -> tuple[dict, bool]:
    """G learns to fool D while staying close to the target in L1. A fake of None is computed here, with
    gradients. False if the update was skipped."""
    d = nets.discriminator
    if d is not None:
        d.requires_grad_(False)  # G's step must not accumulate gradients in D
    nets.opt_g.zero_grad(set_to_none=True)
    n = len(micro_batches)
    totals = dict.fromkeys(["g_l1", "g_adv", "g_total"] if d is not None else ["g_l1", "g_total"], 0.0)
    for i, ((inputs, target), fake) in enumerate(zip(micro_batches, fakes)):
        with synchronising(nets.train_g, last=i == n - 1):
            if fake is None:
                with amp():
                    fake = nets.train_g(inputs)
            fake = fake.float()
            loss_l1 = pixel_loss(fake, target, cfg.pixel_loss)
            loss = cfg.l1_weight * loss_l1
            if cfg.fft_weight > 0:
                loss = loss + cfg.l1_weight * cfg.fft_weight * frequency_loss(fake, target)
            if cfg.grid_weight > 0:
                loss = loss + cfg.l1_weight * cfg.grid_weight * phase_locked_loss(fake, target, cfg.generator.scale)
            if cfg.block_weight > 0:
                block = JPEG_BLOCK * cfg.generator.scale
                loss = loss + cfg.l1_weight * cfg.block_weight * block_boundary_loss(fake, target, block)
            if cfg.chroma_weight > 0:
                loss = loss + cfg.l1_weight * cfg.chroma_weight * chroma_detail_loss(fake, target)
            if cfg.detail_weight > 0:
                loss = loss + cfg.l1_weight * cfg.detail_weight * detail_amplitude_loss(fake, target)
            if cfg.artifact_weight > 0:
                with torch.no_grad(), amp():
                    average = nets.ema(inputs)
                loss = loss + cfg.l1_weight * cfg.artifact_weight * artifact_loss(fake, average, target)
            if d is not None:
                with amp():
                    if cfg.fm_weight > 0:
                        logits, fake_features = d(inputs, fake, features=True)
                        with torch.no_grad():
                            _, real_features = d(inputs, target, features=True)
                    else:
                        logits = d(inputs, fake)
                loss_adv = adversarial_loss(logits.float(), real=True)
                loss = loss + cfg.adv_weight * loss_adv
                totals["g_adv"] += loss_adv.item() / n
                if cfg.fm_weight > 0:
                    loss = loss + cfg.fm_weight * feature_matching_loss(fake_features, real_features)
            (loss / n).backward()
        totals["g_l1"] += loss_l1.item() / n
        totals["g_total"] += loss.item() / n
    finite = all(math.isfinite(v) for v in totals.values())
    return totals, step_if_finite(nets.opt_g, finite, device)


@torch.no_grad()
def update_ema(nets: Nets, cfg: TrainConfig, step: int) -> None:
    decay = min(cfg.ema, (1 + step) / (10 + step))  # warm-up: early on, an average would mostly hold the init
    for avg, p in zip(nets.ema.parameters(), nets.generator.parameters()):
        avg.lerp_(p, 1 - decay)


def train_step(nets: Nets, cfg: TrainConfig, micro_batches, *, step: int, amp, device) -> tuple[dict, bool]:
    """One optimiser step of D, then of G (none in the first cfg.d_warmup steps), over the step's
    micro-batches (several with --accumulate). False if an update was skipped for a non-finite loss or
    gradient.

    With one micro-batch, G's forward serves both updates: D learns from G(x), then G from the updated D,
    as in pix2pix. With several, D's pass runs G without gradients and G's pass runs it again, so only one
    micro-batch's activations are held at a time.
    """
    fakes: list = [None] * len(micro_batches)
    losses, d_ok = {}, True
    d_only = step <= cfg.d_warmup  # D catches up with a trained G first; G stays as it was
    if nets.discriminator is not None:
        keep = len(micro_batches) == 1 and not d_only
        with torch.set_grad_enabled(keep), amp():
            made = [nets.train_g(inputs) for inputs, _ in micro_batches]
        losses, d_ok = d_step(nets, micro_batches, made, amp=amp, device=device)
        if keep:
            fakes = made
    if d_only:
        return losses, d_ok
    g_losses, g_ok = g_step(nets, cfg, micro_batches, fakes, amp=amp, device=device)
    if g_ok and nets.ema is not None:
        update_ema(nets, cfg, step)
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
    atomic_write(cfg.out / "config.json", lambda f: f.write(text.encode()))


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
        if distributed.is_main_process():
            write_config(cfg)
    return cfg


def remove_partial_writes(run_dir: Path) -> None:
    """Delete the temporary files a kill in the middle of a write left behind."""
    for folder in (run_dir, run_dir / "checkpoints"):
        for path in folder.glob(".*") if folder.is_dir() else ():
            if PARTIAL_WRITE.match(path.name):
                path.unlink(missing_ok=True)


def state_of(nets: Nets, cfg: TrainConfig, *, step: int, health: Health, seconds: float,
             cpu_seconds: float = 0.0) -> checkpoint.TrainingState:
    has_d, has_ema = nets.discriminator is not None, nets.ema is not None
    return checkpoint.TrainingState(
        step=step, config=config_to_dict(cfg), generator=nets.generator.state_dict(),
        opt_g=nets.opt_g.state_dict(), torch_rng=torch.get_rng_state(), health=asdict(health),
        seconds=seconds, cpu_seconds=cpu_seconds,
        discriminator=nets.discriminator.state_dict() if has_d else None,
        opt_d=nets.opt_d.state_dict() if has_d else None,
        ema=nets.ema.state_dict() if has_ema else None)


def save_state(cfg: TrainConfig, nets: Nets, *, step: int, health: Health, seconds: float,
               cpu_seconds: float) -> Path:
    path = checkpoint.checkpoint_path(cfg.out, step)
    state_of(nets, cfg, step=step, health=health, seconds=seconds, cpu_seconds=cpu_seconds).save(path)
    checkpoint.prune_checkpoints(cfg.out, keep=cfg.keep)
    return path


def load_state(nets: Nets, state: checkpoint.TrainingState) -> None:
    """Put a checkpoint's state into the nets; CheckpointMismatch if it does not fit them."""
    parts = [("generator", nets.generator), ("opt_g", nets.opt_g), ("discriminator", nets.discriminator),
             ("opt_d", nets.opt_d), ("ema", nets.ema)]
    parts = [(name, target) for name, target in parts if target is not None]
    missing = [name for name, _ in parts if getattr(state, name) is None]
    if missing:
        raise checkpoint.CheckpointMismatch(f"it holds no {', '.join(missing)}")
    try:  # the errors load_state_dict raises for other shapes, names or parameter groups
        for name, target in parts:
            target.load_state_dict(getattr(state, name))
    except (RuntimeError, ValueError) as err:
        raise checkpoint.CheckpointMismatch(first_line(err)) from None


def initial_state(cfg: TrainConfig, device: torch.device) -> checkpoint.TrainingState:
    """The state of a fresh run: the same initial weights, from the same seed."""
    seed_everything(cfg.seed)
    return state_of(build_nets(cfg, device), cfg, step=0, health=Health(), seconds=0.0)


def resume_state(cfg: TrainConfig, nets: Nets, health: Health,
                 device: torch.device) -> tuple[int, float, float]:
    """Load the newest checkpoint that loads into the nets: (step to continue from, seconds trained,
    CPU seconds this process family spent on it)."""
    state, failures = checkpoint.newest_loadable_checkpoint(cfg.out, apply=lambda s: load_state(nets, s))
    if state is None and failures:  # starting over would truncate the log and prune the old checkpoints
        raise UserError(f"--resume {cfg.out}: none of its checkpoints loads, so it cannot continue; nothing "
                        "was changed. " + "; ".join(failures) +
                        ". Restore a good copy of a checkpoint, or start afresh with another --out")
    if state is None:  # none saved yet (killed before the first save): start at step 0
        load_state(nets, initial_state(cfg, device))
        return 0, 0.0, 0.0
    for key, value in state.health.items():
        setattr(health, key, value)
    health.streak = 0
    if state.torch_rng is not None:
        torch.set_rng_state(state.torch_rng)
    return int(state.step), float(state.seconds), float(state.cpu_seconds)


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

    def apply(state: checkpoint.TrainingState) -> None:
        load_state(nets, state)

    state = (checkpoint.newest_loadable_checkpoint(cfg.out, before_step=first_bad, apply=apply)[0]
             or checkpoint.newest_loadable_checkpoint(cfg.out, apply=apply)[0])
    if state is None:  # nothing saved yet
        state = initial_state(cfg, device)
        load_state(nets, state)
    back_to = int(state.step)
    warnings.warn(f"steps {first_bad}-{step} had non-finite losses or gradients: rolled back to step "
                  f"{back_to} with the learning rate scaled by {health.lr_scale:g}, now "
                  f"{learning_rate(cfg, back_to + 1) * health.lr_scale:.3g} (rollback {health.rollbacks} of "
                  f"{MAX_ROLLBACKS})")
    return back_to


class RunLog:
    """log.csv, one row per logged step, and the same numbers in TensorBoard with --tensorboard."""

    def __init__(self, cfg: TrainConfig, *, start_step: int):
        self.path = cfg.out / "log.csv"
        self.tensorboard_dir = cfg.out / "tensorboard" if cfg.tensorboard else None
        self.writer = None
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
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))
        if self.tensorboard_dir is not None:
            self.close()
            self.writer = _summary_writer(self.tensorboard_dir, purge_step=last_step + 1)

    def append(self, row: dict) -> None:
        try:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, LOG_FIELDS).writerow({k: _fmt(row.get(k)) for k in LOG_FIELDS})
        except OSError as err:
            raise UserError(f"{self.path}: could not append to the log ({err.strerror or err})")
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _summary_writer(folder: Path, *, purge_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: pip install 'sagan-restore[tensorboard]'")
    return SummaryWriter(str(folder), purge_step=purge_step)  # drops events of steps that will be replayed


def _complete_row(row: dict) -> bool:
    if None in row or any(v is None for k, v in row.items() if k not in LATER_LOG_FIELDS):  # too many, too few
        return False
    return row["step"].isdigit()


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Throughput:
    """Images per second, and the share of the time spent waiting for the DataLoader, per log interval."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.began, self.waited, self.images = time.perf_counter(), 0.0, 0

    @contextmanager
    def waiting(self):
        began = time.perf_counter()
        yield
        self.waited += time.perf_counter() - began

    def read(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.began, 1e-9)
        numbers = {"images_per_s": self.images / elapsed, "data_wait": self.waited / elapsed}
        self.reset()
        return numbers


@torch.no_grad()
def write_samples(cfg: TrainConfig, g: UNetGenerator, batch, val, device) -> float | None:
    """Refresh samples.png (the first validation image, then batch crops) and return the mean validation
    PSNR over all validation pairs (None without any)."""
    g.eval()
    rows, scores = [], []
    for i, (noisy, clean) in enumerate(val):
        out = g(to_tensor(noisy)[None].to(device))[0].float().cpu().numpy().transpose(1, 2, 0)
        out = quantize_8bit(out)  # scored as the saved 8-bit file would be
        scores.append(psnr(out, clean))
        if i == 0:
            rows.append((noisy, out, clean))
    val_psnr = float(np.mean(scores)) if scores else None
    inputs, targets = batch
    outs = g(inputs[:3].to(device)).float().cpu()
    for inp, out, tgt in zip(inputs[:3].cpu(), outs, targets[:3].cpu()):
        rows.append(tuple(t.numpy().transpose(1, 2, 0) for t in (inp, out, tgt)))
    names = (["validation"] if val else []) + [f"training crop {i + 1}" for i in range(len(rows) - bool(val))]
    save_sample_grid(rows, cfg.out / "samples.png", names=names)
    g.train()
    return val_psnr


def _ignore_sigint(worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process decides when to stop, workers keep loading.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_loader(samples: TrainingSamples, cfg: TrainConfig, start_step: int, *, rank: distributed.Rank,
                micro_batch: int, device: torch.device) -> torch.utils.data.DataLoader:
    """This process's share of every step from `start_step` on, in micro-batches."""
    return torch.utils.data.DataLoader(
        samples, batch_size=micro_batch,
        sampler=StepSamples(start_step, cfg.iters, cfg.batch, rank=rank.rank, world_size=rank.world_size),
        num_workers=cfg.workers, persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda",
        worker_init_fn=_ignore_sigint,
    )


def to_device(batch, cfg: TrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
    return tuple(t.to(device, non_blocking=True).contiguous(memory_format=layout) for t in batch)


@contextmanager
def resume_hint(cfg: TrainConfig, step: int):
    """A write that fails mid-run (a full disk) ends the run with the way back in its message."""
    try:
        yield
    except UserError as err:
        raise UserError(f"{err}. Training stopped at step {step}; make room and resume from the newest "
                        f"checkpoint with: sagan-restore train --resume {cfg.out}") from None


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    with distributed.session(pick_device(cfg.device)) as (rank, device):
        micro_batch = distributed.check_batch(cfg.batch, cfg.accumulate, rank)
        cfg = with_value_range(cfg)  # rasters: normalisation measured once, kept in config.json and the model
        source = build_source(cfg)  # reads and checks every image: bad data fails here, before any file is written
        samples = TrainingSamples(source, cfg)
        if rank.is_main and resume:
            remove_partial_writes(cfg.out)
        elif rank.is_main:
            prepare_run(cfg)
        distributed.barrier()
        seed_everything(cfg.seed)  # the same initial weights in every process
        nets = build_nets(cfg, device)
        if cfg.init_from is not None and not resume:
            init_generator(nets, cfg)
        health = Health()
        start, seconds_before, cpu_before = resume_state(cfg, nets, health, device) if resume else (0, 0.0, 0.0)
        distributed.check_same_everywhere(torch.tensor([start]), what="the step to resume from")
        if start >= cfg.iters:
            raise UserError(f"{cfg.out} is already at step {start} of {cfg.iters}; pass --iters N to train longer")
        wrap_for_training(nets, cfg, rank, device)
        seed_everything(cfg.seed + rank.rank)
        amp = autocast_for(cfg, device)
        log = RunLog(cfg, start_step=start) if rank.is_main else None
        val = validation_pairs(cfg) if rank.is_main else []
        began, cpu_began = time.perf_counter(), time.process_time()
        meter = Throughput()

        def seconds() -> float:  # training time across resumes
            return seconds_before + time.perf_counter() - began

        def cpu_seconds() -> float:  # this process's CPU time, all threads, across resumes: what a budget counts
            return cpu_before + time.process_time() - cpu_began

        def loader_from(step: int):
            return iter(make_loader(samples, cfg, step, rank=rank, micro_batch=micro_batch, device=device))

        nets.generator.train()
        step = start
        batches = loader_from(start)
        show_progress = progress and rank.is_main
        with StopSignals(announce=rank.is_main) as stop, log or nullcontext(), tqdm(total=cfg.iters, initial=start, unit="it",
                                                               disable=not show_progress, dynamic_ncols=True) as bar:
            while step < cfg.iters:
                with meter.waiting():
                    micro_batches = [to_device(next(batches), cfg, device) for _ in range(cfg.accumulate)]
                step += 1
                set_learning_rate(nets, learning_rate(cfg, step) * health.lr_scale, d_lr_mult=cfg.d_lr_mult)
                losses, finite = train_step(nets, cfg, micro_batches, step=step, amp=amp, device=device)
                meter.images += cfg.batch
                health.record(finite)
                if health.streak >= NONFINITE_PATIENCE:
                    step = roll_back(cfg, nets, health, step=step, device=device)
                    if log is not None:
                        log.truncate(step)
                    batches = loader_from(step)
                    bar.n = step
                    bar.refresh()
                    continue
                stopping = distributed.any_process(stop.received is not None, device)  # all stop at one step
                with resume_hint(cfg, step):
                    maybe_log(cfg, nets, log, step=step, losses=losses, health=health, meter=meter,
                              seconds=(seconds(), cpu_seconds()), batch=micro_batches[0], val=val,
                              device=device, bar=bar)
                    maybe_save(cfg, nets, step=step, health=health, seconds=(seconds(), cpu_seconds()),
                               rank=rank, now=stopping)
                if stopping and step < cfg.iters:
                    saved = checkpoint.checkpoint_path(cfg.out, step)
                    raise TrainingStopped(stop.received or signal.SIGTERM, step, cfg.out, saved)
                bar.update(1)
        if health.skipped:
            warnings.warn(f"{health.skipped} step(s) were skipped for non-finite losses or gradients, "
                          f"{health.rollbacks} rollback(s); see the 'skipped' and 'lr' columns of log.csv")
        if rank.is_main:
            info = {"task": config_to_dict(cfg.degradation), "steps": cfg.iters, "ema": cfg.ema}
            if cfg.value_range is not None:  # what enhance normalises rasters by (infer/rasters.py)
                info["value_range"] = config_to_dict(cfg.value_range)
            with resume_hint(cfg, step):
                checkpoint.save_generator(cfg.out / "generator.safetensors", nets.final_generator, info=info)
        return cfg.out


def maybe_log(cfg: TrainConfig, nets: Nets, log: RunLog | None, *, step: int, losses: dict, health: Health,
              meter: Throughput, seconds: tuple[float, float], batch, val, device, bar) -> None:
    """At log steps: a row of losses (averaged over processes), speed and learning rate; at sample steps
    also samples.png, the validation PSNR and losses.png. Every process calls this (for the average);
    only rank 0, which has the log, writes."""
    sample_now = step % cfg.sample_every == 0 or step == cfg.iters
    if step % cfg.log_every and not sample_now:
        return
    losses = distributed.mean_over_processes(losses, device)
    if log is None:
        return
    if sample_now:
        losses["val_psnr"] = write_samples(cfg, nets.final_generator, batch, val, device)
    speed = meter.read()
    lr = learning_rate(cfg, step) * health.lr_scale
    wall, cpu = seconds
    log.append({"step": step, "seconds": wall, **losses, "lr": lr, "skipped": health.skipped, **speed,
                "cpu_seconds": cpu})
    shown = {k: v for k, v in losses.items() if v is not None} | {"img/s": speed["images_per_s"]}
    bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()}, refresh=False)
    if sample_now:
        plot_losses(cfg.out / "log.csv", cfg.out / "losses.png")


def maybe_save(cfg: TrainConfig, nets: Nets, *, step: int, health: Health, seconds: tuple[float, float],
               rank: distributed.Rank, now: bool) -> None:
    """A checkpoint every save_every steps, at the end, and `now`. Rank 0 writes it; every process checks
    that all hold the same weights, then waits for the write to finish."""
    if not (step % cfg.save_every == 0 or step == cfg.iters or now):
        return
    if rank.is_main:
        save_state(cfg, nets, step=step, health=health, seconds=seconds[0], cpu_seconds=seconds[1])
    weights = distributed.fingerprint(nets.generator, nets.discriminator, nets.ema)
    distributed.check_same_everywhere(weights, what=f"the weights at step {step}")
    distributed.barrier()  # nobody reads checkpoints (a rollback) while rank 0 is still writing them
