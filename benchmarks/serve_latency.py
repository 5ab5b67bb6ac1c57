"""Latency and memory of `sagan-restore serve` against enhancing the same file directly.

    python benchmarks/serve_latency.py [--model denoise] [--repeats 3]

On a 1-megapixel noisy photo (scikit-image's astronaut, 1024x1024, Gaussian sigma 25, an 8-bit PNG):
- direct: `enhance_file` with an Enhancer in this process (what `sagan-restore enhance` does per file);
- served: a real `sagan-restore serve` process, timed from the POST to the job's "done" (polled every
  20 ms) and the download of the result; the POST's own reply (upload, decode, check) is timed too;
  direct and served runs alternate, so other jobs on the machine slow both alike;
- four requests at once: the time until all four are done, and the server's peak RSS (VmHWM) before and
  after, which the one-worker queue should keep near one image's worth.
Writes its section of docs/BENCHMARKS.md between the serve markers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

# One torch thread here and in the server (which inherits this): on a shared, loaded 2-core machine two
# threads per process spin against the other jobs (measured 1.9x slower), and an equal count on both sides
# keeps the comparison about serve's overhead. Set OMP_NUM_THREADS to measure another count.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from benchdoc import git_commit, replace_section, script_command  # noqa: E402
from sagan_restore.evaluation.machine import cpu_name  # noqa: E402
from sagan_restore.infer.enhance import Enhancer, enhance_file  # noqa: E402


def noisy_photo(path: Path) -> None:
    clean = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.BICUBIC),
                       dtype=np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, 25, clean.shape)
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(path)


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "sagan_restore", "serve", "--port", str(port), "--model",
                                model, "--device", "cpu"], env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/models", timeout=1):
                return process, url
        except OSError:
            if process.poll() is not None:
                sys.exit("the server did not start")
            time.sleep(0.2)


def request(url: str, path: str, *, body: bytes | None = None, method: str = "GET") -> bytes:
    headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url + path, data=body, method=method, headers=headers)) as r:
        return r.read()


def served(url: str, model: str, photo: bytes) -> tuple[float, float, float]:
    """(seconds until the POST replied, until the job was done, until the result was downloaded)."""
    start = time.perf_counter()
    job = json.loads(request(url, f"/api/jobs?model={model}&name=photo.png", body=photo, method="POST"))
    accepted = time.perf_counter() - start
    while job["state"] in ("queued", "running"):
        time.sleep(0.02)
        job = json.loads(request(url, f"/api/jobs/{job['id']}"))
    assert job["state"] == "done", job
    done = time.perf_counter() - start
    request(url, job["result"])
    downloaded = time.perf_counter() - start
    request(url, f"/api/jobs/{job['id']}", method="DELETE")
    return accepted, done, downloaded


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="denoise")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "photo.png"
        noisy_photo(src)
        photo = src.read_bytes()
        enhancer = Enhancer.load(args.model, device="cpu")
        process, url = start_server(args.model)
        try:
            enhance_file(enhancer, src, Path(tmp) / "warm.png")  # first calls: allocations, oneDNN kernels
            served(url, args.model, photo)
            # Interleaved, so that the load of other jobs on the machine falls on both alike.
            direct, runs = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                enhance_file(enhancer, src, Path(tmp) / "out.png")
                direct.append(time.perf_counter() - start)
                runs.append(served(url, args.model, photo))
            rss_one = peak_rss_mb(process.pid)
            start = time.perf_counter()
            threads = [threading.Thread(target=served, args=(url, args.model, photo)) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            four = time.perf_counter() - start
            rss_four = peak_rss_mb(process.pid)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    accepted, done, downloaded = (statistics.median(column) for column in zip(*runs))
    direct_s = statistics.median(direct)
    load = os.getloadavg()[0]
    body = f"""## Web app (`sagan-restore serve`)

`{script_command()}` at commit {git_commit()}, {cpu_name()} ({os.cpu_count()} cores, load average
{load:.1f} at the end: other jobs shared the machine), torch {torch.__version__} with
{torch.get_num_threads()} thread(s) in both processes, Python
{platform.python_version()}, model `{args.model}`, a 1024x1024 noisy PNG, medians of {args.repeats}.

| | seconds | vs direct |
|---|---|---|
| direct `enhance_file` in one process | {direct_s:.2f} | 1.00 |
| served: POST answered (upload, decode, checks) | {accepted:.2f} | |
| served: POST until the job is done | {done:.2f} | {done / direct_s:.2f} |
| served: POST until the result is downloaded | {downloaded:.2f} | {downloaded / direct_s:.2f} |
| served: four requests at once, until all are done | {four:.2f} | {four / direct_s:.2f} |

Server peak RSS: {rss_one:.0f} MB after one-at-a-time requests, {rss_four:.0f} MB after four at once
(the one worker runs them in turn, so memory does not grow with concurrent requests).
"""
    print(body)
    replace_section("serve", body)


if __name__ == "__main__":
    main()
