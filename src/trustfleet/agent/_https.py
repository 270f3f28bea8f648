"""One HTTPS POST from the device to the service: TLS 1.3 with the key in the token (awscrt).

Used by EST enrollment and AK enrollment; both are rare, so a connection per request is fine.
awscrt is loaded by the callers' imports of this module, never in the agent's steady state.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from awscrt import http as crt_http

from trustfleet.agent._tls import TokenKey, client_tls_context
from trustfleet.agent.settings import DeviceSettings
from trustfleet.crt import map_crt_errors, one_thread_bootstrap

__all__ = ["Answer", "post"]


@dataclass(frozen=True, slots=True)
class Answer:
    """The service's answer: HTTP status, its ``x-trustfleet-error`` code, the (bounded) body."""

    status: int
    error_code: str
    body: bytes


def post(
    settings: DeviceSettings,
    *,
    path: str,
    body: bytes,
    content_type: str,
    client_cert: Path,
    key: TokenKey,
    max_response_bytes: int,
    code: str | None = None,
) -> Answer:
    """POST ``body`` to ``path`` below ``[server] est_url``'s origin over mutual TLS 1.3.

    Raises:
        Unavailable: The service cannot be reached or the exchange failed (with ``code``).
    """
    url = urlsplit(settings.server.est_url)
    host, port = url.hostname or "localhost", url.port or 443
    timeout_s = settings.server.timeout_s
    with map_crt_errors(
        f"connect to {host}:{port} with TLS 1.3 and the device key",
        hint="is the service running, and is the device's certificate valid?",
        code=code,
    ):
        options = client_tls_context(settings, client_cert=client_cert, key=key)
        tls = options.new_connection_options()
        tls.set_server_name(host)
        conn = crt_http.HttpClientConnection.new(
            host_name=host, port=port, bootstrap=one_thread_bootstrap(), tls_connection_options=tls
        ).result(timeout_s)
    try:
        return _exchange(
            conn,
            host=host,
            path=path,
            body=body,
            content_type=content_type,
            max_bytes=max_response_bytes,
            timeout_s=timeout_s,
            code=code,
        )
    finally:
        conn.close()


def _exchange(
    conn: Any,
    *,
    host: str,
    path: str,
    body: bytes,
    content_type: str,
    max_bytes: int,
    timeout_s: float,
    code: str | None,
) -> Answer:
    headers = crt_http.HttpHeaders(
        [("host", host), ("content-type", content_type), ("content-length", str(len(body)))]
    )
    request = crt_http.HttpRequest(
        method="POST", path=path, headers=headers, body_stream=io.BytesIO(body)
    )
    head: dict[str, Any] = {}
    chunks = bytearray()

    def on_response(http_stream: Any, status_code: int, headers: Any, **_kw: Any) -> None:
        head["status"] = status_code
        head["code"] = next((v for k, v in headers if k.lower() == "x-trustfleet-error"), "")

    def on_body(http_stream: Any, chunk: bytes, **_kw: Any) -> None:
        if len(chunks) + len(chunk) <= max_bytes:
            chunks.extend(chunk)

    stream = conn.request(request, on_response, on_body)
    stream.activate()
    with map_crt_errors(f"complete the request to {path}", hint="retry later", code=code):
        stream.completion_future.result(timeout_s)
    return Answer(int(head.get("status", 0)), str(head.get("code", ""))[:80], bytes(chunks))
