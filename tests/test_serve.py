"""`sagan-restore serve` through its HTTP API (Starlette's TestClient): results in the input's format, limits,
bad uploads, path safety, the job queue, and temporary files removed."""

import threading
import time
from io import BytesIO

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

pytest.importorskip("starlette")
pytest.importorskip("httpx2")  # TestClient's transport (Starlette 1.x uses httpx2)

from starlette.testclient import TestClient  # noqa: E402

from _infer_helpers import identity_generator, photo, random_generator, save  # noqa: E402
from sagan_restore.cli import main  # noqa: E402
from sagan_restore.config import ServeConfig  # noqa: E402
from sagan_restore.infer.enhance import Enhancer  # noqa: E402
from sagan_restore.infer.tiling import TileSettings, plan_grid  # noqa: E402
from sagan_restore.io import read_image, write_image  # noqa: E402
from sagan_restore.serve.app import create_app  # noqa: E402
from sagan_restore.serve.uploads import split_upload_name  # noqa: E402
from sagan_restore.serve.jobs import Cancelled, Job, JobQueue, QueueFull  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    save(random_generator(seed=1), folder / "real_gan.safetensors")  # makes "real" a model with realism
    save(random_generator(seed=2), folder / "noise_light.safetensors")  # and "noise" one with strength
    return (str(save(random_generator(), folder / "noise.safetensors")),
            str(save(identity_generator(scale=2), folder / "up2.safetensors")),
            str(save(random_generator(), folder / "real.safetensors")))


def client_for(models, **limits) -> TestClient:
    cfg = ServeConfig(models=models, device="cpu", tile=80, **limits)
    return TestClient(create_app(cfg), base_url="http://127.0.0.1")


def png_bytes(pixels: np.ndarray, **save_options) -> bytes:
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", **save_options)
    return buffer.getvalue()


def tiff_bytes(pixels: np.ndarray) -> bytes:
    buffer = BytesIO()
    tifffile.imwrite(buffer, pixels)
    return buffer.getvalue()


def photo8(height=48, width=64) -> np.ndarray:
    return np.round(photo(height, width) * 255).astype(np.uint8)


def upload(client, data: bytes, *, name="photo.png", model="noise", **params):
    return client.post("/api/jobs", params={"name": name, "model": model, **params}, content=data,
                       headers={"Content-Type": "application/octet-stream"})


def wait_done(client, job_id, timeout=30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout} s")


def test_models_listed_with_scale_and_limits(models):
    with client_for(models, max_upload_mb=2) as client:
        body = client.get("/api/models").json()
    assert [(m["name"], m["scale"], m["has_realism"], m["default_realism"], m["has_strength"])
            for m in body["models"]] == [("noise", 1, False, None, True), ("up2", 2, False, None, False),
                                         ("real", 1, True, 0.0, False)]
    assert body["limits"]["max_upload_mb"] == 2


def test_page_and_its_files_are_served_without_outside_resources(models):
    with client_for(models) as client:
        page = client.get("/")
        assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/app.js", "/static/style.css"):
            assert client.get(asset).status_code == 200
    assert "http" not in page.text.replace("http-equiv", "")  # no CDN: the page works offline


