"""Errors of the management API as RFC 9457 problem details, translated here once.

A :class:`~trustfleet.errors.TrustFleetError` keeps its category's status
(:func:`~trustfleet.errors.status_for`) and its stable code, the one the CLI shows; FastAPI's
validation errors become ``400 api.invalid`` naming the fields; unknown routes and methods are
``404 api.not_found`` / ``405 api.method_not_allowed``. Anything else is a bug: it is logged
and answered with a bare 500 problem that says nothing of the cause.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, Final, cast

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from trustfleet.errors import TrustFleetError, status_for

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "ProblemResponse",
    "error_problem",
    "install_problem_handlers",
    "outer_http_handler",
    "problem",
]

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_TYPE_BASE: Final = "https://trustfleet.dev/problems/"
_HTTP_CODES: Final = {400: "api.invalid", 404: "api.not_found", 405: "api.method_not_allowed"}
_MAX_FIELDS: Final = 10


def _title(status: int) -> str:
    """The status's reason phrase (RFC 9110), the problem's ``title``."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemResponse(JSONResponse):
    """A JSON response with the problem details media type."""

    media_type = PROBLEM_MEDIA_TYPE


def problem(
    status: int,
    *,
    code: str,
    detail: str,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """One problem details response (``type`` derived from ``code``)."""
    body: dict[str, Any] = {
        "type": _TYPE_BASE + code,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if hint:
        body["hint"] = hint
    return ProblemResponse(body, status_code=status, headers=headers)


def error_problem(exc: TrustFleetError) -> Response:
    """The problem of a TrustFleet error: its status, its code (else its category)."""
    status = status_for(exc)
    if status >= 500:
        logger.error("service error: %s", exc.message)
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return problem(
        status,
        code=exc.code or exc.category,
        detail=exc.message,
        hint=exc.hint,
        headers=headers,
    )


def _fields(errors: Sequence[Any]) -> list[str]:
    names: list[str] = []
    for error in errors[:_MAX_FIELDS]:
        loc = [str(part) for part in error.get("loc", ())]
        names.append(".".join(loc) or "request")
    return names


async def _on_trustfleet(_request: Request, exc: Exception) -> Response:
    return error_problem(cast("TrustFleetError", exc))


async def _on_validation(_request: Request, exc: Exception) -> Response:
    names = _fields(cast("RequestValidationError", exc).errors())
    return problem(
        400, code="api.invalid", detail="invalid request: " + ", ".join(dict.fromkeys(names))
    )


def _http_handler(
    routes: Sequence[APIRoute],
) -> Callable[[Request, Exception], Awaitable[Response]]:
    """404 and 405 as problems; a 405 lists in ``Allow`` what every route of the path answers."""

    def allowed(path: str) -> str:
        methods = {m for r in routes if r.path_regex.match(path) for m in r.methods or ()}
        return ", ".join(sorted(methods))

    async def on_http(request: Request, exc: Exception) -> Response:
        exc = cast("StarletteHTTPException", exc)
        code = _HTTP_CODES.get(exc.status_code, f"api.http_{exc.status_code}")
        detail = str(exc.detail) if exc.detail else _title(exc.status_code)
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        if exc.status_code == 405:
            path = request.scope["path"].removeprefix(request.scope.get("root_path", ""))
            headers["allow"] = allowed(path)
        return problem(exc.status_code, code=code, detail=detail, headers=headers or None)

    return on_http


def outer_http_handler(prefix: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """For the app that mounts the API: an unroutable path under ``prefix`` (one the mount
    cannot match, such as a control character in it) is a problem too; any other path keeps
    Starlette's plain-text answer."""
    on_http = _http_handler(())

    async def handler(request: Request, exc: Exception) -> Response:
        path = request.url.path
        if path == prefix or path.startswith(prefix + "/"):
            return await on_http(request, exc)
        exc = cast("StarletteHTTPException", exc)
        if exc.status_code in {204, 304}:
            return Response(status_code=exc.status_code, headers=exc.headers)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)

    return handler


async def _on_bug(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem(500, code="api.internal", detail="internal error")


def install_problem_handlers(app: FastAPI, *, routes: Sequence[APIRoute] = ()) -> None:
    """Answer every error of ``app`` (whose routes are ``routes``) as a problem: the one
    translation boundary of the API."""
    app.add_exception_handler(TrustFleetError, _on_trustfleet)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _http_handler(routes))
    app.add_exception_handler(Exception, _on_bug)
