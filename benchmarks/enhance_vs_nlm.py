"""`sagan-restore enhance` of a 1-megapixel photo, end to end, against OpenCV's colour non-local means on
the same photo, in one run, and where our time goes (start-up, model load, decode, network, encode).

    pip install -e ".[baselines]"
    python benchmarks/enhance_vs_nlm.py [--model denoise] [--repeats 3]

The photo: scikit-image's astronaut resized to 1152 x 864 (0.995 MP) with Gaussian noise sigma 25
(default_rng(0)), saved as an 8-bit PNG, as a user's file would be. Ours: the real command in a fresh
process (`sagan-restore enhance IN -o OUT --model M`), as it runs by default (`--precision auto`: bf16 on
CPUs that run it natively) and with `--precision fp32`. NLM: `cv2.fastNlMeansDenoisingColored` with the
sigma-25 strengths of the `nlm` baseline, read and written with OpenCV, in a fresh process too, with
OpenCV's default threads (all cores, as ours) and with one. Two more `enhance` rows run with glibc's own
malloc settings (any GLIBC_TUNABLES in the environment makes `enhance` leave them alone), to show what
keeping freed memory in the process (sagan_restore.allocator) saves. Each figure is the median of --repeats
runs, the variants interleaved; the ratios compare medians of the same run. Writes the `enhance_vs_nlm-amd` or
`enhance_vs_nlm-intel` section of docs/BENCHMARKS.md (`-no-bf16` added where the CPU lacks native bf16):
one per kind of CPU, since the machines here differ in bf16 (native on some only), in how long importing
torch takes and in how fast OpenCV runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchdoc import GLIBC_MALLOC_DEFAULTS, cpu_family, git_commit, replace_section, script_command
from PIL import Image
from skimage import data

from sagan_restore.baselines import nlm_strengths
from sagan_restore.devices import cpu_has_native_bf16
from sagan_restore.evaluation.machine import cpu_name
from sagan_restore.evaluation.report import markdown_table

SIZE = (1152, 864)
SIGMA = 25.0

# The NLM side as a program of its own, so that it pays its own start-up and IO like ours does.
NLM_PROGRAM = """
import sys, time
began = time.perf_counter()
import cv2
threads, src, dst, h, h_color = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
if threads:
    cv2.setNumThreads(threads)
