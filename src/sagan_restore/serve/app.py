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
import re
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass
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
from sagan_restore.infer.enhance import Enhancer, enhance_file
from sagan_restore.io import IMAGE_SUFFIXES, ImageTooLarge, read_image, write_image
from sagan_restore.models import zoo
from sagan_restore.serve.jobs import Job, JobQueue, QueueFull

STATIC = Path(__file__).resolve().parent / "static"
# What every browser shows as it is (as decoded formats and as output suffixes); others get a PNG preview.
BROWSER_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
DECODING_AT_ONCE = 2  # uploads decoded in parallel for their check: bounds that memory too
LOADED_MODELS = 4  # enhancers kept loaded (one per model and realism value asked for)
NOSNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
# The page loads nothing from elsewhere: no CDN (users may be offline) and no inline scripts.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
                **NOSNIFF}


@dataclass(frozen=True)
class ModelChoice:
    name: str  # shown on the page and sent back by it
    spec: str  # what Enhancer.load takes: a pretrained name or a path given to --model
    summary: str
    scale: int
    has_realism: bool  # the model blends fidelity and GAN weights; the page shows a slider
    default_realism: float | None


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def safe_stem(text: str) -> str:
    """Letters, digits, '-', '_' and '.' of a name, for the download's file name; never a path."""
    return re.sub(r"[^\w.-]+", "_", text).strip("._")[:80] or "image"


