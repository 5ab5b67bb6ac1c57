"""What the hardware can do fast: which precision a device computes in."""

from __future__ import annotations

from pathlib import Path

import torch

from sagan_restore.errors import UserError


def pick_device(name: str) -> torch.device:
    """auto (a GPU when there is one), cpu, cuda or cuda:N; a clear error when CUDA is asked for and absent."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here; use --device cpu")
    return torch.device(name)


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether a run with this --precision computes in bf16 on this device (see TrainConfig.precision; `auto`
    is also `enhance`'s default, where bf16 moves PSNR by 0.005 dB or less: docs/BENCHMARKS.md, "Precision")."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU's flags. Measured here: a training step of the default model in
    bf16 autocast takes 0.45x the float32 time on an AMD EPYC with AVX512-BF16 (docs/BENCHMARKS.md);
    without those instructions oneDNN emulates bf16 and is slower than float32."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux, or no /proc: assume nothing
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags
