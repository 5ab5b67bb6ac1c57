"""The `sagan-restore` program ends `enhance` without the interpreter's teardown (about 0.9 s after
importing torch, cli.run), with every output written and the exit status kept; other commands exit
normally."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from _infer_helpers import identity_generator, photo, save
from conftest import save_png
from robust_helpers import SRC, child_env

# The program as the console script runs it, with an exit handler that shows whether teardown ran.
PROGRAM = ("import atexit, sys; atexit.register(lambda: print('TEARDOWN', flush=True)); "
           f"sys.path.insert(0, {str(SRC)!r}); sys.argv[0] = 'sagan-restore'; "
           "from sagan_restore.cli import run; run()")


def program(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *map(str, args)], capture_output=True, text=True,
                          env=child_env(), timeout=300)


def test_enhance_skips_teardown_and_writes_every_file(tmp_path):
    source = tmp_path / "in.png"
    save_png(source, photo(40, 48, noise=0.05))
    model = save(identity_generator(), tmp_path / "identity.safetensors")
    done = program("enhance", source, "-o", tmp_path / "out", "-n", model, "--device", "cpu", "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TEARDOWN" not in done.stdout
    assert "enhanced 1 image(s)" in done.stdout  # flushed before the process ended
    out = np.asarray(Image.open(tmp_path / "out" / "in.png"))
    np.testing.assert_array_equal(out, np.asarray(Image.open(source)))  # identity model: the whole file


def test_enhance_error_keeps_its_status_and_message(tmp_path):
    done = program("enhance", tmp_path / "missing.png", "-o", tmp_path / "out", "--no-progress")
    assert done.returncode == 2
    assert "missing.png" in done.stderr and "Traceback" not in done.stderr
    assert "TEARDOWN" not in done.stdout


def test_other_commands_exit_normally():
    done = program("models")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.rstrip().endswith("TEARDOWN")
