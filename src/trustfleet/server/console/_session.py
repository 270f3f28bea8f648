"""The console's session cookie and its CSRF token.

The cookie ``__Host-tf_session`` holds the session secret (services.auth makes a new one at
every stage change, so a secret seen before login is useless after it). ``__Host-`` makes the
browser refuse it unless Secure, Path=/ and without Domain; HttpOnly keeps it from scripts;
SameSite=Strict keeps it off cross-site requests. It has no Max-Age: the server ends sessions
(idle and absolute timeouts), the browser forgets the cookie when it closes.

Every POST carries the session's CSRF token: a hidden form field ``csrf`` or, for the
console's own ``fetch`` calls, the ``X-CSRF-Token`` header, checked by ``check_csrf``. POSTs
must also come from the console's own origin (``Origin``, or ``Sec-Fetch-Site`` where the
referrer policy makes the Origin ``null``), which covers the login form, posted before there
is a session.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from trustfleet.errors import PermissionDenied

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "check_origin",
    "clear_cookie",
    "public_origin",
    "session_secret",
    "set_cookie",
]

COOKIE: Final = "__Host-tf_session"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
_MAX_SECRET_CHARS: Final = 256


def session_secret(request: Request) -> str | None:
    """The session secret the browser presented, if any (over-long values are ignored)."""
    value = request.cookies.get(COOKIE)
    if not value or len(value) > _MAX_SECRET_CHARS:
        return None
    return value


def set_cookie(response: Response, secret: str) -> None:
    """Give the browser ``secret`` as its session cookie."""
    response.set_cookie(COOKIE, secret, path="/", secure=True, httponly=True, samesite="strict")


def clear_cookie(response: Response) -> None:
    """Make the browser forget its session cookie."""
    response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="strict")


def public_origin(public_url: str) -> str:
    """``scheme://host[:port]`` of the service's public URL (what browsers send as Origin)."""
    parts = urlsplit(public_url)
    return f"{parts.scheme}://{parts.netloc}"


def check_origin(request: Request, expected: str) -> None:
    """Refuse a POST that its browser does not say came from the console's own origin.

    ``Origin`` must be the console's; a browser that sends ``Origin: null`` (it does for a form
    post under ``Referrer-Policy: no-referrer``) must say ``Sec-Fetch-Site: same-origin``.

    Raises:
        PermissionDenied: Code ``auth.csrf``.
    """
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    same = origin == expected or (origin in (None, "null") and site == "same-origin")
    if not same or site not in (None, "same-origin"):
        raise PermissionDenied("the request did not come from the console", code="auth.csrf")
