"""One HTTP/1.1 GET over an awscrt connection, as an iterator of bounded chunks.

awscrt calls back on its event-loop thread; the chunks cross to the caller through a queue.
Flow control is manual: the stream's window grows only by what the caller has taken, so at
most ``window_bytes`` wait in memory whatever the server sends. Silence longer than the idle
timeout, a body longer than announced or capped, and an early close all end the iterator
with a tuf ``DownloadError`` (the errors ngclient understands).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult

from awscrt import http as crt_http
from awscrt import io as crt_io
from tuf.api import exceptions

from trustfleet.agent.updater._http import FetchLimits, body_offset, content_length, range_header
from trustfleet.crt import crt_reason, map_crt_errors
from trustfleet.errors import Unavailable

__all__ = ["CrtRequest", "open_body"]

logger = logging.getLogger(__name__)

_END = object()


@dataclass(frozen=True)
class CrtRequest:
    """What a GET needs: where, from which offset, and over which TLS context."""

    url: SplitResult
    start: int
    tls: crt_io.ClientTlsContext
    bootstrap: crt_io.ClientBootstrap
    user_agent: str


@dataclass
class _Exchange:
    head: Future[tuple[int, dict[str, str]]] = field(default_factory=Future)
    chunks: queue.Queue[object] = field(default_factory=queue.Queue)
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_body(request: CrtRequest, limits: FetchLimits) -> tuple[int, Iterator[bytes]]:
    """Send the GET and wait (bounded) for the response head.

    Returns:
        The offset of the body's first byte (see ``body_offset``) and its chunks.

    Raises:
        DownloadError: Connecting, the TLS handshake or the response head failed or timed out.
        DownloadHTTPError: The status was not 200 or a matching 206.
    """
    host = request.url.hostname or "localhost"
    conn = _connect(request, host=host, limits=limits)
    exchange = _Exchange()
    try:
        stream = _send(conn, request, host=host, exchange=exchange)
        try:
            with map_crt_errors("receive the response head", code="ota.fetch"):
                status, headers = exchange.head.result(limits.connect_timeout_s)
        except Unavailable as exc:
            raise _download_error(exc, slow="no response head in time") from exc.__cause__
        offset = body_offset(status, headers, start=request.start)
    except BaseException:
        conn.close()
        raise
    expected = content_length(headers)
    return offset, _chunks(conn, stream, exchange, expected=expected, limits=limits)


def _connect(request: CrtRequest, *, host: str, limits: FetchLimits) -> Any:
    port = request.url.port or 443
    options = request.tls.new_connection_options()
    options.set_server_name(host)
    socket_options = crt_io.SocketOptions()
    socket_options.connect_timeout_ms = int(limits.connect_timeout_s * 1000)
    try:
        with map_crt_errors(f"connect to {host}:{port} with mutual TLS", code="ota.fetch"):
            return crt_http.HttpClientConnection.new(
                host_name=host,
                port=port,
                bootstrap=request.bootstrap,
                socket_options=socket_options,
                tls_connection_options=options,
                manual_window_management=True,
                initial_window_size=limits.window_bytes,
            ).result(limits.connect_timeout_s)
    except Unavailable as exc:
        slow = f"connecting to {host}:{port} timed out"
        raise _download_error(exc, slow=slow) from exc.__cause__


def _download_error(exc: Unavailable, *, slow: str) -> exceptions.DownloadError:
    """The tuf error ngclient understands for a translated awscrt error (``slow`` on timeout)."""
    if isinstance(exc.__cause__, TimeoutError):
        return exceptions.SlowRetrievalError(slow)
    return exceptions.DownloadError(exc.message)


def _send(conn: Any, request: CrtRequest, *, host: str, exchange: _Exchange) -> Any:
    path = request.url.path or "/"
    if request.url.query:
        path += "?" + request.url.query
    pairs = [("host", host), ("user-agent", request.user_agent), ("accept-encoding", "identity")]
    pairs += [(k.lower(), v) for k, v in range_header(request.start).items()]
    http_request = crt_http.HttpRequest(
        method="GET", path=path, headers=crt_http.HttpHeaders(pairs)
    )

    def on_response(http_stream: Any, status_code: int, headers: Any, **_kw: Any) -> None:
        if 100 <= status_code < 200 or exchange.head.done():
            return
        exchange.head.set_result((status_code, {k.lower(): v for k, v in headers}))

    def on_body(http_stream: Any, chunk: bytes, **_kw: Any) -> None:
        exchange.chunks.put(chunk)

    def on_done(future: Future[Any]) -> None:
        error = future.exception()
        if not exchange.head.done():
            exchange.head.set_exception(error or exceptions.DownloadError("no response"))
        exchange.chunks.put(error if error is not None else _END)

    stream = conn.request(http_request, on_response, on_body)
    stream.completion_future.add_done_callback(on_done)
    stream.activate()
    return stream


def _chunks(
    conn: Any, stream: Any, exchange: _Exchange, *, expected: int | None, limits: FetchLimits
) -> Iterator[bytes]:
    received = 0
    try:
        while True:
            try:
                item = exchange.chunks.get(timeout=limits.read_idle_timeout_s)
            except queue.Empty as exc:
                raise exceptions.SlowRetrievalError("the server went silent") from exc
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise exceptions.DownloadError(f"connection lost: {crt_reason(item)}") from item
            assert isinstance(item, bytes)  # noqa: S101  # only bytes, _END or errors are queued
            received += len(item)
            if received > limits.max_body_bytes or (expected is not None and received > expected):
                raise exceptions.DownloadLengthMismatchError("the body is longer than allowed")
            for at in range(0, len(item), limits.chunk_bytes):
                yield item[at : at + limits.chunk_bytes]
            stream.update_window(len(item))
        if expected is not None and received != expected:
            raise exceptions.DownloadError(f"body ended after {received} of {expected} bytes")
    finally:
        conn.close()
