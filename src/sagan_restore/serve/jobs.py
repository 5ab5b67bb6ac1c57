"""The job queue behind `sagan-restore serve`: one worker thread enhances uploaded images one at a time.

Why one worker and a bounded queue: an enhancement already keeps every core busy, and each one running
at once would hold its whole image (and its result, up to 16 times larger) in memory. With one worker,
memory is bounded by the largest image the server accepts, however many requests arrive; requests beyond
the queue's size are refused (HTTP 503) instead of piling up.

Every job owns a fresh temporary folder (named by `tempfile`, never by the request) inside the server's
own temporary folder; deleting the job, its expiry, or the server stopping removes it.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sagan_restore.errors import UserError

KEPT_RESULTS = 32  # finished jobs kept at most, newest first: bounds the disk a long session uses


class Cancelled(Exception):
    """Raised inside a running job whose result nobody wants any more (deleted, or the server stopping)."""


class QueueFull(Exception):
    pass


@dataclass
class Job:
    folder: Path  # the job's own temporary folder; every file below is named by the server
    input: Path
    output: Path  # the result in the input's format
    before: Path  # what the page shows of the input and the result: the files themselves where browsers
    after: Path  # can show them, else 8-bit PNG copies
    download_name: str  # what the browser saves the result as
    model: str
    realism: float | None
    width: int  # of the input
    height: int
    scale: int
    strength: float = 1.0  # 1 = the model itself; below, blended with its light variant
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued -> running -> done | failed | cancelled (deleted, or the server stopping)
    progress: float = 0.0  # fraction of the tiles enhanced
    error: str | None = None
    seconds: float | None = None  # time the enhancement took
    finished_at: float | None = None  # time.monotonic() when it finished
    cancel: threading.Event = field(default_factory=threading.Event)

    def report_progress(self, fraction: float) -> None:
        """The Enhancer's progress hook: records the fraction and stops the job if it was cancelled."""
        self.progress = fraction
        if self.cancel.is_set():
            raise Cancelled


class JobQueue:
    """Jobs by id, a bounded queue of those waiting, and the worker thread that runs them with `run`."""

    def __init__(self, run: Callable[[Job], None], *, size: int, keep_seconds: float):
        self.root = Path(tempfile.mkdtemp(prefix="sagan-restore-serve-"))
        self._run = run
        self._waiting: queue.Queue[Job] = queue.Queue(maxsize=size)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()  # guards _jobs and every job's state changes
        self._keep_seconds = keep_seconds
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name="sagan-restore-worker", daemon=True)
        self._worker.start()

    def new_folder(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="job-", dir=self.root))

    def submit(self, job: Job) -> None:
        """Queue a job; QueueFull when `size` jobs already wait (the caller still owns job.folder then)."""
        self.sweep()
        with self._lock:
            try:
                self._waiting.put_nowait(job)
            except queue.Full:
                raise QueueFull from None
            self._jobs[job.id] = job

    def is_full(self) -> bool:
        return self._waiting.full()

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """How many jobs run or wait before this queued one."""
        with self._lock:
            waiting = [other.id for other in self._waiting.queue]
            running = any(other.state == "running" for other in self._jobs.values())
        return int(running) + (waiting.index(job.id) if job.id in waiting else 0)

    def delete(self, job_id: str) -> bool:
        """Forget a job and remove its files; a running job stops at its next tile and is removed then."""
        with self._lock:
            job = self._jobs.pop(job_id, None)
            if job is None:
                return False
            job.cancel.set()
            running = job.state == "running"
        if not running:
            shutil.rmtree(job.folder, ignore_errors=True)
        return True

    def sweep(self) -> None:
        """Delete finished jobs older than keep_seconds, and all but the newest KEPT_RESULTS finished ones."""
        now = time.monotonic()
        with self._lock:
            finished = sorted((j for j in self._jobs.values() if j.finished_at is not None),
                              key=lambda j: j.finished_at, reverse=True)
        for rank, job in enumerate(finished):
            if rank >= KEPT_RESULTS or now - job.finished_at > self._keep_seconds:
                self.delete(job.id)

    def close(self) -> None:
        """Stop the worker (a running job at its next tile) and remove every job's files."""
        self._stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        self._worker.join()
        shutil.rmtree(self.root, ignore_errors=True)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                job = self._waiting.get(timeout=0.1)
            except queue.Empty:
                continue
            with self._lock:
                if job.cancel.is_set():
                    continue  # deleted while it waited; delete() removed its folder
                job.state = "running"
            self._run_one(job)

    def _run_one(self, job: Job) -> None:
        start = time.perf_counter()
        state, error = "done", None
        try:
            self._run(job)
        except Cancelled:
            state = "cancelled"
        except UserError as err:
            state, error = "failed", str(err)
        except MemoryError:
            state, error = "failed", "out of memory; try a smaller image, or the command line with --tile"
        except Exception:  # a bug: the server log gets the traceback, the page a short message
            traceback.print_exc()
            state, error = "failed", "internal error (see the server's log)"
        with self._lock:
            job.state, job.error = state, error
            job.seconds = time.perf_counter() - start
            job.finished_at = time.monotonic()
            deleted = job.cancel.is_set()
        if deleted:
            shutil.rmtree(job.folder, ignore_errors=True)
