"""Uploads to the `serve` page: the name a browser sends (never a path) and the body, streamed to disk."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

from sagan_restore.io import IMAGE_SUFFIXES


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
