"""The C allocator's settings for processes that allocate the same large tensors over and over.

glibc's malloc serves blocks above its mmap threshold (at most 32 MB, and tensors of a tile's activations
are that size or more) from fresh pages, and hands freed memory at the top of the heap back to the system
once more than twice that threshold is free. A network's forward pass frees and allocates its activations
again for every tile and every training step, so each one pays the kernel to map and zero its pages again.
On the 2-core machines here that was 102,300 page faults and 0.2 s of system time per float32 forward of
the shipped denoiser on a 512-pixel tile, which took 1.25x as long as with memory kept (docs/BENCHMARKS.md,
"Page faults", from benchmarks/page_faults.py).

Keeping freed memory in the process removes that cost; the process keeps its peak until it ends, and the
peak grows a little (7% of peak RSS in that benchmark). So the commands that run a network many times
(`enhance`, `evaluate`, `train`) call keep_freed_memory() first. A user's own glibc malloc settings win:
with MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES in the environment, nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt's parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks above this still get their own mapping: one so large is rare, and returning it at once is worth it.
MMAP_THRESHOLD = 1 << 30
# Free memory at the heap's top is handed back only beyond this much (mallopt takes a C int: 2 GB is its most).
TRIM_THRESHOLD = (1 << 31) - 1
USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse instead of returning it to the system. Returns
    whether the settings were made: False on other C libraries (macOS, Windows, musl) and where the
    environment already sets malloc's thresholds."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # mallopt returns 1 on success; a threshold set by hand also stops glibc from moving it by itself.
    trim_set = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return trim_set and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
