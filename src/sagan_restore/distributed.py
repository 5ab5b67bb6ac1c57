"""Multi-process training with torch.distributed, as `torchrun` launches it.

torchrun starts one process per GPU (or per CPU share) and tells each its place through the RANK,
LOCAL_RANK and WORLD_SIZE environment variables; without them this is a single process and every
function here is a no-op. The collectives below are the few places where processes must agree: whether a
step's update was finite, whether to stop, and the losses that get logged.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sagan_restore.errors import UserError


@dataclass(frozen=True)
class Rank:
    """This process's place in the job: rank 0 of 1 without torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs, samples and plots."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def is_main_process() -> bool:
    """For messages printed outside training (the CLI): only rank 0 of a torchrun job prints them."""
    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def session(device: torch.device):
    """Join the torchrun job, if there is one: NCCL between GPUs, gloo on CPU. Each GPU process gets its
    own device, cuda:LOCAL_RANK. Yields (Rank, device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        yield Rank(), device
        return
    rank = Rank(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", rank.local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        with warnings.catch_warnings():
            if not rank.is_main:  # one copy of each warning, not one per process
                warnings.simplefilter("ignore")
            yield rank, device
    finally:
        dist.destroy_process_group()


def check_batch(batch: int, accumulate: int, rank: Rank) -> int:
    """The micro-batch each process runs: --batch is the global batch, split over processes and
    accumulation steps."""
    parts = rank.world_size * accumulate
    if batch % parts:
        raise UserError(f"--batch {batch} is the global batch; it must divide evenly over {rank.world_size} "
                        f"process(es) x --accumulate {accumulate} (a multiple of {parts})")
    return batch // parts


def all_agree(flag: bool, device: torch.device) -> bool:
    """True only if `flag` is true in every process."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def any_process(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true in some process."""
    return not all_agree(not flag, device)


def mean_over_processes(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Losses of the whole global batch: each process measured its own share."""
    if not dist.is_initialized() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def check_same_everywhere(values: torch.Tensor, *, what: str) -> None:
    """Raise if `values` differ between processes. DDP keeps replicas identical by averaging gradients;
    a difference is a bug (or processes that resumed from different checkpoints), not a user error."""
    if not dist.is_initialized():
        return
    values = values.detach().to(torch.float64).flatten()
    gathered = [torch.empty_like(values) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, values)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError(f"processes disagree on {what}: {[g.tolist()[:4] for g in gathered]}")


def fingerprint(*modules: torch.nn.Module | None) -> torch.Tensor:
    """One number per parameter tensor (its float64 sum): equal everywhere if the replicas are."""
    sums = [p.detach().double().sum() for m in modules if m is not None for p in m.parameters()]
    return torch.stack(sums)
