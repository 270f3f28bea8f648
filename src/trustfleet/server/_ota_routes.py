"""``GET /tuf/metadata/<file>`` and ``GET /tuf/targets/<path>``: the update repository.

Only devices with a certificate this service issued may read (see
``services/_ota_access.py``). Names are checked strictly before any file is touched: metadata
names match the TUF file names we write, target paths are plain segments without dot-files or
``..``, and the resolved file must lie inside its folder. Files are streamed in 64 KiB chunks
(the HTTPS layer applies back-pressure), with one ``Range: bytes=a-b`` / ``a-`` / ``-n``
answered by 206 and an unsatisfiable or unsupported one by 416.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from trustfleet.errors import NotFound
from trustfleet.services.ota import authorize_device
from trustfleet.services.runtime import Runtime

__all__ = ["FileStream", "inside", "ota_routes"]

_METADATA_NAME = re.compile(r"timestamp\.json|[1-9][0-9]{0,9}\.(root|snapshot|targets)\.json")
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")
_MAX_TARGET_CHARS = 1024
_MAX_DEPTH = 8
_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_CHUNK = 64 * 1024
_IMMUTABLE = "max-age=86400, immutable"  # versioned and hashed names never change


def _not_found() -> NotFound:
    return NotFound("no such file in the update repository", code="ota.http.not_found")


def inside(folder: Path, relative: str, *, missing: Callable[[], NotFound] = _not_found) -> Path:
    """The file ``relative`` names inside ``folder`` (never outside it), else ``missing()``."""
    base = folder.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise missing()
    return path


def metadata_file(repo: Path, name: str) -> Path:
    """The metadata file ``name`` names, or NotFound (code ``ota.http.not_found``)."""
    if _METADATA_NAME.fullmatch(name) is None:
        raise _not_found()
    return inside(repo / "metadata", name)


def target_file(repo: Path, path: str) -> Path:
    """The (hashed-name) target file ``path`` names, or NotFound."""
    parts = path.split("/")
    if (
        len(path) > _MAX_TARGET_CHARS
        or len(parts) > _MAX_DEPTH
        or any(_SEGMENT.fullmatch(part) is None for part in parts)
    ):
        raise _not_found()
    return inside(repo / "targets", path)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single byte range, None for the whole file.

    Raises:
        ValueError: The range is malformed, multiple or unsatisfiable (answer 416).
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise ValueError("unsupported range")
    first, last = match.group(1), match.group(2)
    if not first:  # suffix: the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise ValueError("unsatisfiable")
        return max(size - n, 0), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if start >= size or end <= start:
        raise ValueError("unsatisfiable")
    return start, end


class FileStream(Response):
    """A file (or one byte range of it), streamed in chunks read off the event loop."""

    def __init__(self, path: Path, *, media_type: str, cache: str, range_header: str | None):
        super().__init__(media_type=media_type)
        self._path = path
        self._size = path.stat().st_size
        headers = {"accept-ranges": "bytes", "cache-control": cache}
        try:
            span = parse_range(range_header, self._size)
        except ValueError:
            self.status_code = 416
            self._span = (0, 0)
            headers["content-range"] = f"bytes */{self._size}"
        else:
            self._span = span or (0, self._size)
            if span is not None:
                self.status_code = 206
                headers["content-range"] = f"bytes {span[0]}-{span[1] - 1}/{self._size}"
        headers["content-length"] = str(self._span[1] - self._span[0])
        self.init_headers(headers)
        self.headers["content-type"] = media_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})  # fmt: skip
        start, end = self._span
        if end == start or scope["method"] == "HEAD":  # HEAD: the GET's headers, no body
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        loop = asyncio.get_running_loop()
        fd = os.open(self._path, os.O_RDONLY)
        try:
            offset = start
            while offset < end:
                size = min(_CHUNK, end - offset)
                chunk = await loop.run_in_executor(None, os.pread, fd, size, offset)
                if not chunk:  # the file shrank: end the response short (client sees it)
                    break
                offset += len(chunk)
                more = offset < end
                await send({"type": "http.response.body", "body": chunk, "more_body": more})
        finally:
            os.close(fd)


def ota_routes(
    rt: Runtime,
    *,
    clock: Callable[[], datetime],
    guard: Callable[[Callable[[Request], Any]], Callable[[Request], Any]],
) -> list[Route]:
    """The two repository routes, each behind device mTLS.

    Args:
        rt: The server home's runtime.
        clock: The current time.
        guard: Turns ``TrustFleetError`` into an HTTP problem response (the app's).
    """
    repo = rt.settings.path(rt.settings.ota.repo_dir)

    async def authorize(request: Request) -> None:
        tls = request.scope.get("extensions", {}).get("tls", {})
        chain = tls.get("client_cert_chain") or []
        pem = str(chain[0]) if chain else None
        await asyncio.to_thread(authorize_device, rt, client_cert_pem=pem, now=clock())

    async def metadata(request: Request) -> Response:
        await authorize(request)
        name = request.path_params["name"]
        path = metadata_file(repo, name)
        cache = "no-store" if name == "timestamp.json" else _IMMUTABLE
        return FileStream(
            path,
            media_type="application/json",
            cache=cache,
            range_header=request.headers.get("range"),
        )

    async def targets(request: Request) -> Response:
        await authorize(request)
        path = target_file(repo, request.path_params["path"])
        return FileStream(
            path,
            media_type="application/octet-stream",
            cache=_IMMUTABLE,
            range_header=request.headers.get("range"),
        )

    return [
        Route("/tuf/metadata/{name}", guard(metadata), methods=["GET"]),
        Route("/tuf/targets/{path:path}", guard(targets), methods=["GET"]),
    ]
