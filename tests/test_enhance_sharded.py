"""`torchrun --nproc-per-node 2 -m sagan_restore enhance`: two gloo processes share the files, each output
written once, and a rerun with --skip-existing enhances only what is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

from _infer_helpers import identity_generator, photo, save
from conftest import save_png


def torchrun_enhance(folder, out, model, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "sagan_restore", "enhance", str(folder), "-o", str(out), "-n", str(model), "--device", "cpu",
               "--no-progress", *map(str, extra)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def written_by_process(stdout: str) -> dict[int, int]:
    return {int(rank): int(count) for rank, count in
            re.findall(r"process (\d+) of 2: enhanced (\d+) image", stdout)}


def test_two_processes_write_every_file_once_and_resume(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(5):
        save_png(folder / f"img{i}.png", photo(24, 32, seed=i, noise=0.05))
    model = save(identity_generator(), tmp_path / "identity.safetensors")
    out = tmp_path / "out"

    first = torchrun_enhance(folder, out, model)
    assert first.returncode == 0, first.stderr[-2000:]
    counts = written_by_process(first.stdout)
    assert counts == {0: 3, 1: 2}  # round-robin shares of the sorted list: 0, 2, 4 and 1, 3
    assert sorted(p.name for p in out.iterdir()) == [f"img{i}.png" for i in range(5)]

    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "img3.png").unlink()
    again = torchrun_enhance(folder, out, model, "--skip-existing")
    assert again.returncode == 0, again.stderr[-2000:]
    assert sum(written_by_process(again.stdout).values()) == 1  # only the missing one, by one process
    assert (out / "img3.png").exists()
    assert all((out / name).stat().st_mtime_ns == stamp for name, stamp in stamps.items() if name != "img3.png")
    np.testing.assert_equal(len(list(out.iterdir())), 5)