@pytest.mark.parametrize("kind", ["rgb8", "rgba8", "grey16_tiff", "rgb16_png", "jpeg"])
def test_result_keeps_format_bit_depth_and_alpha(models, tmp_path, kind):
    rgb = photo8()
    if kind == "rgb8":
        name, data = "a.png", png_bytes(rgb)
    elif kind == "rgba8":
        alpha = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
        name, data = "a.png", png_bytes(np.dstack([rgb, alpha]))
    elif kind == "grey16_tiff":
        name, data = "scan.TIFF", tiff_bytes((photo(48, 64).mean(axis=2) * 65535).astype(np.uint16))
    elif kind == "rgb16_png":
        path = tmp_path / "in.png"
        write_image(path, photo(48, 64), bit_depth=16)
        name, data = "deep.png", path.read_bytes()
    else:
        buffer = BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=90)
        name, data = "holiday.jpg", buffer.getvalue()
    with client_for(models) as client:
        created = upload(client, data, name=name, model="up2")
        assert created.status_code == 202, created.text
        status = wait_done(client, created.json()["id"])
        assert status["state"] == "done", status
        result = client.get(status["result"])
        after = client.get(status["after"])
        before = client.get(status["before"])
    stem, suffix = name.rsplit(".", 1)
    assert f'{stem}_up2.{suffix.lower()}' in result.headers["content-disposition"]
    out_path = tmp_path / f"out.{suffix.lower()}"
    out_path.write_bytes(result.content)
    out = read_image(out_path)
    assert out.pixels.shape[:2] == (96, 128)  # x2
    assert out.bit_depth == (16 if kind in ("grey16_tiff", "rgb16_png") else 8)
    assert (out.alpha is not None) == (kind == "rgba8")
    assert out.pixels.shape[2] == (1 if kind == "grey16_tiff" else 3)
    # The previews are images every browser shows: TIFF becomes PNG, the others are served as they are.
    for preview, size in ((before, (64, 48)), (after, (128, 96))):
        shown = Image.open(BytesIO(preview.content))
        assert shown.format in ("PNG", "JPEG") and shown.size == size
        assert preview.headers["x-content-type-options"] == "nosniff"


def test_enhanced_pixels_are_the_models_output(models, tmp_path):
    """The identity x2 model returns its bicubic base, so the download must match a bicubic upscale."""
    rgb = photo8()
    with client_for(models) as client:
        status = wait_done(client, upload(client, png_bytes(rgb), model="up2").json()["id"])
        result = np.asarray(Image.open(BytesIO(client.get(status["result"]).content)), dtype=np.float32)
        denoised = wait_done(client, upload(client, png_bytes(rgb), model="noise").json()["id"])
        changed = np.asarray(Image.open(BytesIO(client.get(denoised["result"]).content)), dtype=np.float32)
    expected = np.asarray(Image.fromarray(rgb).resize((128, 96), Image.Resampling.BICUBIC), dtype=np.float32)
    assert np.abs(result - expected).mean() < 3
    assert changed.shape == rgb.shape and np.abs(changed - rgb).mean() > 1  # a random net changes the image
    assert status["progress"] == 1


def test_realism_blends_towards_the_gan_variant(models):
    rgb = photo8()
    results = []
    with client_for(models) as client:
        for realism in ("0", "1"):
            status = wait_done(client, upload(client, png_bytes(rgb), model="real", realism=realism).json()["id"])
            assert status["realism"] == float(realism)
            results.append(np.asarray(Image.open(BytesIO(client.get(status["result"]).content)), dtype=np.float32))
        refused = upload(client, png_bytes(rgb), model="real", realism="1.5")
        assert refused.status_code == 400 and "realism '1.5'" in refused.json()["error"]
        ignored = wait_done(client, upload(client, png_bytes(rgb), model="noise", realism="1").json()["id"])
        assert ignored["realism"] is None  # a model without a GAN variant has no realism to set
    assert np.abs(results[0] - results[1]).mean() > 1


def test_strength_blends_towards_the_light_variant(models):
    rgb = photo8()
    light = Enhancer.load(models[0].replace("noise.", "noise_light."), tile=80).enhance(rgb)
    with client_for(models) as client:
        full = wait_done(client, upload(client, png_bytes(rgb)).json()["id"])
        gentle = wait_done(client, upload(client, png_bytes(rgb), strength="0").json()["id"])
        assert (full["strength"], gentle["strength"]) == (1.0, 0.0)
        results = [np.asarray(Image.open(BytesIO(client.get(s["result"]).content)), dtype=np.float32)
                   for s in (full, gentle)]
        refused = upload(client, png_bytes(rgb), strength="2")
        assert refused.status_code == 400 and "strength '2'" in refused.json()["error"]
        ignored = wait_done(client, upload(client, png_bytes(rgb), model="real", strength="0").json()["id"])
        assert ignored["strength"] == 1.0  # a model without a light variant has no strength to set
    assert np.abs(results[0] - results[1]).mean() > 1
    np.testing.assert_allclose(results[1], light, atol=1)  # strength 0 is the light variant itself