def split_upload_name(name: str) -> tuple[str, str]:
    """(stem, suffix) of the name a browser gave an upload: the suffix from the allow-list (else .png)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = base.rpartition(".")
    suffix = f".{ext.lower()}"
    if not dot or suffix not in IMAGE_SUFFIXES:
        return safe_stem(base), ".png"
    return safe_stem(stem), suffix


class Models:
    """The models offered on the page, and the enhancers loaded for them, the most recently used kept."""

    def __init__(self, cfg: ServeConfig):
        self._cfg = cfg
        self._loaded: OrderedDict[tuple[str, float | None], Enhancer] = OrderedDict()
        self.choices: dict[str, ModelChoice] = {}
        self._resolved: dict[str, zoo.ResolvedModel] = {}
        for name, resolved, summary in _offered(cfg.models):
            spec = resolved.spec
            if name in self.choices:
                raise UserError(f"--model {spec}: another model is already called {name} on the page; "
                                "give the files different names")
            self._resolved[spec] = resolved
            has_realism = resolved.realism_path is not None
            default_realism = resolved.default_realism if has_realism else None
            scale = self.enhancer(spec, default_realism).scale
            self.choices[name] = ModelChoice(name, spec, summary, scale, has_realism, default_realism)

    def enhancer(self, spec: str, realism: float | None) -> Enhancer:
        key = (spec, realism)
        if key not in self._loaded:
            self._loaded[key] = Enhancer.load(self._resolved.get(spec, spec), device=self._cfg.device, tile=self._cfg.tile, realism=realism)
            while len(self._loaded) > LOADED_MODELS:
                self._loaded.popitem(last=False)
        self._loaded.move_to_end(key)
        return self._loaded[key]

    def choice(self, name: str) -> ModelChoice:
        if name not in self.choices:
            raise HTTPException(400, f"unknown model {name!r}; this server offers {', '.join(self.choices)}")
        return self.choices[name]


def _offered(specs: tuple[str, ...]) -> list[tuple[str, zoo.ResolvedModel, str]]:
    """(name, resolved model, summary) of each model to offer."""
    if not specs:
        shipped = zoo.shipped()
        if not shipped:
            raise UserError("no pretrained models are shipped in this installation; pass --model with a run "
                            "folder or a .safetensors file")
        return [(m.name, zoo.resolve(m.name), m.summary) for m in shipped]
    offered = []
    for spec in specs:
        resolved = zoo.resolve(spec)
        if resolved.pretrained is not None:
            offered.append((resolved.pretrained.name, resolved, resolved.pretrained.summary))
        else:
            path = resolved.path
            offered.append((safe_stem(path.name if path.is_dir() else path.stem), resolved, f"model from {spec}"))
    return offered


def parse_realism(text: str | None, choice: ModelChoice) -> float | None:
    if not choice.has_realism:
        return None
    if text is None:
        return choice.default_realism
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise HTTPException(400, f"realism {text!r}: expected a number from 0 (fidelity) to 1 (realism)")
    return round(value, 2)  # the page's slider steps by 0.05; finer values would only reload models


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
                realism: float | None, shown_name: str) -> Job:
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
                   width=width, height=height, scale=choice.scale)

    def run(self, job: Job) -> None:
        """The worker's task: enhance the upload into the input's format, then a preview if browsers need one."""
        enhancer = self.models.enhancer(self.models.choices[job.model].spec, job.realism)
        enhance_file(enhancer, job.input, job.output, max_pixels=self.cfg.max_pixels,
                     on_progress=job.report_progress)
        if job.after != job.output:
            result = read_image(job.output, max_pixels=self.cfg.max_pixels)
            write_image(job.after, result.pixels, alpha=result.alpha, bit_depth=8)


def job_status(service: Service, job: Job) -> dict:
    base = f"/api/jobs/{job.id}"
    status = {
        "id": job.id, "state": job.state, "progress": round(job.progress, 4), "error": job.error,
        "model": job.model, "realism": job.realism, "width": job.width, "height": job.height,
        "scale": job.scale, "seconds": job.seconds, "download_name": job.download_name,
        "before": f"{base}/before",
    }
    if job.state == "queued":
        status["position"] = service.jobs.position(job)
    if job.state == "done":
        status.update(after=f"{base}/after", result=f"{base}/result")
    return status


async def receive_upload(request: Request, target: Path, *, limit: int, shown_name: str) -> None:
    """Stream the request body into `target`, refusing it (413) as soon as it passes `limit` bytes: a
    Content-Length header can be missing or wrong, so the count is what decides."""
    size = 0
    # Plain blocking writes: chunks are small and go to a local disk, far faster than they arrive.
    with open(target, "wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, upload_too_large(shown_name, limit))
            f.write(chunk)
    if size == 0:
        raise HTTPException(400, f"{shown_name}: the upload is empty (0 bytes)")


def upload_too_large(shown_name: str, limit: int) -> str:
    return (f"{shown_name}: the file is larger than this server's limit of {limit / 1e6:.3g} MB; start it with "
            "a larger --max-upload-mb")


def create_app(cfg: ServeConfig) -> Starlette:
    """The web app for `cfg`; the models load now (a bad --model fails here), the worker starts with it."""
    service = Service(cfg, Models(cfg))

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def list_models(request: Request) -> Response:
        models = [{"name": c.name, "summary": c.summary, "scale": c.scale, "has_realism": c.has_realism,
                   "default_realism": c.default_realism} for c in service.models.choices.values()]
        limits = {"max_upload_mb": cfg.max_upload_mb, "max_megapixels": cfg.max_pixels / 1e6}
        return JSONResponse({"models": models, "limits": limits})

    async def create_job(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/octet-stream":
            # Also what keeps other web sites out: browsers must ask first (CORS) before sending this type.
            raise HTTPException(415, "send the image as the request body, Content-Type: application/octet-stream")
        stem, suffix = split_upload_name(request.query_params.get("name", ""))
        shown_name = stem + suffix
        choice = service.models.choice(request.query_params.get("model", ""))
        realism = parse_realism(request.query_params.get("realism"), choice)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > service.max_upload_bytes:
            raise HTTPException(413, upload_too_large(shown_name, service.max_upload_bytes))
        if service.jobs.is_full():  # refused before the upload is stored and decoded; submit() decides last
            raise busy()
        folder = service.jobs.new_folder()
        try:
            source = folder / f"input{suffix}"
            await receive_upload(request, source, limit=service.max_upload_bytes, shown_name=shown_name)
            job = await run_in_threadpool(service.prepare, folder, source, stem=stem, suffix=suffix, choice=choice,
                                          realism=realism, shown_name=shown_name)
            service.jobs.submit(job)
        except BaseException as err:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, QueueFull):
                raise busy()
            raise
        return JSONResponse(job_status(service, job), status_code=202)

    def busy() -> HTTPException:
        return HTTPException(503, f"the server is busy: {cfg.queue} images are waiting already; try again when "
                                  "one has finished", headers={"Retry-After": "5"})

    def find(request: Request) -> Job:
        job = service.jobs.get(request.path_params["job_id"])
        if job is None:
            raise HTTPException(404, "no such job: it finished long ago, was removed, or the server restarted")
        return job

    async def get_job(request: Request) -> Response:
        return JSONResponse(job_status(service, find(request)))

    async def delete_job(request: Request) -> Response:
        find(request)
        service.jobs.delete(request.path_params["job_id"])
        return Response(status_code=204)

    def finished(request: Request) -> Job:
        job = find(request)
        if job.state != "done":
            raise HTTPException(409, f"the job is {job.state}, not done")
        return job

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
        service.jobs = JobQueue(service.run, size=cfg.queue, keep_seconds=cfg.keep_minutes * 60)
        app.state.jobs_root = service.jobs.root
        try:
            yield
        finally:
            await run_in_threadpool(service.jobs.close)

    routes = [
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
    # Bound to loopback, requests naming another host are refused: a web site the user visits could
    # otherwise reach the server through a DNS name rebound to 127.0.0.1.
    middleware = ([Middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS))]
                  if is_loopback(cfg.host) else [])
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                     exception_handlers={HTTPException: http_error})
