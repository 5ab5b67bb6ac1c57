"""`sagan-restore serve` end to end: the CLI starts the server, headless Chromium (Debian's, driven by
Playwright) uploads a photo, waits for the result and downloads it; limits show their message on the page;
stopping the server leaves no temporary files."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from _infer_helpers import identity_generator, random_generator, save

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no {CHROMIUM} (apt-get install chromium) for the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")
pytest.importorskip("uvicorn", reason="serve needs the web extra")

MAX_PIXELS = 100_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The server as a user starts it, its temporary files in a folder of our own so we can check them."""
    folder = tmp_path_factory.mktemp("serve")
    noise = save(random_generator(), folder / "noise.safetensors")
    up2 = save(identity_generator(scale=2), folder / "up2.safetensors")
    real = save(random_generator(), folder / "real.safetensors")
    save(random_generator(seed=1), folder / "real_gan.safetensors")  # its GAN variant: realism on the page
    save(random_generator(seed=2), folder / "noise_light.safetensors")  # its light variant: strength
    tmp = folder / "tmp"
    tmp.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sagan_restore", "serve", "--port", str(port), "--model", str(noise),
         "--model", str(up2), "--model", str(real), "--device", "cpu", "--max-pixels", str(MAX_PIXELS)],
        env={**os.environ, "TMPDIR": str(tmp)}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/models", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server did not start: {process.communicate()[1]}")
            time.sleep(0.1)
    yield url, tmp
    process.send_signal(signal.SIGINT)  # Ctrl+C, as a user stops it
    _, log = process.communicate(timeout=20)
    assert process.returncode == 0, log
    assert list(tmp.iterdir()) == []  # every upload, result and preview removed


@pytest.fixture(scope="module")
def page(server):
    url, _ = server
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        page = browser.new_page(accept_downloads=True, viewport={"width": 1100, "height": 800})
        page.set_default_timeout(30_000)
        page.goto(url)
        yield page
        browser.close()


def astronaut(path: Path, width: int, height: int) -> np.ndarray:
    img = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    img.save(path)
    return np.asarray(img, dtype=np.float32)


def test_upload_compare_and_download(page, tmp_path):
    source = astronaut(tmp_path / "astronaut.png", 128, 96)
    page.select_option("#model", "up2")
    page.set_input_files("#files", str(tmp_path / "astronaut.png"))
    link = page.locator("#jobs li", has_text="astronaut.png").locator("a.download")
    link.wait_for(state="visible")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "astronaut_up2.png"
    saved = tmp_path / "result.png"
    download.value.save_as(saved)
    result = np.asarray(Image.open(saved), dtype=np.float32)
    # The identity x2 model returns its bicubic base: twice the size, the same picture.
    expected = np.asarray(Image.fromarray(source.astype(np.uint8)).resize((256, 192), Image.Resampling.BICUBIC),
                          dtype=np.float32)
    assert result.shape == (192, 256, 3)
    assert np.abs(result - expected).mean() < 3
    # The comparison shows both images at the result's size.
    # (wait_for_function would evaluate a string, which the page's Content-Security-Policy forbids)
    sync_api.expect(page.locator("#after")).to_have_js_property("naturalWidth", 256)
    sizes = page.evaluate("[...document.querySelectorAll('#stage img')].map(i => [i.naturalWidth, i.style.width])")
    assert sizes == [[128, "256px"], [256, "256px"]]


def test_dropped_images_are_enhanced(page, tmp_path):
    astronaut(tmp_path / "dropped.png", 64, 48)
    png = list((tmp_path / "dropped.png").read_bytes())
    page.select_option("#model", "noise")
    transfer = page.evaluate_handle("""(bytes) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], "dropped.png", { type: "image/png" }));
        return transfer;
    }""", png)
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    row = page.locator("#jobs li", has_text="dropped.png")
    row.locator("a.download").wait_for(state="visible")
    assert "done" in row.locator(".status").text_content() and "64x48" in row.locator(".status").text_content()


def test_realism_slider_only_for_models_that_have_it(page):
    page.select_option("#model", "real")
    assert page.is_visible("#realism") and page.input_value("#realism") == "0"
    assert not page.is_visible("#strength")
    page.select_option("#model", "noise")
    assert not page.is_visible("#realism")
    assert page.is_visible("#strength") and page.input_value("#strength") == "1"


def test_limits_and_corrupt_files_show_their_message(page, tmp_path):
    astronaut(tmp_path / "huge.png", 400, 300)  # 120,000 pixels > MAX_PIXELS
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    page.select_option("#model", "noise")
    page.set_input_files("#files", str(tmp_path / "huge.png"))
    message = page.locator("#message")
    message.filter(has_text="huge.png: 400x300 is 0.12 megapixels, over the limit of 0.1").wait_for()
    page.set_input_files("#files", str(tmp_path / "broken.jpg"))
    message.filter(has_text="broken.jpg: not a readable image").wait_for()
    failed = page.locator("#jobs li.failed .status").all_text_contents()
    assert any("huge.png" in text for text in failed) and any("broken.jpg" in text for text in failed)
