"""Security headers on every response of the operator plane: the console, the API, /metrics.

One ASGI middleware, :class:`SecurityHeaders`, wraps the whole application and adds the
headers to responses whose path is under one of :data:`OPERATOR_PREFIXES`; the device-facing
routes (EST, CRL, OCSP, the TUF repository, the audit tiles) keep their own caching headers.

The content security policy allows nothing but the console's own scripts, styles and images
(and ``data:`` images): no inline script or style, no framing, forms posting only to the
console itself.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "OPERATOR_PREFIXES", "SecurityHeaders", "security_headers"]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
OPERATOR_PREFIXES: Final = ("/console", "/api/", "/metrics")
_HSTS_MAX_AGE_S: Final = 63_072_000  # two years (the preload list's minimum is one)


def security_headers() -> dict[str, str]:
    """The headers added to every operator-plane response (lower-case names)."""
    return {
        "strict-transport-security": f"max-age={_HSTS_MAX_AGE_S}; includeSubDomains",
        "content-security-policy": CONTENT_SECURITY_POLICY,
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cross-origin-opener-policy": "same-origin",
        "cache-control": "no-store",
    }


def _covered(path: str) -> bool:
    return path == "/api" or any(path.startswith(prefix) for prefix in OPERATOR_PREFIXES)


class SecurityHeaders:
    """ASGI middleware: :func:`security_headers` on responses under :data:`OPERATOR_PREFIXES`.

    The headers replace any of the same name a route set (a route cannot loosen them).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._headers = security_headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _covered(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self._headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
