"""`enhance`, `evaluate` and `train` keep freed memory in the process (sagan_restore.allocator), so a
tensor allocated again after it was freed costs no new page faults; a user's own malloc settings win."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from _infer_helpers import identity_generator, photo, save
from conftest import save_png
from robust_helpers import SRC, child_env

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc settings")

# After SETUP, the page faults of allocating a 64 MB array (above glibc's largest automatic mmap threshold)
# that the same size was allocated and freed before.
PROGRAM = """
import resource, sys
sys.path.insert(0, {src!r})
import numpy as np
{setup}
for _ in range(2):
    np.ones(1 << 23)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
np.ones(1 << 23)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_after(setup: str, **env: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(src=str(SRC), setup=setup)], capture_output=True,
                          text=True, env={**child_env(), **env}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


def test_kept_memory_is_reused_without_page_faults():
    default = faults_after("")
    kept = faults_after("from sagan_restore.allocator import keep_freed_memory; assert keep_freed_memory()")
    # 16,384 faults of 4 KB pages by default (32 where the kernel maps 2 MB pages), none once kept.
    assert default >= 30
    assert kept <= 2


def test_enhance_command_keeps_freed_memory(tmp_path):
    source = tmp_path / "in.png"
    save_png(source, photo(24, 24, noise=0.05))
    model = save(identity_generator(), tmp_path / "identity.safetensors")
    setup = ("from sagan_restore.cli import main\n"
             f"assert main(['enhance', {str(source)!r}, '-o', {str(tmp_path / 'out')!r}, '-n', {str(model)!r}, "
             "'--device', 'cpu', '--no-progress']) == 0")
    assert faults_after(setup) <= 2
    assert (tmp_path / "out" / "in.png").exists()


def test_users_malloc_settings_win():
    code = "from sagan_restore.allocator import keep_freed_memory; assert not keep_freed_memory()"
    assert faults_after(code, MALLOC_TRIM_THRESHOLD_="131072") >= 30