@pytest.mark.parametrize("channels", [3, 1])
def test_progress_is_reported_per_tile(channels):
    """A grey model runs once per colour plane: the fraction still rises steadily to 1 over all three."""
    enhancer = Enhancer(random_generator(channels=channels), torch.device("cpu"), {},
                        settings=TileSettings(tile=80, overlap=16, batch=1))
    fractions = []
    enhancer.enhance_pixels(photo(150, 200), on_progress=fractions.append)
    per_plane = plan_grid(150, 200, tile=80, overlap=16, multiple=enhancer.model.multiple).count
    assert per_plane > 1 and len(fractions) == per_plane * (3 if channels == 1 else 1)
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1)


def test_limits_give_413_with_a_message(models):
    big = png_bytes(np.zeros((100, 100, 3), np.uint8))
    with client_for(models, max_upload_mb=0.001, max_pixels=10_000) as client:
        too_many_bytes = upload(client, png_bytes(np.random.default_rng(0).integers(0, 255, (40, 40, 3), np.uint8)))
        assert too_many_bytes.status_code == 413
        assert "limit of 0.001 MB" in too_many_bytes.json()["error"]
        header_only = client.post("/api/jobs", params={"name": "x.png", "model": "noise"}, content=b"x" * 2000,
                                  headers={"Content-Type": "application/octet-stream"})
        assert header_only.status_code == 413
    with client_for(models, max_pixels=5_000) as client:
        too_many_pixels = upload(client, big, name="big.png")
        assert too_many_pixels.status_code == 413
        assert too_many_pixels.json()["error"].startswith("big.png: 100x100 is 0.01 megapixels")
        upscaled = upload(client, png_bytes(np.zeros((50, 50, 3), np.uint8)), name="small.png", model="up2")
        assert upscaled.status_code == 413
        assert "upscaled x2 would be 0.01 megapixels" in upscaled.json()["error"]
        assert upload(client, png_bytes(np.zeros((50, 50, 3), np.uint8)), model="noise").status_code == 202


