"""``trustfleet witness serve``: the witness's HTTPS service (c2sp.org/tlog-witness).

* ``POST /add-checkpoint``: the body (bounded by ``max_body_bytes``: larger is 413 before the
  application sees it) goes to :meth:`trustfleet.services.witness.Witness.add_checkpoint`;
* ``GET /<sha256(origin) hex>/checkpoint``: the last checkpoint it cosigned for that log, with
  the log's signatures it verified and its own cosignature (the monitoring API), else 404.

It runs on the fleet service's own HTTP/1.1 over TLS 1.3 stack (the same bounds on headers,
bodies, time and connections), one process, with the witness's self-signed certificate. The
home's lock file is held while it serves: one witness process per home.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from trustfleet.errors import TrustFleetError, status_for
from trustfleet.processes import hold_exclusive
from trustfleet.server._limits import ConnectionLimits
from trustfleet.server._serve import listen_socket, new_event_loop, serve
from trustfleet.server._tls import TlsServerConfig, make_server_context
from trustfleet.services.witness import Witness
from trustfleet.settings.witness import WitnessHomeSettings

__all__ = ["create_witness_app", "serve_witness"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_LOCK_FILE = "witness.lock"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def create_witness_app(witness: Witness, *, clock: Clock = _utcnow) -> Starlette:
    """The witness's ASGI application around an open :class:`Witness`.

    A :class:`TrustFleetError` (the token unreachable, say) becomes its category's status
    with a one-line reason; the answer is never a cosignature then.
    """

    async def add_checkpoint(request: Request) -> Response:
        body = await request.body()
        try:
            # Synchronous on the event loop: requests are decided one at a time, in order.
            reply = witness.add_checkpoint(body, now=clock())
        except TrustFleetError as exc:
            logger.warning("add-checkpoint failed: %s", exc.one_line())
            return PlainTextResponse(f"{exc.one_line()}\n", status_code=status_for(exc))
        return Response(reply.body, status_code=reply.status, media_type=reply.content_type)

    async def checkpoint(request: Request) -> Response:
        note = witness.checkpoint(str(request.path_params["origin_hash"]))
        if note is None:
            return PlainTextResponse("no checkpoint cosigned for this log\n", status_code=404)
        return Response(note, media_type="text/plain; charset=utf-8")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/{origin_hash:str}/checkpoint", checkpoint, methods=["GET"]),
        ]
    )


def serve_witness(
    settings: WitnessHomeSettings,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
) -> str:
    """Serve the witness on ``https://host:port`` until SIGTERM or SIGINT.

    Args:
        settings: The witness's settings.
        host: The address to listen on.
        port: The port.
        on_ready: Called with the URL once it listens.

    Returns:
        The name of the signal that stopped it (``SIGTERM`` or ``SIGINT``).

    Raises:
        Conflict: Another witness process serves this home.
        Unavailable: The address cannot be bound; the token cannot be reached.
        Config: The TLS files or the state are unusable.
    """
    lock = hold_exclusive(
        settings.path(_LOCK_FILE),
        what=f"the witness home {settings.home}",
        hint="stop the other 'trustfleet witness serve' first",
        code="witness.home.busy",
    )
    try:
        witness = Witness.open(settings)
        try:
            return _run(settings, witness, host=host, port=port, on_ready=on_ready)
        finally:
            witness.close()
    finally:
        lock.release()


def _run(
    settings: WitnessHomeSettings,
    witness: Witness,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str], None],
) -> str:
    context = make_server_context(
        TlsServerConfig(
            cert_chain=settings.path(settings.tls_cert), key=settings.path(settings.tls_key)
        )
    )
    limits = ConnectionLimits(
        max_body_bytes=settings.max_body_bytes,
        request_timeout_s=settings.request_timeout_s,
        max_connections=256,
        max_connections_per_source=32,
    )
    sock = listen_socket(host, port, reuse_port=False)
    bound = sock.getsockname()[1]
    loop = new_event_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    shown = f"[{host}]" if ":" in host else host
    loop.call_soon(on_ready, f"https://{shown}:{bound}")
    try:
        loop.run_until_complete(
            serve(
                app=create_witness_app(witness),
                sock=sock,
                context=context,
                limits=limits,
                stop=stop,
            )
        )
    finally:
        loop.close()
    return received[0] if received else "SIGTERM"
