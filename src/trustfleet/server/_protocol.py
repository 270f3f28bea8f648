"""HTTP/1.1 over TLS 1.3 for an ASGI application, with the peer certificate in the scope.

One :class:`TlsHttpProtocol` per connection: TLS runs on pyOpenSSL memory BIOs, HTTP is parsed
by h11, and each request is handed to the ASGI app with the standard ``tls`` extension
(``scope["extensions"]["tls"]["client_cert_chain"]`` holds the client certificate as PEM).

Every input is bounded (see :class:`~trustfleet.server._limits.ConnectionLimits`):

* memory: the connection reads from the socket only while it needs bytes (a request head, or
  the body a request is waiting for). Once a request is complete it stops reading until its
  response is sent, so a client that pipelines requests without reading the answers is held
  back by TCP flow control, not by our buffers; responses wait (back-pressure) while more than
  ``write_buffer_bytes`` are queued for the client;
* time: a deadline for the TLS handshake, one for the whole request (head and body, never
  extended by more bytes), an idle timeout between requests and while a response waits;
* count: connections per worker and per source address (the :class:`ConnectionGate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal, cast

import h11
from OpenSSL import SSL, crypto

from trustfleet.server._asgi import PeerGone, Receive, Send
from trustfleet.server._limits import ConnectionGate, ConnectionLimits, source_key
from trustfleet.server._request import build_scope, head_problem

__all__ = ["AsgiApp", "ConnectionLimits", "TlsHttpProtocol"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_READ_CHUNK = 65536
Phase = Literal["handshake", "idle", "request", "app"]


class TlsHttpProtocol(asyncio.Protocol):
    """Serves one TLS connection; see the module docstring."""

    def __init__(
        self,
        *,
        context: SSL.Context,
        app: AsgiApp,
        limits: ConnectionLimits,
        server_addr: tuple[str, int],
        gate: ConnectionGate | None = None,
    ) -> None:
        self._context = context
        self._app = app
        self._limits = limits
        self._server_addr = server_addr
        self._gate = gate
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._tls: SSL.Connection | None = None
        self._phase: Phase = "handshake"
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._peer_pem: list[str] = []
        self._client: tuple[str, int] | None = None
        self._source = "?"
        self._busy = False
        self._reading = True
        self._requests = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._body_waiter: asyncio.Future[None] | None = None
        # Back-pressure for responses: the transport pauses us past its high-water mark;
        # ``send`` then waits (bounded by the idle timeout) before the next chunk.
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = (str(peer[0]), int(peer[1])) if peer else None
        self._source = source_key(self._client[0]) if self._client else "?"
        if self._gate is not None:
            if not self._gate.admit(self._source):
                self._closed = True
                self._transport.abort()
                return
            self._admitted = True
        self._transport.set_write_buffer_limits(high=self._limits.write_buffer_bytes)
        self._tls = SSL.Connection(self._context, None)
        self._tls.set_accept_state()
        self._arm_timer(self._limits.handshake_timeout_s, self._abort)

    def data_received(self, data: bytes) -> None:
        if self._closed or self._tls is None:
            return
        self._tls.bio_write(data)
        if self._phase == "handshake" and not self._advance_handshake():
            return
        self._pump_plaintext()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        self._writable.set()
        self._wake_body_waiter()
        if self._admitted and self._gate is not None:
            self._admitted = False
            self._gate.release(self._source)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def _drain(self) -> None:
        """Wait until the transport takes more data; raise :class:`PeerGone` if it never will."""
        if not self._writable.is_set() and not self._closed:
            try:
                await asyncio.wait_for(self._writable.wait(), self._limits.idle_timeout_s)
            except TimeoutError:
                self._abort()
        if self._closed:
            raise PeerGone

    def _pause_reading(self) -> None:
        if self._reading and self._transport is not None and not self._transport.is_closing():
            self._reading = False
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if not self._reading and self._transport is not None and not self._transport.is_closing():
            self._reading = True
            self._transport.resume_reading()

    # -- TLS -----------------------------------------------------------------------------

    def _advance_handshake(self) -> bool:
        if self._tls is None:
            return False
        try:
            self._tls.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return False
        except SSL.Error as exc:
            logger.debug("TLS handshake failed from %s: %s", self._client, exc)
            self._flush()
            self._abort()
            return False
        peer = self._tls.get_peer_certificate()
        if peer is not None:
            self._peer_pem = [crypto.dump_certificate(crypto.FILETYPE_PEM, peer).decode()]
        self._flush()
        self._await_request()
        return True

    def _pump_plaintext(self) -> None:
        if self._tls is None:
            return
        while True:
            try:
                chunk = self._tls.recv(_READ_CHUNK)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._http.receive_data(b"")
                break
            except SSL.Error:
                self._abort()
                return
            if self._phase == "idle":
                self._begin_request_deadline()
            self._http.receive_data(chunk)
        self._flush()
        if self._busy:
            # A request is reading its body: hand it these bytes, and read more only when it
            # asks (so at most one read is buffered while it works).
            self._pause_reading()
            self._wake_body_waiter()
            return
        self._process_events()

    def _flush(self) -> None:
        if self._tls is None:
            return
        while True:
            try:
                out = self._tls.bio_read(_READ_CHUNK)
            except SSL.WantReadError:
                return
            if self._transport is not None and not self._transport.is_closing():
                self._transport.write(out)

    def _write(self, data: bytes) -> None:
        if self._closed or self._tls is None:
            return
        view = memoryview(data)
        while view:
            sent = self._tls.send(view[:_READ_CHUNK].tobytes())
            view = view[sent:]
        self._flush()

    # -- HTTP ----------------------------------------------------------------------------

    def _process_events(self) -> None:
        if self._closed or self._busy:
            return
        try:
            event = self._http.next_event()
        except h11.RemoteProtocolError as exc:
            self._send_simple(exc.error_status_hint, b"malformed HTTP request")
            self._close()
            return
        if isinstance(event, h11.Request):
            self._start_request(event)
        elif isinstance(event, h11.ConnectionClosed):
            self._close()

    def _start_request(self, request: h11.Request) -> None:
        self._busy = True
        self._pause_reading()  # read again only for this request's body, or the next request
        self._begin_request_deadline()
        self._requests += 1
        problem = head_problem(request, self._limits)
        if problem is not None:
            self._send_simple(problem[0], problem[1])
            self._close()
            return
        task = asyncio.get_running_loop().create_task(self._run_app(request))
        task.add_done_callback(_log_task_error)

    async def _run_app(self, request: h11.Request) -> None:
        body = await self._read_body()
        if body is None:
            return
        self._phase = "app"
        self._cancel_timer()
        scope = build_scope(
            request, client=self._client, server=self._server_addr, peer_pem=self._peer_pem
        )
        try:
            send = Send(self._http, self._write, self._drain, head=request.method == b"HEAD")
            await self._app(scope, Receive(body), send)
        except PeerGone:
            logger.debug("client %s went away during a response", self._client)
            self._close()
            return
        except Exception:
            logger.exception("unhandled error in the application")
            if self._http.our_state is h11.SEND_RESPONSE:
                self._send_simple(500, b"internal error")
            self._close()
            return
        self._finish_cycle()

    async def _read_body(self) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError:
                self._send_simple(400, b"malformed request")
                self._close()
                return None
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self._limits.max_body_bytes:
                    self._send_simple(413, b"request body too large")
                    self._close()
                    return None
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            elif event is h11.NEED_DATA:
                if not await self._more_body():
                    return None
            else:  # ConnectionClosed or PAUSED: the client went away
                self._close()
                return None

    async def _more_body(self) -> bool:
        """Read once more for the body; False once the connection is gone (deadline, close)."""
        waiter = asyncio.get_running_loop().create_future()
        self._body_waiter = waiter
        self._resume_reading()
        try:
            await waiter
        finally:
            self._body_waiter = None
        return not self._closed

    def _finish_cycle(self) -> None:
        self._busy = False
        if (
            self._http.our_state is h11.DONE
            and self._http.their_state is h11.DONE
            and self._requests < self._limits.max_requests_per_connection
        ):
            self._http.start_next_cycle()
            self._await_request()
            self._resume_reading()
            self._process_events()
        else:
            self._close()

    def _send_simple(self, status: int, body: bytes) -> None:
        if self._http.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self._write(self._http.send(h11.Response(status_code=status, headers=headers)) or b"")
            self._write(self._http.send(h11.Data(data=body)) or b"")
            self._write(self._http.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            return

    # -- time ----------------------------------------------------------------------------

    def _await_request(self) -> None:
        """Between requests: the idle timeout runs until the next request's first byte."""
        self._phase = "idle"
        self._arm_timer(self._limits.idle_timeout_s, self._abort)

    def _begin_request_deadline(self) -> None:
        """A request started: it has ``request_timeout_s`` in all, whatever it sends."""
        if self._phase == "idle":
            self._phase = "request"
            self._arm_timer(self._limits.request_timeout_s, self._request_timed_out)

    def _request_timed_out(self) -> None:
        logger.debug("request deadline passed for %s", self._client)
        self._send_simple(408, b"request not received in time")
        self._close()

    def _arm_timer(self, seconds: float, callback: Callable[[], None]) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- lifetime ------------------------------------------------------------------------

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self._tls is not None and self._phase != "handshake":
            with contextlib.suppress(SSL.Error):
                self._tls.shutdown()
            self._flush_quiet()
        if self._transport is not None:
            self._transport.close()
        self._wake_body_waiter()

    def _abort(self) -> None:
        self._closed = True
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        self._wake_body_waiter()
        self._writable.set()

    def _flush_quiet(self) -> None:
        try:
            self._flush()
        except SSL.Error:
            return

    def _wake_body_waiter(self) -> None:
        if self._body_waiter is not None and not self._body_waiter.done():
            self._body_waiter.set_result(None)


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("connection task failed", exc_info=task.exception())
