"""HTTP rules both fetchers share: which answers are accepted, and where a body starts.

Pure functions of a status code and response headers, so the two transports (awscrt with the
token key, urllib3 in plain HTTP for the conformance adapter) decide exactly alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from tuf.api import exceptions

__all__ = ["FetchLimits", "RangedBody", "body_offset", "content_length", "range_header"]

_CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)$")


@dataclass(frozen=True)
class FetchLimits:
    """Bounds of one fetcher.

    Attributes:
        chunk_bytes: Largest chunk handed to the caller (also the read size).
        window_bytes: Bytes the transport may buffer ahead of the caller (flow control).
        connect_timeout_s: Bound on TCP connect, TLS handshake and the response head.
        read_idle_timeout_s: Bound on the silence between two received chunks.
        max_body_bytes: Hard cap on one response body, whatever the caller asked for.
    """

    chunk_bytes: int = 64 * 1024
    window_bytes: int = 256 * 1024
    connect_timeout_s: float = 15.0
    read_idle_timeout_s: float = 30.0
    max_body_bytes: int = 1 << 30


class RangedBody(Iterator[bytes]):
    """A response body and the offset of its first byte in the whole file.

    ``start`` is the offset asked for when the server answered 206, and 0 when it answered
    200 (it ignored the range): the caller then starts over.
    """

    def __init__(self, chunks: Iterator[bytes], *, start: int) -> None:
        self._chunks = chunks
        self.start = start

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Stop reading and release the connection."""
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def range_header(start: int) -> dict[str, str]:
    """The request header asking for the bytes from ``start`` on (none for 0)."""
    if start < 0:
        raise ValueError("start must be >= 0")
    return {"Range": f"bytes={start}-"} if start else {}


def body_offset(status: int, headers: Mapping[str, str], *, start: int) -> int:
    """Where the body of an answer to a (ranged) GET starts in the whole file.

    Args:
        status: The HTTP status code.
        headers: The response headers (lower-case names).
        start: The offset that was asked for (0: no Range header was sent).

    Returns:
        ``start`` for a matching 206, 0 for a 200.

    Raises:
        DownloadHTTPError: An error status, a redirect (never followed), or a 206 whose
            ``Content-Range`` does not start at ``start``.
    """
    if status == 200:
        return 0
    if status == 206 and start > 0:
        match = _CONTENT_RANGE.match(headers.get("content-range", "").strip())
        if match is None or int(match.group(1)) != start:
            raise exceptions.DownloadHTTPError(
                f"206 with a Content-Range that does not start at {start}", status
            )
        return start
    raise exceptions.DownloadHTTPError(f"HTTP status {status}", status)


def content_length(headers: Mapping[str, str]) -> int | None:
    """The ``Content-Length`` of a response, or None when absent or malformed."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 19 else None
