"""``GET /audit/log/checkpoint`` and ``GET /audit/log/tile/…``: the audit log as C2SP tlog-tiles.

Files come from ``[audit] publish_dir`` as the sequencer wrote them. Paths are parsed with the
tlog-tiles grammar before any file is touched (:func:`trustfleet.audit.tiles.parse_tile_path`),
and the resolved file must lie inside the folder. Full tiles and full entry bundles never
change (cached as immutable); the checkpoint and partial tiles are not cached. Readable
without a client certificate: an auditor needs only the server's CA and the log's key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from trustfleet.audit.tiles import TILE_WIDTH, parse_tile_path
from trustfleet.errors import InvalidInput, NotFound
from trustfleet.server._ota_routes import FileStream, inside
from trustfleet.services.audit import publish_dir
from trustfleet.services.runtime import Runtime

__all__ = ["audit_routes"]

_IMMUTABLE = "max-age=31536000, immutable"


def _missing() -> NotFound:
    return NotFound("no such file in the audit log", code="audit.http.not_found")


def audit_routes(
    rt: Runtime, *, guard: Callable[[Callable[[Request], Any]], Callable[[Request], Any]]
) -> list[Route]:
    """The two routes of the published log."""
    base = publish_dir(rt)

    async def checkpoint(_request: Request) -> Response:
        path = inside(base, "checkpoint", missing=_missing)
        return FileStream(path, media_type="text/plain; charset=utf-8", cache="no-store",
                          range_header=None)  # fmt: skip

    async def tile(request: Request) -> Response:
        relative = "tile/" + request.path_params["path"]
        try:
            _level, _index, width = parse_tile_path(relative)
        except InvalidInput:
            raise _missing() from None
        path = inside(base, relative, missing=_missing)
        cache = _IMMUTABLE if width == TILE_WIDTH else "no-cache"
        return FileStream(path, media_type="application/octet-stream", cache=cache,
                          range_header=None)  # fmt: skip

    return [
        Route("/audit/log/checkpoint", guard(checkpoint), methods=["GET"]),
        Route("/audit/log/tile/{path:path}", guard(tile), methods=["GET"]),
    ]
