"""Listening sockets, the event loop, and worker processes for the HTTPS server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import uvloop
from OpenSSL import SSL

from trustfleet.errors import Unavailable
from trustfleet.server._lifespan import Lifespan
from trustfleet.server._limits import ConnectionGate
from trustfleet.server._protocol import AsgiApp, ConnectionLimits, TlsHttpProtocol

__all__ = ["listen_socket", "new_event_loop", "serve"]

logger = logging.getLogger(__name__)


_BACKLOG = 2048


def listen_socket(
    host: str, port: int, *, reuse_port: bool, backlog: int = _BACKLOG, listen: bool = True
) -> socket.socket:
    """Bind a TCP socket and (unless ``listen`` is false) listen on it.

    Raises:
        Unavailable: The address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise Unavailable(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another port with --api-port",
        ) from exc
    if listen:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


async def serve(
    *,
    app: AsgiApp,
    sock: socket.socket,
    context: SSL.Context,
    limits: ConnectionLimits,
    stop: asyncio.Event,
    gate: ConnectionGate | None = None,
    current_context: Callable[[], SSL.Context] | None = None,
) -> None:
    """Serve HTTPS on ``sock`` until ``stop`` is set.

    The application's ASGI lifespan (if it has one) starts before the first connection and
    stops after the listener closes. ``gate`` caps the connections (one per worker process; a
    new one from ``limits`` if not given). ``current_context``, if given, is asked for the TLS
    context of each new connection (a rotated certificate; ``context`` is then the first one).
    """
    loop = asyncio.get_running_loop()
    addr = sock.getsockname()
    server_addr = (str(addr[0]), int(addr[1]))
    shared_gate = gate or ConnectionGate(limits)

    def factory() -> TlsHttpProtocol:
        return TlsHttpProtocol(
            context=current_context() if current_context else context,
            app=app,
            limits=limits,
            server_addr=server_addr,
            gate=shared_gate,
        )

    lifespan = Lifespan(app)
    await lifespan.startup()
    server = await loop.create_server(factory, sock=sock, backlog=_BACKLOG)
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2.0)
        await lifespan.shutdown()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop (its socket I/O is much faster than the standard loop's)."""
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
