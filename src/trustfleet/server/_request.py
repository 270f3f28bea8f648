"""Checks on a parsed HTTP/1.1 request head, and its ASGI scope (pure functions)."""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import h11

from trustfleet.server._limits import ConnectionLimits

__all__ = [
    "TLS_1_3",
    "build_scope",
    "content_length",
    "framing_problem",
    "head_problem",
    "header_bytes",
]

TLS_1_3 = 0x0304

Headers = Sequence[tuple[bytes, bytes]]


def header_bytes(request: h11.Request) -> int:
    """About how many bytes the request line and headers took on the wire."""
    return len(request.target) + sum(len(k) + len(v) + 4 for k, v in request.headers)


def content_length(headers: Headers) -> int | None:
    """The declared Content-Length, or None (absent or not a number)."""
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def framing_problem(headers: Headers) -> str | None:
    """Why the body framing is ambiguous (answer 400), or None.

    RFC 9112 §6.3: a request with both Transfer-Encoding and Content-Length may be an attempt
    at request smuggling through an intermediary that reads the other one; we refuse it.
    """
    names = {bytes(name).lower() for name, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return "both Content-Length and Transfer-Encoding"
    return None


def build_scope(
    request: h11.Request,
    *,
    client: tuple[str, int] | None,
    server: tuple[str, int],
    peer_pem: list[str],
) -> MutableMapping[str, Any]:
    """The ASGI HTTP scope of ``request``, with the ``tls`` extension (client certificate)."""
    target = bytes(request.target)
    path, _, query = target.partition(b"?")
    headers = [(bytes(k).lower(), bytes(v)) for k, v in request.headers]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": bytes(request.http_version).decode(),
        "method": bytes(request.method).decode(),
        "scheme": "https",
        "path": unquote_to_bytes(path).decode("utf-8", "replace"),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": client,
        "server": server,
        "extensions": {
            "tls": {
                "server_cert": None,
                "client_cert_chain": list(peer_pem),
                "client_cert_name": None,
                "client_cert_error": None,
                "tls_version": TLS_1_3,
                "cipher_suite": None,
            }
        },
    }


def head_problem(request: h11.Request, limits: ConnectionLimits) -> tuple[int, bytes] | None:
    """A status and reason if the request head alone is refused."""
    if header_bytes(request) > limits.max_header_bytes:
        # h11 bounds only headers that arrive across reads; a whole block in one read is
        # measured here.
        return 431, b"request header fields too large"
    headers = list(request.headers)
    why = framing_problem(headers)
    if why is not None:
        return 400, why.encode()
    length = content_length(headers)
    if length is not None and length > limits.max_body_bytes:
        return 413, b"request body too large"
    return None