img = cv2.imread(src, cv2.IMREAD_COLOR)
t = time.perf_counter()
out = cv2.fastNlMeansDenoisingColored(img, None, h, h_color, 7, 21)
network = time.perf_counter() - t
cv2.imwrite(dst, out)
print(network)
"""

# Our side's stages, timed inside one process in the order the command runs them; it ends as the command
# does after enhance (cli.run: os._exit, no interpreter teardown). What its wall time has beyond the sum
# is the process's own start (interpreter, site) and end.
STAGES_PROGRAM = """
import os, sys, time
began = time.perf_counter()
from pathlib import Path
from sagan_restore.allocator import keep_freed_memory
from sagan_restore.infer.enhance import Enhancer
from sagan_restore.io import read_image, write_image
imported = time.perf_counter()
keep_freed_memory()
enhancer = Enhancer.load(sys.argv[1], half=sys.argv[4] == "1")
loaded = time.perf_counter()
image = read_image(Path(sys.argv[2]))
decoded = time.perf_counter()
out = enhancer.enhance_pixels(image.pixels)
ran = time.perf_counter()
write_image(Path(sys.argv[3]), out, bit_depth=image.bit_depth)
written = time.perf_counter()
print(imported - began, loaded - imported, decoded - loaded, ran - decoded, written - ran, flush=True)
os._exit(0)
"""
STAGES = ("process start and exit", "imports", "model load", "decode", "network", "encode")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="denoise")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-doc", action="store_true")
    return p.parse_args(argv)


def make_photo(path: Path) -> None:
    img = Image.fromarray(data.astronaut()).resize(SIZE, Image.Resampling.BICUBIC)
    clean = np.asarray(img, dtype=np.float64)
    noisy = clean + np.random.default_rng(0).normal(0, SIGMA, clean.shape)
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(path)


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True,
                          env=None if env is None else {**os.environ, **env})
    return time.perf_counter() - began, done.stdout


def main(argv=None) -> None:
    args = parse_args(argv)
    h, h_color, _ = nlm_strengths(SIGMA)
    default_precision = "bf16 here" if cpu_has_native_bf16() else "float32 here"  # --precision auto
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photo = tmp / "noisy.png"
        make_photo(photo)
        runs = {
            "sagan-restore enhance --precision fp32": ["sagan-restore", "enhance", str(photo), "-o", str(tmp / "ours"),
                                                       "--model", args.model, "--overwrite", "--precision", "fp32"],
            f"sagan-restore enhance (default, {default_precision})": [
                "sagan-restore", "enhance", str(photo), "-o", str(tmp / "half"), "--model", args.model,
                "--overwrite"],
            "sagan-restore enhance --precision fp32, glibc's default malloc": [
                "sagan-restore", "enhance", str(photo), "-o", str(tmp / "malloc32"), "--model", args.model,
                "--overwrite", "--precision", "fp32"],
            f"sagan-restore enhance (default, {default_precision}), glibc's default malloc": [
                "sagan-restore", "enhance", str(photo), "-o", str(tmp / "malloc"), "--model", args.model,
                "--overwrite"],
            "OpenCV NLM, default threads": [sys.executable, "-c", NLM_PROGRAM, "0", str(photo),
                                            str(tmp / "nlm.png"), str(h), str(h_color)],
            "OpenCV NLM, 1 thread": [sys.executable, "-c", NLM_PROGRAM, "1", str(photo), str(tmp / "nlm1.png"),
                                     str(h), str(h_color)],
        }
        stage_runs = {half: [sys.executable, "-c", STAGES_PROGRAM, args.model, str(photo),
                             str(tmp / f"stages{half}.png"), half] for half in ("0", "1")}
        walls: dict[str, list[float]] = {name: [] for name in runs}
        stages: dict[str, list[list[float]]] = {half: [] for half in stage_runs}
        for _ in range(args.repeats):  # interleaved, so drifting load falls on every variant alike
            for name, command in runs.items():
                walls[name].append(timed(command, GLIBC_MALLOC_DEFAULTS if "glibc's default" in name else None)[0])
            for half, command in stage_runs.items():
                wall_time, printed = timed(command)
                inside = [float(v) for v in printed.split()]
                stages[half].append([wall_time - sum(inside), *inside])
    wall = {name: statistics.median(v) for name, v in walls.items()}
    stage = {half: [statistics.median(s[i] for s in v) for i in range(len(STAGES))] for half, v in stages.items()}
    nlm = wall["OpenCV NLM, default threads"]
    rows = [[name, f"{t:.2f}", f"{t / nlm:.2f}x"] for name, t in wall.items()]
    stage_rows = [[label, *(f"{s:.2f}" for s in stage[half]), f"{sum(stage[half]):.2f}"]
                  for half, label in (("0", "float32"), ("1", "bf16 (the default here)" if cpu_has_native_bf16() else
                                                          "half (float32: no native bf16 here)"))]
    section = "\n".join([
        f"## enhance against OpenCV NLM, 1 megapixel ({cpu_name()}, "
        f"{'native bf16' if cpu_has_native_bf16() else 'no native bf16'})",
        "",
        f"Generated by `benchmarks/enhance_vs_nlm.py` on commit {git_commit()}: `{script_command()}`",
        "",
        f"A {SIZE[0]} x {SIZE[1]} photo (scikit-image's astronaut, sigma-{SIGMA:g} noise, 8-bit PNG), each command "
        f"in a fresh process on {cpu_name()} (2 cores), median of {args.repeats} interleaved runs; model "
        f"`{args.model}`. NLM: `fastNlMeansDenoisingColored`, h {h:.4g}, hColor {h_color:.4g}, template 7, "
        "search 21, OpenCV's own imread/imwrite.",
        "",
        markdown_table(["command", "seconds, end to end", "time / NLM's (default threads)"], rows),
        "",
        "Where our time goes (the same stages timed inside one process, seconds, median; the first column is "
        "that process's wall time less the stages: the interpreter's start and the process's end, which "
        "`enhance` makes without Python's teardown):",
        "",
        markdown_table(["precision", *STAGES, "sum"], stage_rows),
    ])
    print(section)
    if not args.no_doc:
        replace_section(f"enhance_vs_nlm-{cpu_family()}", section)


if __name__ == "__main__":
    main()
