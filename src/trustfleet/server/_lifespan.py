"""The ASGI lifespan protocol (startup and shutdown of the application) for one worker.

An application that does not speak it (raises or returns on a ``lifespan`` scope) is served
anyway, as the ASGI specification asks of servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from trustfleet.errors import Unavailable

__all__ = ["Lifespan"]

logger = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 60.0
_SHUTDOWN_TIMEOUT_S = 10.0


class Lifespan:
    """Runs ``app`` on a ``lifespan`` scope: :meth:`startup`, serve, then :meth:`shutdown`."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def startup(self) -> None:
        """Start the application.

        Raises:
            Unavailable: The application reported that its startup failed.
        """
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.get_running_loop().create_task(
            self._app(scope, self._inbox.get, self._outbox.put)
        )
        await self._inbox.put({"type": "lifespan.startup"})
        answer = await self._next(timeout_s=_STARTUP_TIMEOUT_S)
        if answer is None:
            self._supported = False
            return
        if answer["type"] == "lifespan.startup.failed":
            raise Unavailable(
                f"the application did not start: {answer.get('message', '')}",
                code="server.startup",
            )

    async def shutdown(self) -> None:
        """Stop the application (bounded wait); never raises."""
        if self._task is None:
            return
        if self._supported and not self._task.done():
            await self._inbox.put({"type": "lifespan.shutdown"})
            answer = await self._next(timeout_s=_SHUTDOWN_TIMEOUT_S)
            if answer is not None and answer["type"] == "lifespan.shutdown.failed":
                logger.error("application shutdown failed: %s", answer.get("message", ""))
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({self._task})

    async def _next(self, *, timeout_s: float | None) -> dict[str, Any] | None:
        """The application's next message; None if it ended (no lifespan support) or timed out.

        Per the ASGI specification an application that raises on a ``lifespan`` scope does not
        support it, and the server goes on: its exception is logged, never raised.
        """
        if self._task is None:
            return None
        getter = asyncio.get_running_loop().create_task(self._outbox.get())
        done, _ = await asyncio.wait(
            {getter, self._task}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self._task.done() and not self._task.cancelled():
            logger.debug("the application has no lifespan support: %r", self._task.exception())
        return None
