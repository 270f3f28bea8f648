"""HTTP/1.1 over TLS 1.3 for an ASGI application, with the peer certificate in the scope.

One :class:`TlsHttpProtocol` per connection: TLS runs on pyOpenSSL memory BIOs, HTTP is parsed
by h11, and each request is handed to the ASGI app with the standard ``tls`` extension
(``scope["extensions"]["tls"]["client_cert_chain"]`` holds the client certificate as PEM).
Every input is bounded: header bytes, body bytes, handshake and idle time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote_to_bytes

import h11
from OpenSSL import SSL, crypto

__all__ = ["ConnectionLimits", "TlsHttpProtocol"]

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
AsgiApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

_TLS_1_3 = 0x0304
_READ_CHUNK = 65536


@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on what one connection may send and how long it may take."""

    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 1024 * 1024
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_requests_per_connection: int = 1000


class TlsHttpProtocol(asyncio.Protocol):
    """Serves one TLS connection; see the module docstring."""

    def __init__(
        self,
        *,
        context: SSL.Context,
        app: AsgiApp,
        limits: ConnectionLimits,
        server_addr: tuple[str, int],
    ) -> None:
        self._context = context
        self._app = app
        self._limits = limits
        self._server_addr = server_addr
        self._transport: asyncio.Transport | None = None
        self._tls: SSL.Connection | None = None
        self._handshake_done = False
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._peer_pem: list[str] = []
        self._client: tuple[str, int] | None = None
        self._busy = False
        self._requests = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Back-pressure for streamed responses: the transport pauses us past its high-water
        # mark; ``send`` then waits (bounded by the idle timeout) before the next chunk.
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = (str(peer[0]), int(peer[1])) if peer else None
        self._tls = SSL.Connection(self._context, None)
        self._tls.set_accept_state()
        self._arm_timer(self._limits.handshake_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self._closed or self._tls is None:
            return
        self._tls.bio_write(data)
        if not self._handshake_done and not self._advance_handshake():
            return
        self._pump_plaintext()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._cancel_timer()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    async def _drain(self) -> None:
        """Wait until the transport takes more data; raise :class:`_PeerGone` if it never will."""
        if not self._writable.is_set() and not self._closed:
            try:
                await asyncio.wait_for(self._writable.wait(), self._limits.idle_timeout_s)
            except TimeoutError:
                self._abort()
        if self._closed:
            raise _PeerGone

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
        self._handshake_done = True
        peer = self._tls.get_peer_certificate()
        if peer is not None:
            self._peer_pem = [crypto.dump_certificate(crypto.FILETYPE_PEM, peer).decode()]
        self._flush()
        self._arm_timer(self._limits.idle_timeout_s)
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
            self._http.receive_data(chunk)
        self._flush()
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
        if self._closed:
            return
        if self._busy:
            self._wake_body_waiter()  # a request is reading its body: more data is here
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
        self._cancel_timer()
        self._requests += 1
        header_bytes = len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)
        if header_bytes > self._limits.max_header_bytes:
            # h11 bounds only headers that arrive across reads; a whole block in one read
            # must be measured here.
            self._send_simple(431, b"request header fields too large")
            self._close()
            return
        length = _content_length(list(request.headers))
        if length is not None and length > self._limits.max_body_bytes:
            self._send_simple(413, b"request body too large")
            self._close()
            return
        task = asyncio.get_running_loop().create_task(self._run_app(request))
        task.add_done_callback(_log_task_error)

    async def _run_app(self, request: h11.Request) -> None:
        body = await self._read_body()
        if body is None:
            return
        scope = self._scope(request)
        sent_body = False
        received = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        pending: list[bytes] = []  # the response head, held back to go out with the body

        async def send(message: Message) -> None:
            nonlocal sent_body
            if message["type"] == "http.response.start":
                headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                response = h11.Response(status_code=message["status"], headers=headers)
                pending.append(self._http.send(response) or b"")
            elif message["type"] == "http.response.body":
                data = message.get("body", b"")
                if data:
                    pending.append(self._http.send(h11.Data(data=data)) or b"")
                if not message.get("more_body", False) and not sent_body:
                    sent_body = True
                    pending.append(self._http.send(h11.EndOfMessage()) or b"")
                self._write(b"".join(pending))
                pending.clear()
                await self._drain()

        try:
            await self._app(scope, receive, send)
        except _PeerGone:
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
        loop = asyncio.get_running_loop()
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
                waiter = loop.create_future()
                self._body_waiter = waiter
                self._arm_timer(self._limits.idle_timeout_s)
                try:
                    await waiter
                finally:
                    self._body_waiter = None
                    self._cancel_timer()
                if self._closed:
                    return None
            else:  # ConnectionClosed or PAUSED: the client went away
                self._close()
                return None

    _body_waiter: asyncio.Future[None] | None = None

    def _scope(self, request: h11.Request) -> Scope:
        target = bytes(request.target)
        path, _, query = target.partition(b"?")
        headers = [(bytes(k).lower(), bytes(v)) for k, v in request.headers]
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": bytes(request.http_version).decode(),
            "method": bytes(request.method).decode(),
            "scheme": "https",
            "path": _unquote(path),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self._client,
            "server": self._server_addr,
            "extensions": {
                "tls": {
                    "server_cert": None,
                    "client_cert_chain": list(self._peer_pem),
                    "client_cert_name": None,
                    "client_cert_error": None,
                    "tls_version": _TLS_1_3,
                    "cipher_suite": None,
                }
            },
        }

    def _finish_cycle(self) -> None:
        self._busy = False
        if (
            self._http.our_state is h11.DONE
            and self._http.their_state is h11.DONE
            and self._requests < self._limits.max_requests_per_connection
        ):
            self._http.start_next_cycle()
            self._arm_timer(self._limits.idle_timeout_s)
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

    # -- lifetime ------------------------------------------------------------------------

    def _arm_timer(self, seconds: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        if self._tls is not None and self._handshake_done:
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


class _PeerGone(ConnectionError):
    """The client closed or stalled (past the idle timeout) while a response was being sent."""


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _unquote(path: bytes) -> str:
    return unquote_to_bytes(path).decode("utf-8", "replace")


def _log_task_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("connection task failed", exc_info=task.exception())
