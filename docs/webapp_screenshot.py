"""Make docs/webapp.png: the `serve` page showing the shipped denoise model on a noisy photo.

    python docs/webapp_screenshot.py

Starts `sagan-restore serve` as a user would, uploads scikit-image's astronaut with Gaussian noise
(sigma 25 on the 0..255 scale) through headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright), waits for the result, zooms in on the face and saves a screenshot of the page.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright
from skimage import data

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "webapp.png"
SIGMA = 25


def noisy_astronaut(path: Path) -> None:
    clean = data.astronaut().astype(np.float32)
    noisy = clean + np.random.default_rng(0).normal(0, SIGMA, clean.shape)
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(path)


def start_server(port: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen([sys.executable, "-m", "sagan_restore", "serve", "--port", str(port),
                                "--model", "denoise"], env=env)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models", timeout=1):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                sys.exit("the server did not start")
            time.sleep(0.2)


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(port)
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
            photo = Path(tmp) / "astronaut_noisy.png"
            noisy_astronaut(photo)
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1280, "height": 960})
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#files", str(photo))
            page.locator("#jobs a.download").wait_for(state="visible")
            # Not wait_for_function: it evaluates strings, which the page's Content-Security-Policy forbids.
            while not page.evaluate("document.getElementById('after').complete"):
                time.sleep(0.05)
            box = page.locator("#stage").bounding_box()
            # The face, enlarged (it is at about (240, 110) in the 512x512 photo, shown at 100% and centred):
            # the noise and what the model made of it are visible at a glance.
            page.mouse.move(box["x"] + (box["width"] - 512) / 2 + 240, box["y"] + (box["height"] - 512) / 2 + 110)
            for _ in range(3):
                page.mouse.wheel(0, -180)
                page.wait_for_timeout(50)
            page.locator("#split").fill("50")
            page.wait_for_timeout(300)
            page.screenshot(path=str(OUT), full_page=True)
            browser.close()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    print(f"wrote {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
