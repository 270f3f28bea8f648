"""Readiness of ``server run``: the parent's view of each component, shared through a file.

The HTTPS workers are separate processes; the parent (which supervises everything) writes
``HOME/run/status.json`` atomically every ``[supervision] status_interval_s`` and ``/readyz``
in any worker reads it. A file older than ``status_stale_s`` (or from a dead parent, which
stops rewriting it) means *not ready*. :func:`readiness_from` is pure: bytes and ``now`` in,
a verdict out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from trustfleet.fileio import write_atomic
from trustfleet.settings import ServerSettings

__all__ = [
    "RUN_DIR",
    "STATUS_FILE",
    "Component",
    "Readiness",
    "readiness_from",
    "readiness_route",
    "write_status",
]

RUN_DIR: Final = "run"
"""``HOME/run`` (0700): the lock, the children record and this status file."""

STATUS_FILE: Final = "status.json"
MAX_STATUS_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class Component:
    """One part of the service: its name (``store``, ``workers.ingest``…), up or not, why."""

    name: str
    up: bool
    detail: str = ""


@dataclass(frozen=True)
class Readiness:
    """The verdict of ``/readyz``: ready when every component is up and the view is fresh."""

    ready: bool
    components: tuple[Component, ...]
    reason: str = ""

    def to_document(self) -> dict[str, Any]:
        """The JSON answer: ``ready``, ``down`` (names), ``components`` and a ``reason``."""
        return {
            "ready": self.ready,
            "down": [c.name for c in self.components if not c.up],
            "components": [
                {"name": c.name, "up": c.up, "detail": c.detail} for c in self.components
            ],
            **({"reason": self.reason} if self.reason else {}),
        }


def write_status(path: Path, components: list[Component], *, now: float, pid: int) -> None:
    """Replace the status file (0600) with ``components`` as seen at unix time ``now``."""
    doc = {
        "written_at": now,
        "pid": pid,
        "components": [{"name": c.name, "up": c.up, "detail": c.detail} for c in components],
    }
    write_atomic(path, json.dumps(doc, sort_keys=True).encode(), mode=0o600)


def read_status(path: Path) -> bytes | None:
    """The status file's bytes (bounded), or None when there is none."""
    try:
        with path.open("rb") as fh:
            return fh.read(MAX_STATUS_BYTES + 1)
    except OSError:
        return None


def readiness_from(data: bytes | None, *, now: float, stale_s: float) -> Readiness:
    """Judge a status file read at unix time ``now``."""
    if data is None:
        return _not_ready("no status from the supervising process yet")
    try:
        if len(data) > MAX_STATUS_BYTES:
            raise ValueError("too large")
        doc = json.loads(data)
        written = float(doc["written_at"])
        components = tuple(
            Component(name=str(c["name"]), up=c["up"] is True, detail=str(c.get("detail", "")))
            for c in doc["components"]
        )
    except (ValueError, KeyError, TypeError):
        return _not_ready("the status file is unreadable")
    age = now - written
    if age > stale_s or age < -stale_s:
        stale = Component("supervisor", up=False, detail=f"status is {age:.0f} s old")
        return Readiness(False, (stale, *components), reason="the supervising process is silent")
    return Readiness(
        ready=bool(components) and all(c.up for c in components), components=components
    )


def _not_ready(reason: str) -> Readiness:
    return Readiness(False, (Component("supervisor", up=False, detail=reason),), reason=reason)


def readiness_route(settings: ServerSettings) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /readyz`` handler: 200 when every component is up, else 503 (JSON either way)."""
    path = settings.home / RUN_DIR / STATUS_FILE
    stale_s = settings.supervision.status_stale_s

    async def readyz(_request: Request) -> Response:
        verdict = readiness_from(read_status(path), now=time.time(), stale_s=stale_s)
        headers = {"cache-control": "no-store"}
        return JSONResponse(
            verdict.to_document(), status_code=200 if verdict.ready else 503, headers=headers
        )

    return readyz