def test_bad_requests_are_refused_with_a_message_and_leave_no_files(models):
    with client_for(models) as client:
        root = client.app.state.jobs_root
        corrupt = upload(client, b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, name="broken.png")
        assert corrupt.status_code == 400
        message = corrupt.json()["error"]
        assert message.startswith("broken.png: not a readable image") and "/tmp" not in message
        assert upload(client, b"", name="empty.png").status_code == 400
        assert upload(client, png_bytes(photo8()), model="../noise").status_code == 400
        wrong_type = client.post("/api/jobs", params={"name": "a.png", "model": "noise"}, content=png_bytes(photo8()),
                                 headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        assert client.get("/api/jobs/0123").status_code == 404
        assert list(root.iterdir()) == []


def test_request_names_never_become_paths(models, tmp_path):
    assert split_upload_name("../../etc/passwd") == ("passwd", ".png")
    assert split_upload_name("..\\..\\evil.TIF") == ("evil", ".tif")
    assert split_upload_name("photo.exe") == ("photo.exe", ".png")
    assert split_upload_name("") == ("image", ".png")
    with client_for(models) as client:
        root = client.app.state.jobs_root
        created = upload(client, png_bytes(photo8()), name="../../../../../../tmp/owned.png")
        status = wait_done(client, created.json()["id"])
        assert 'filename="owned_noise.png"' in client.get(status["result"]).headers["content-disposition"]
        files = [p.relative_to(root) for p in root.rglob("*") if p.is_file()]
        assert all(p.parts[0].startswith("job-") and p.name in ("input.png", "result.png") for p in files)
        assert client.get("/api/jobs/..%2F..%2Fetc/result").status_code == 404
    assert not (tmp_path.parent / "owned.png").exists()


def test_temporary_files_are_removed(models):
    with client_for(models) as client:
        root = client.app.state.jobs_root
        ids = [upload(client, tiff_bytes(photo8()), name="a.tif").json()["id"] for _ in range(2)]
        for job_id in ids:
            wait_done(client, job_id)
        folders = sorted(root.iterdir())
        assert [sorted(p.name for p in f.iterdir()) for f in folders] == [
            ["after.png", "before.png", "input.tif", "result.tif"]] * 2
        assert client.delete(f"/api/jobs/{ids[0]}").status_code == 204
        assert len(list(root.iterdir())) == 1
        assert client.get(f"/api/jobs/{ids[0]}").status_code == 404
    assert not root.exists()  # the server stopping removes everything


def test_finished_jobs_expire(models):
    with client_for(models, keep_minutes=0.0001) as client:
        root = client.app.state.jobs_root
        first = upload(client, png_bytes(photo8())).json()["id"]
        wait_done(client, first)
        time.sleep(0.05)
        second = upload(client, png_bytes(photo8())).json()["id"]  # each upload sweeps expired results
        assert client.get(f"/api/jobs/{first}").status_code == 404
        wait_done(client, second)
        assert len(list(root.iterdir())) == 1


def test_a_full_queue_answers_503_with_retry_after(models, monkeypatch):
    monkeypatch.setattr(JobQueue, "is_full", lambda self: True)
    with client_for(models) as client:
        busy = upload(client, png_bytes(photo8()))
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        assert "busy" in busy.json()["error"]
        assert list(client.app.state.jobs_root.iterdir()) == []


def test_other_host_names_are_refused_on_loopback(models):
    with client_for(models) as client:
        assert client.get("/api/models", headers={"Host": "attacker.example"}).status_code == 400


def blocking_job(queue: JobQueue) -> Job:
    folder = queue.new_folder()
    return Job(folder=folder, input=folder / "in.png", output=folder / "out.png", before=folder / "in.png",
               after=folder / "out.png", download_name="x.png", model="m", realism=None, width=1, height=1, scale=1)


def test_queue_is_bounded_and_runs_one_job_at_a_time():
    release, running = threading.Event(), []

    def run(job):
        running.append(job.id)
        while not release.is_set():
            job.report_progress(0.5)
            time.sleep(0.01)

    queue = JobQueue(run, size=1, keep_seconds=60)
    try:
        first, second, third = (blocking_job(queue) for _ in range(3))
        queue.submit(first)
        while not running:
            time.sleep(0.01)
        queue.submit(second)
        assert queue.position(second) == 1
        with pytest.raises(QueueFull):
            queue.submit(third)
        assert running == [first.id]  # the second waits for the worker
        release.set()
        while second.state != "done":
            time.sleep(0.01)
        assert running == [first.id, second.id]
    finally:
        queue.close()
    assert not queue.root.exists()


def test_deleting_a_running_job_stops_it_and_removes_its_files():
    stopped = threading.Event()

    def run(job):
        try:
            while True:
                job.report_progress(0.1)
                time.sleep(0.01)
        except Cancelled:
            stopped.set()
            raise

    queue = JobQueue(run, size=2, keep_seconds=60)
    try:
        job = blocking_job(queue)
        queue.submit(job)
        while job.state != "running":
            time.sleep(0.01)
        assert queue.delete(job.id)
        assert stopped.wait(5)
        while job.folder.exists():
            time.sleep(0.01)
        assert job.state == "cancelled"
    finally:
        queue.close()


def test_serve_cli_refuses_bad_options(capsys, tmp_path):
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port 70000" in capsys.readouterr().err
