"""`sagan-restore serve`: a local web page that enhances images with the same Enhancer and image IO as
`sagan-restore enhance`.

Starlette routes the requests and uvicorn serves them. The page sends each image as the raw body of one
POST (no multipart form to parse), with the model and the file's name in the query string. The name never
becomes a path: it only picks the output format from io.IMAGE_SUFFIXES and the download's name. Uploads
are decoded once on arrival, so a corrupt or oversized image is refused at once with a message (HTTP 400
or 413), then queued for the one worker thread (serve/jobs.py), which decodes it again: queued images wait
as files, not as decoded pixels in memory.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sagan_restore.config import ServeConfig
from sagan_restore.errors import UserError
from sagan_restore.infer.enhance import enhance_file
from sagan_restore.io import ImageTooLarge, read_image, write_image
from sagan_restore.serve.jobs import Job, JobQueue, QueueFull
from sagan_restore.serve.models import ModelChoice, Models, parse_realism, parse_strength
from sagan_restore.serve.uploads import receive_upload, split_upload_name, upload_too_large

STATIC = Path(__file__).resolve().parent / "static"
# What every browser shows as it is (as decoded formats and as output suffixes); others get a PNG preview.
BROWSER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DECODING_AT_ONCE = 2  # uploads decoded in parallel for their check: bounds that memory too
NOSNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# The page loads nothing from elsewhere: no CDN (users may be offline) and no inline scripts.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
                **NOSNIFF}


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


class Service:
    """What the routes share: the configuration, the models and the job queue."""

    def __init__(self, cfg: ServeConfig, models: Models):
        self.cfg = cfg
        self.models = models
        self.jobs: JobQueue | None = None  # started with the app (see lifespan)
        self._decoding = threading.BoundedSemaphore(DECODING_AT_ONCE)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.cfg.max_upload_mb * 1e6)

    def prepare(self, folder: Path, source: Path, *, stem: str, suffix: str, choice: ModelChoice,
                realism: float | None, strength: float, shown_name: str) -> Job:
        """Decode an upload to check it (in a worker thread of the server) and describe its job."""
        with self._decoding:
            try:
                image = read_image(source, max_pixels=self.cfg.max_pixels)
            except ImageTooLarge as err:
                raise HTTPException(413, str(err).replace(str(source), shown_name))
            except UserError as err:
                raise HTTPException(400, str(err).replace(str(source), shown_name))
            height, width = image.pixels.shape[:2]
            result_pixels = width * height * choice.scale**2
            if result_pixels > self.cfg.max_pixels:
                raise HTTPException(413, f"{shown_name}: {width}x{height} upscaled x{choice.scale} would be "
                                         f"{result_pixels / 1e6:.3g} megapixels, over this server's limit of "
                                         f"{self.cfg.max_pixels / 1e6:.3g}; use a smaller image, or start "
                                         "the server with a larger --max-pixels")
            before = source
            if image.format not in BROWSER_FORMATS:
                before = folder / "before.png"
                write_image(before, image.pixels, alpha=image.alpha, bit_depth=8)
        output = folder / f"result{suffix}"
        return Job(folder=folder, input=source, output=output, before=before,
                   after=output if suffix in BROWSER_SUFFIXES else folder / "after.png",
                   download_name=f"{stem}_{choice.name}{suffix}", model=choice.name, realism=realism,
                   width=width, height=height, scale=choice.scale, strength=strength)

    def run(self, job: Job) -> None:
        """The worker's task: enhance the upload into the input's format, then a preview if browsers need one."""
        enhancer = self.models.enhancer(self.models.choices[job.model].spec, job.realism, job.strength)
        enhance_file(enhancer, job.input, job.output, max_pixels=self.cfg.max_pixels,
                     on_progress=job.report_progress)
        if job.after != job.output:
            result = read_image(job.output, max_pixels=self.cfg.max_pixels)
            write_image(job.after, result.pixels, alpha=result.alpha, bit_depth=8)


def job_status(service: Service, job: Job) -> dict:
    base = f"/api/jobs/{job.id}"
    status = {
        "id": job.id, "state": job.state, "progress": round(job.progress, 4), "error": job.error,
        "model": job.model, "realism": job.realism, "strength": job.strength, "width": job.width,
        "height": job.height,
        "scale": job.scale, "seconds": job.seconds, "download_name": job.download_name,
        "before": f"{base}/before",
    }
    if job.state == "queued":
        status["position"] = service.jobs.position(job)
    if job.state == "done":
        status.update(after=f"{base}/after", result=f"{base}/result")
    return status


# The routes. Each finds what it shares with the others (models, queue, limits) in app.state.service.

def service_of(request: Request) -> Service:
    return request.app.state.service


async def page(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


async def list_models(request: Request) -> Response:
    service = service_of(request)
    models = [{"name": c.name, "summary": c.summary, "scale": c.scale, "has_realism": c.has_realism,
               "default_realism": c.default_realism, "has_strength": c.has_strength}
              for c in service.models.choices.values()]
    limits = {"max_upload_mb": service.cfg.max_upload_mb, "max_megapixels": service.cfg.max_pixels / 1e6}
    return JSONResponse({"models": models, "limits": limits})


async def create_job(request: Request) -> Response:
    service = service_of(request)
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
        # Also what keeps other web sites out: browsers must ask first (CORS) before sending this type.
        raise HTTPException(415, "send the image as the request body, Content-Type: application/octet-stream")
    stem, suffix = split_upload_name(request.query_params.get("name", ""))
    shown_name = stem + suffix
    choice = service.models.choice(request.query_params.get("model", ""))
    realism = parse_realism(request.query_params.get("realism"), choice)
    strength = parse_strength(request.query_params.get("strength"), choice)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > service.max_upload_bytes:
        raise HTTPException(413, upload_too_large(shown_name, service.max_upload_bytes))
    if service.jobs.is_full():  # refused before the upload is stored and decoded; submit() decides last
        raise busy(service)
    folder = service.jobs.new_folder()
    try:
        source = folder / f"input{suffix}"
        await receive_upload(request, source, limit=service.max_upload_bytes, shown_name=shown_name)
        job = await run_in_threadpool(service.prepare, folder, source, stem=stem, suffix=suffix, choice=choice,
                                      realism=realism, strength=strength, shown_name=shown_name)
        service.jobs.submit(job)
    except BaseException as err:
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(err, QueueFull):
            raise busy(service)
        raise
    return JSONResponse(job_status(service, job), status_code=202)


def busy(service: Service) -> HTTPException:
    return HTTPException(503, f"the server is busy: {service.cfg.queue} images are waiting already; try again "
                              "when one has finished", headers={"Retry-After": "5"})


def find(request: Request) -> Job:
    job = service_of(request).jobs.get(request.path_params["job_id"])
    if job is None:
        raise HTTPException(404, "no such job: it finished long ago, was removed, or the server restarted")
    return job


def finished(request: Request) -> Job:
    job = find(request)
    if job.state != "done":
        raise HTTPException(409, f"the job is {job.state}, not done")
    return job


async def get_job(request: Request) -> Response:
    return JSONResponse(job_status(service_of(request), find(request)))


async def delete_job(request: Request) -> Response:
    find(request)
    service_of(request).jobs.delete(request.path_params["job_id"])
    return Response(status_code=204)


async def before(request: Request) -> Response:
    return FileResponse(find(request).before, headers=NOSNIFF)


async def after(request: Request) -> Response:
    return FileResponse(finished(request).after, headers=NOSNIFF)


async def result(request: Request) -> Response:
    job = finished(request)
    return FileResponse(job.output, filename=job.download_name, headers=NOSNIFF)


async def http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette):
    """The worker thread lives as long as the app: started with it, its queue emptied and removed after."""
    service = app.state.service
    service.jobs = JobQueue(service.run, size=service.cfg.queue, keep_seconds=service.cfg.keep_minutes * 60)
    app.state.jobs_root = service.jobs.root
    try:
        yield
    finally:
        await run_in_threadpool(service.jobs.close)


ROUTES = [
    Route("/", page),
    Route("/api/models", list_models),
    Route("/api/jobs", create_job, methods=["POST"]),
    Route("/api/jobs/{job_id}", get_job),
    Route("/api/jobs/{job_id}", delete_job, methods=["DELETE"]),
    Route("/api/jobs/{job_id}/before", before),
    Route("/api/jobs/{job_id}/after", after),
    Route("/api/jobs/{job_id}/result", result),
    Mount("/static", StaticFiles(directory=STATIC)),
]


def create_app(cfg: ServeConfig) -> Starlette:
    """The web app for `cfg`; the models load now (a bad --model fails here), the worker starts with it."""
    # Bound to loopback, requests naming another host are refused: a web site the user visits could
    # otherwise reach the server through a DNS name rebound to 127.0.0.1.
    middleware = ([Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS))]
                  if is_loopback(cfg.host) else [])
    app = Starlette(routes=ROUTES, middleware=middleware, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.service = Service(cfg, Models(cfg))
    return app
